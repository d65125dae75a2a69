#!/usr/bin/env bash
# Debian's Chromium and its chromedriver for the web UI's browser tests (Selenium drives them; nothing is
# downloaded at test time). Skipped when both are already installed.
set -euo pipefail
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq chromium chromium-driver >&2
fi
