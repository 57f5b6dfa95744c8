#!/usr/bin/env bash
# Install Debian's chromium and chromium-driver when missing (admin browser test).
set -uo pipefail
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  if command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null 2>&1 \
      || echo "could not install chromium; the browser test will be skipped" >&2
  fi
fi
exit 0
