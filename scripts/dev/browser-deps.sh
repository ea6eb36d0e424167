#!/usr/bin/env bash
# Install what the browser tests (`@pytest.mark.browser`) need on a Debian machine where you
# are root: the distribution's Chromium (driven by Playwright's Python package, which the
# `test` extra installs; Playwright's own browser download is never used). Idempotent.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    echo "chromium: $(chromium --version 2>/dev/null || echo present)"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -q
apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends chromium fonts-dejavu-core
echo "chromium: $(chromium --version)"
