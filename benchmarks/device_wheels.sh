#!/usr/bin/env bash
# Prepare the wheels a GPU machine lacks, split into chunks small enough for the device tool's carry
# limit (64 MiB per call). See docs/gpu.md for the whole procedure.
#
#   benchmarks/device_wheels.sh [PYTHON_TAG] [PACKAGES...]
#   e.g. benchmarks/device_wheels.sh cp312 onnxruntime-gpu==1.31.1 pyarrow click tqdm
#
# Writes .device/chunks/<n>/ (each <= 60 MB, carry one per call) and .device/MANIFEST (wheel name,
# sha256). gpu_check.sh joins the chunks, checks the sha256 and installs the wheels with --no-deps.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-cp311}; shift || true
packages=("$@"); [ ${#packages[@]} -gt 0 ] || packages=(onnxruntime-gpu==1.31.1)
pyver=${tag#cp}; pyver="${pyver:0:1}.${pyver:1}"
rm -rf .device && mkdir -p .device/wheels .device/chunks
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .device/wheels "${packages[@]}"
: > .device/MANIFEST
cat .device/wheels/*.whl > .device/all.bin
for w in .device/wheels/*.whl; do
    echo "$(basename "$w") $(stat -c %s "$w") $(sha256sum "$w" | cut -d' ' -f1)" >> .device/MANIFEST
done
split -b 60M -d -a 2 .device/all.bin .device/chunks/part-
for p in .device/chunks/part-*; do n=${p##*-}; mkdir -p ".device/chunks/$n"; mv "$p" ".device/chunks/$n/part"; done
rm -rf .device/all.bin .device/wheels
echo "chunks to carry, one call each (carry=[\".device/MANIFEST\", \".device/chunks/NN\"]):"
ls -1 .device/chunks
