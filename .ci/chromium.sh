#!/usr/bin/env bash
# Debian's Chromium for the web UI's browser tests (tests/browser.py drives it over its DevTools pipe: no
# chromedriver, nothing downloaded at test time). Skipped when it is already installed.
set -euo pipefail
if [ ! -x /usr/bin/chromium ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq chromium >&2
fi
