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
# Where the server cannot run here, say why (the tests that need it skip with this reason).
unavailable() {
  mkdir -p "$DIR"
  echo "$*" >"$DIR/UNAVAILABLE"
  echo "setup_triton: $* (the tests against the Triton server skip, naming this)" >&2
  exit 0
}
rm -f "$DIR/UNAVAILABLE"
if [[ "$(uname -m)" != x86_64 ]]; then
  unavailable "the nvidia-pytriton wheel with tritonserver is built for x86_64 only, not $(uname -m)"
fi
command -v "$PY" >/dev/null 2>&1 || PY=python3
PYVER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
# The Python backend's stub embeds libpython: the one of the Python that makes the venv, so
# that the stub's interpreter and the venv's standard library are the same release.
LIBDIR=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")')
if [[ ! -e "$LIBDIR/libpython$PYVER.so.1.0" ]]; then
  unavailable "$PY has no shared libpython$PYVER.so.1.0 (in '$LIBDIR'), which the Python" \
    "backend's stub embeds: use a Python built with --enable-shared (TX2_PYTHON)"
fi
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
STATUS=0
"$PY" - "$DIR/download/$WHEEL" "$DIR/server" "$PYVER" <<'PYTHON' || STATUS=$?
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
    print('the wheel has no Python backend stub for Python {} (it has {})'.format(
        version, ', '.join(sorted(os.listdir(os.path.dirname(os.path.dirname(stub)))))))
    sys.exit(3)
shutil.copy(stub, os.path.join(server, 'backends', 'python', 'triton_python_backend_stub'))
for path in (os.path.join(server, 'bin', 'tritonserver'),
             os.path.join(server, 'backends', 'python', 'triton_python_backend_stub')):
    os.chmod(path, 0o755)
PYTHON
if [[ $STATUS == 3 ]]; then
  unavailable "nvidia-pytriton 0.7.0 has no Python backend stub for Python $PYVER (TX2_PYTHON)"
elif [[ $STATUS != 0 ]]; then
  exit "$STATUS"
fi

if [[ ! -x "$DIR/venv/bin/python" ]]; then
  log "creating the Python backend's environment $DIR/venv (numpy 1.x, ONNX Runtime)"
  "$PY" -m venv "$DIR/venv"
fi
"$DIR/venv/bin/pip" "${PIP_QUIET[@]}" install -r requirements/triton.txt \
  2>&1 | { grep -v 'is ignored: it is neither' || true; }
"$DIR/venv/bin/python" -c 'import numpy, onnxruntime'
echo "$LIBDIR" >"$DIR/python_libdir"
for binary in bin/tritonserver backends/python/triton_python_backend_stub; do
  if LD_LIBRARY_PATH=$LIBDIR ldd "$DIR/server/pytriton/tritonserver/$binary" \
      | grep 'not found' >&2; then
    echo "setup_triton: $binary misses the libraries above" >&2
    exit 1
  fi
done
echo "$WANT" >"$STAMP"
log "Triton server ready in $((SECONDS - T0)) s"
