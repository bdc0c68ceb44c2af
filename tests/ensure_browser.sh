#!/usr/bin/env bash
# Installs what the report browser test (tests/test_report_browser.py) needs when it is missing:
# Debian's chromium and chromium-driver. Called by `make test`; never fails the build: when the
# packages cannot be installed (no apt-get, not root and no password-less sudo, no network) it
# says so and the browser test skips with that reason.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_browser: no apt-get here; install chromium + chromedriver yourself" \
         "(the report browser test will skip)" >&2
    exit 0
fi
sudo_cmd=()
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo_cmd=(sudo -n)
    else
        echo "ensure_browser: not root and no password-less sudo; run" \
             "'apt-get install chromium chromium-driver' as root (the report browser test will skip)" >&2
        exit 0
    fi
fi
echo "ensure_browser: installing chromium and chromium-driver with apt-get" >&2
if ! { "${sudo_cmd[@]}" apt-get update -qq &&
       "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }; then
    echo "ensure_browser: apt-get could not install chromium / chromium-driver" \
         "(the report browser test will skip)" >&2
fi
exit 0
