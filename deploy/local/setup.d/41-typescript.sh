#!/usr/bin/env bash
# The TypeScript compiler, used only to type-check the annotator page's JavaScript
# (`// @ts-check` modules under services/annotator_web/static; tests/unit/test_annotator_web_types.py).
# Pinned, from the npm registry, into .cache/node (ignored by git). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../../.."
TYPESCRIPT_VERSION=5.9.3
PREFIX=.cache/node

say() { printf '==> %s\n' "$*"; }

if [ -x "$PREFIX/node_modules/.bin/tsc" ] && [ "$("$PREFIX/node_modules/.bin/tsc" --version)" = "Version $TYPESCRIPT_VERSION" ]; then
  say "tsc present (TypeScript $TYPESCRIPT_VERSION)"
  exit 0
fi
if ! command -v npm >/dev/null; then
  say "installing Debian nodejs and npm (for the TypeScript compiler)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends nodejs npm
fi
say "installing TypeScript $TYPESCRIPT_VERSION into $PREFIX (npm)"
mkdir -p "$PREFIX"
npm install --prefix "$PREFIX" --no-save --no-audit --no-fund --loglevel=error "typescript@$TYPESCRIPT_VERSION"
