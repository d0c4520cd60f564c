#!/usr/bin/env bash
# Installs everything the local stack, the services and the tests need, idempotently.
# Called by `make setup` (and so by every make target that needs it). Caches live under
# .cache/ (ignored by git). Each step says what it does, or that it has nothing to do.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
CACHE=$ROOT/.cache
VENV=$ROOT/.venv
PY=${PYTHON:-python3.11}
mkdir -p "$CACHE"

say() { printf '==> %s\n' "$*"; }

# 1. Debian packages: redis-server for the local stack, prometheus for promtool checks.
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v promtool >/dev/null || missing+=(prometheus)
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
  # Debian starts its own redis/prometheus services on install; the local stack runs its own.
  $SUDO systemctl disable --now redis-server prometheus 2>/dev/null || true
  pkill -x redis-server 2>/dev/null || true
  pkill -x prometheus 2>/dev/null || true
else
  say "Debian packages present (redis-server, promtool, java, mvn)"
fi

# 2. Python virtual environment with the pinned dependencies (constraints.txt is the lock).
command -v "$PY" >/dev/null || PY=python3
if [ ! -x "$VENV/bin/python" ]; then
  say "creating the virtual environment in .venv ($($PY --version))"
  "$PY" -m venv "$VENV"
fi
stamp=$VENV/.labelloop-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  say "installing Python dependencies (pinned by constraints.txt)"
  "$VENV/bin/pip" install -q --upgrade pip wheel setuptools
  "$VENV/bin/pip" install -q -c constraints.txt -e '.[dev,encoder]'
  touch "$stamp"
else
  say "Python dependencies up to date"
fi

# 3. Apache Kafka broker jars from Maven Central.
"$VENV/bin/python" -m labelloop.stack fetch

# 4. Extra setup steps contributed by other parts (ops tools, datasets, encoder model).
for step in deploy/local/setup.d/*.sh; do
  [ -e "$step" ] || continue
  bash "$step"
done
say "setup complete"
