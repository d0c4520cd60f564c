#!/usr/bin/env bash
# The browser the annotator web app's end-to-end tests drive: Debian's `chromium`, driven by the
# PyPI `playwright` package (a dev dependency) through `executable_path`. Playwright's own browser
# download (`playwright install`) is never used: only package registries are reachable.
# Idempotent: installs only when `chromium` is missing.
set -euo pipefail

say() { printf '==> %s\n' "$*"; }

if command -v chromium >/dev/null; then
  say "chromium present ($(chromium --version 2>/dev/null | head -1))"
  exit 0
fi
say "installing Debian chromium for the browser tests (about 290 MB)"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
