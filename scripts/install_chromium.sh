#!/usr/bin/env bash
# Install headless Chromium and its WebDriver (Debian packages `chromium`, `chromium-driver`)
# for the report's browser test (tests/test_report_browser.py). Idempotent and non-interactive:
# does nothing when both `chromium` and `chromedriver` are already on PATH.
#
#   scripts/install_chromium.sh          # as root, or with sudo available
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    echo "chromium and chromedriver already installed: $(command -v chromium), $(command -v chromedriver)"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: apt-get not found; install Chromium and a matching chromedriver by hand" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "error: run as root (or install sudo) to apt-get install chromium chromium-driver" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver

for tool in chromium chromedriver; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "error: '$tool' is still not on PATH after installing" >&2
        exit 1
    fi
done
echo "installed: $(chromium --version 2>/dev/null | head -n1); $(chromedriver --version | head -n1)"
