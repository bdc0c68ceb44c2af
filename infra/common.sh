#!/usr/bin/env bash
# Shared preamble of the infra/ scripts: sourced by them, never run on its own.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
#
# Defines: flink_cache (prints $SEA_CACHE/flink, SEA_CACHE defaulting to ~/.cache/sea: the
# machine-wide cache of the Flink jars and the local cluster), log MSG... ("<script>: MSG" on stderr),
# run_cmd CMD... (runs CMD; with DRY_RUN=1 prints it shell-quoted on one line instead, which
# tests/test_infra.py parses) and print_help (the calling script's header comment, from
# line 2 to the first line that is not a comment, without the leading '# ': its --help).
set -euo pipefail

flink_cache() {
  printf '%s/flink\n' "${SEA_CACHE:-${HOME:?set SEA_CACHE or HOME}/.cache/sea}"
}

log() {
  local name="${0##*/}"
  printf '%s: %s\n' "${name%.sh}" "$*" >&2
}

run_cmd() {
  if [[ "${DRY_RUN:-0}" == "1" ]]; then
    printf '%q ' "$@"
    printf '\n'
  else
    "$@"
  fi
}

print_help() {
  awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
}
