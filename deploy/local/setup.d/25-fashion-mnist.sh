#!/usr/bin/env bash
# Installs the built-in image dataset, Fashion-MNIST (70,000 28x28 grayscale images, 10 classes),
# from Debian's `dataset-fashion-mnist` package (idempotent). Called by deploy/local/setup.sh
# (`make setup`). The package puts four gzipped idx files under /usr/share/datasets/fashion-mnist/
# ({train,t10k}-{images-idx3,labels-idx1}-ubyte.gz); services/datasets/images.py reads them there,
# or under $LABELLOOP_FASHION_MNIST_DIR when that is set (the same four files, e.g. on a machine
# without Debian packages).
set -euo pipefail

say() { printf '==> %s\n' "$*"; }

DIR=${LABELLOOP_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
if [ -f "$DIR/train-images-idx3-ubyte.gz" ] && [ -f "$DIR/t10k-labels-idx1-ubyte.gz" ]; then
  say "Fashion-MNIST present in $DIR"
  exit 0
fi
if [ -n "${LABELLOOP_FASHION_MNIST_DIR:-}" ]; then
  echo "error: \$LABELLOOP_FASHION_MNIST_DIR=$DIR lacks the Fashion-MNIST idx files" >&2
  exit 1
fi
say "installing the Debian package dataset-fashion-mnist (31 MB)"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends dataset-fashion-mnist; then
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends dataset-fashion-mnist
fi
