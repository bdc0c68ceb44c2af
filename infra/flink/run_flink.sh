#!/usr/bin/env bash
# Submit `sea pipeline embed` to the Flink session cluster of infra/flink/docker-compose.yml.
#
# usage: infra/flink/run_flink.sh portable|flink
#   portable  PortableRunner -> the compose Beam Flink job server (--job_endpoint=localhost:8099)
#   flink     FlinkRunner --flink_master=localhost:8081 (the SDK starts its own job server from
#             the Beam Flink job-server jar: downloaded from Maven Central, or FLINK_JOB_SERVER_JAR)
# Both run the Python SDK harness in the compose worker pool (EXTERNAL environment).
#
# Environment: INPUT (default /data/corpus/*.flac) and OUTPUT (default /data/runs/<utc time>)
# are paths as the workers see them (the compose ./data volume is /data); TEACHER (aisfx),
# BATCH_SIZE (32), PARALLELISM (2), JOB_ENDPOINT (localhost:8099), FLINK_MASTER
# (localhost:8081), WORKER_POOL (localhost:50000, resolved by the task manager), EXTRA_ARGS.
# DRY_RUN=1 prints the command (shell-quoted) instead of running it.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

MODE="${1:-}"
INPUT="${INPUT:-/data/corpus/*.flac}"
OUTPUT="${OUTPUT:-/data/runs/$(date -u +%Y%m%dT%H%M%SZ)}"
TEACHER="${TEACHER:-aisfx}"
BATCH_SIZE="${BATCH_SIZE:-32}"
PARALLELISM="${PARALLELISM:-2}"
JOB_ENDPOINT="${JOB_ENDPOINT:-localhost:8099}"
FLINK_MASTER="${FLINK_MASTER:-localhost:8081}"
FLINK_VERSION="${FLINK_VERSION:-1.20}"
WORKER_POOL="${WORKER_POOL:-localhost:50000}"
PYTHON="${PYTHON:-python}"

APP=(
  "--input=${INPUT}"
  "--output=${OUTPUT}"
  "--teacher=${TEACHER}"
  "--batch_size=${BATCH_SIZE}"
)
COMMON=(
  "--environment_type=EXTERNAL"
  "--environment_config=${WORKER_POOL}"
  "--parallelism=${PARALLELISM}"
)

case "${MODE}" in
  portable)
    RUNNER=("--runner=PortableRunner" "--job_endpoint=${JOB_ENDPOINT}")
    ;;
  flink)
    RUNNER=("--runner=FlinkRunner" "--flink_master=${FLINK_MASTER}" "--flink_version=${FLINK_VERSION}")
    if [[ -n "${FLINK_JOB_SERVER_JAR:-}" ]]; then
      RUNNER+=("--flink_job_server_jar=${FLINK_JOB_SERVER_JAR}")
    fi
    ;;
  -h|--help|"")
    print_help
    exit 0
    ;;
  *)
    echo "run_flink.sh: mode must be portable or flink, got '${MODE}'" >&2
    exit 2
    ;;
esac

# shellcheck disable=SC2086  # EXTRA_ARGS is a list of flags on purpose
run_cmd "${PYTHON}" -m pipelines.embed_corpus "${APP[@]}" "${RUNNER[@]}" "${COMMON[@]}" ${EXTRA_ARGS:-}
