#!/usr/bin/env bash
# Create or refresh build/mlserver-venv (or $TX2_MLSERVER_VENV): MLServer and ONNX Runtime, the
# local KServe V2 server the triton backend's tests and benchmark start in place of NVIDIA's
# Triton server (tx2_inference/tools/kserve_server.py). Its own interpreter: MLServer pins
# protobuf < 7, the node's environment has protobuf 7. Idempotent (a stamp of its inputs).
#
# Usage: tools/setup_mlserver.sh [--force]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
exec "$ROOT/tools/setup_side_venv.sh" mlserver \
  "${TX2_MLSERVER_VENV:-$ROOT/build/mlserver-venv}" requirements/mlserver.txt \
  'import mlserver, onnxruntime' "${1:-}"
