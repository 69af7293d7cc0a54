#!/usr/bin/env bash
# Create or refresh build/mlserver-venv (or $TX2_MLSERVER_VENV): MLServer and ONNX Runtime, the
# local KServe V2 server the triton backend's tests and benchmark start in place of NVIDIA's
# Triton server (tx2_inference/tools/kserve_server.py). Its own interpreter: MLServer pins
# protobuf < 7, the node's environment has protobuf 7. Idempotent (a stamp of its inputs).
#
# Usage: tools/setup_mlserver.sh [--force]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${TX2_MLSERVER_VENV:-$ROOT/build/mlserver-venv}
PY=${TX2_PYTHON:-python3.11}
STAMP=$VENV/.tx2_mlserver_stamp
cd "$ROOT"

WANT=$(cat requirements/mlserver.txt tools/setup_mlserver.sh | sha256sum | cut -d' ' -f1)
if [[ "${1:-}" != --force && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  exit 0
fi
command -v "$PY" >/dev/null 2>&1 || PY=python3
T0=$SECONDS
printf '[setup_mlserver %s] %s\n' "$(date +%H:%M:%S)" "installing MLServer in $VENV (~400 MB)"
if [[ ! -x "$VENV/bin/python" ]]; then
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/pip" --disable-pip-version-check --no-input -q install -r requirements/mlserver.txt \
  2>&1 | { grep -v 'is ignored: it is neither' || true; }
"$VENV/bin/python" -c 'import mlserver, onnxruntime'
echo "$WANT" >"$STAMP"
printf '[setup_mlserver %s] %s\n' "$(date +%H:%M:%S)" "MLServer ready in $((SECONDS - T0)) s"
