#!/usr/bin/env bash
# Create or refresh build/triton (or $TX2_TRITON_DIR): NVIDIA's real Triton Inference Server
# 2.51.0, taken from the nvidia-pytriton 0.7.0 wheel (which carries the `tritonserver` binary,
# its libraries and the Python backend), and the Python environment its Python backend runs
# the models in (numpy 1.x and ONNX Runtime, requirements/triton.txt). The triton backend's
# tests and benchmark start it (tx2_inference/tools/triton_server.py). The wheel is fetched
# with `pip download --no-deps` and its sha256 checked; only the server's files are extracted
# (pytriton's own Python code is not used). Idempotent (a stamp of its inputs).
#
# Usage: tools/setup_triton.sh [--force]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${TX2_TRITON_DIR:-$ROOT/build/triton}
PY=${TX2_PYTHON:-python3.11}
STAMP=$DIR/.tx2_triton_stamp
WHEEL=nvidia_pytriton-0.7.0-py3-none-manylinux_2_35_x86_64.whl
SHA256=21f063ff93bb426d0c06b7a55e7eb9efcfe62c0dddd9a908e9877e18710128df
cd "$ROOT"

log() { printf '[setup_triton %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

WANT=$(cat requirements/triton.txt tools/setup_triton.sh | sha256sum | cut -d' ' -f1)
if [[ "${1:-}" != --force && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  exit 0
fi
if [[ "$(uname -m)" != x86_64 ]]; then
  echo "setup_triton: the nvidia-pytriton wheel with tritonserver is built for x86_64 only" \
    "(here: $(uname -m)); the triton backend's server tests are skipped" >&2
  exit 1
fi
command -v "$PY" >/dev/null 2>&1 || PY=python3
PYVER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
T0=$SECONDS
mkdir -p "$DIR/download"
PIP_QUIET=(--disable-pip-version-check --no-input -q)
if [[ ! -f "$DIR/download/$WHEEL" ]] \
    || ! echo "$SHA256  $DIR/download/$WHEEL" | sha256sum -c --status; then
  log "downloading nvidia-pytriton 0.7.0 (55 MB: tritonserver 2.51.0 and its Python backend)"
  rm -f "$DIR/download/$WHEEL"
  "$PY" -m pip download "${PIP_QUIET[@]}" --no-deps --only-binary=:all: \
    --platform manylinux_2_35_x86_64 --python-version "$PYVER" \
    -d "$DIR/download" nvidia-pytriton==0.7.0 2>&1 | { grep -v 'is ignored: it is neither' || true; }
fi
if ! echo "$SHA256  $DIR/download/$WHEEL" | sha256sum -c --status; then
  echo "setup_triton: $DIR/download/$WHEEL does not have the sha256 $SHA256" >&2
  exit 1
fi

log 'extracting tritonserver'
rm -rf "$DIR/server"
"$PY" - "$DIR/download/$WHEEL" "$DIR/server" "$PYVER" <<'PYTHON'
import os
import shutil
import sys
import zipfile

wheel, target, version = sys.argv[1:]
with zipfile.ZipFile(wheel) as archive:
    names = [n for n in archive.namelist()
             if n.startswith(('pytriton/tritonserver/', 'nvidia_pytriton.libs/'))]
    archive.extractall(target, names)
server = os.path.join(target, 'pytriton', 'tritonserver')
stub = os.path.join(server, 'python_backend_stubs', version, 'triton_python_backend_stub')
if not os.path.isfile(stub):
    sys.exit('setup_triton: the wheel has no Python backend stub for Python {} (it has {})'
             .format(version, ', '.join(sorted(os.listdir(os.path.dirname(os.path.dirname(
                 stub)))))))
shutil.copy(stub, os.path.join(server, 'backends', 'python', 'triton_python_backend_stub'))
for path in (os.path.join(server, 'bin', 'tritonserver'),
             os.path.join(server, 'backends', 'python', 'triton_python_backend_stub')):
    os.chmod(path, 0o755)
PYTHON

if [[ ! -x "$DIR/venv/bin/python" ]]; then
  log "creating the Python backend's environment $DIR/venv (numpy 1.x, ONNX Runtime)"
  "$PY" -m venv "$DIR/venv"
fi
"$DIR/venv/bin/pip" "${PIP_QUIET[@]}" install -r requirements/triton.txt \
  2>&1 | { grep -v 'is ignored: it is neither' || true; }
"$DIR/venv/bin/python" -c 'import numpy, onnxruntime'
for binary in bin/tritonserver backends/python/triton_python_backend_stub; do
  if ldd "$DIR/server/pytriton/tritonserver/$binary" | grep 'not found' >&2; then
    echo "setup_triton: $binary misses the libraries above" >&2
    exit 1
  fi
done
echo "$WANT" >"$STAMP"
log "Triton server ready in $((SECONDS - T0)) s"
