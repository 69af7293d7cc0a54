#!/usr/bin/env bash
# Create or refresh build/py36-venv (or $TX2_PY36_VENV): the robot's Python, CPython 3.6 as on
# JetPack 4.6, with the JetPack-era runtime libraries of requirements/py36.txt, in which
# test/test_python36_runtime.py runs the runtime layers' tests. Idempotent (a stamp of its
# inputs). Without a Python 3.6 interpreter it says so and exits 0: that test then skips,
# naming the reason.
#
# The interpreter: $TX2_PY36, else python3.6 on PATH, else pyenv's 3.6 (~/.pyenv or /root/.pyenv).
# Usage: tools/setup_py36.sh [--force]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${TX2_PY36_VENV:-$ROOT/build/py36-venv}
STAMP=$VENV/.tx2_py36_stamp
cd "$ROOT"

WANT=$(cat requirements/py36.txt tools/setup_py36.sh | sha256sum | cut -d' ' -f1)
if [[ "${1:-}" != --force && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  exit 0
fi
PY=${TX2_PY36:-}
if [[ -z "$PY" ]]; then
  for candidate in python3.6 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.6*/bin/python3.6 \
      /root/.pyenv/versions/3.6*/bin/python3.6; do
    # (a pyenv shim is on PATH even where 3.6 is not selected: run each to know)
    if "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 6)' 2>/dev/null; then
      PY=$candidate; break
    fi
  done
fi
if [[ -z "$PY" ]] || ! "$PY" -c 'import sys; assert sys.version_info[:2] == (3, 6)' 2>/dev/null; then
  echo "[setup_py36] no Python 3.6 interpreter found (set TX2_PY36=/path/to/python3.6):" \
       "the Python 3.6 runtime tests will be skipped" >&2
  exit 0
fi
T0=$SECONDS
printf '[setup_py36 %s] %s\n' "$(date +%H:%M:%S)" "making $VENV with $PY (~250 MB)"
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
"$PY" -m venv "$VENV"
# pip 21 reads a setup.cfg in its working directory as distutils configuration (this package's
# would move scripts into lib/tx2_inference): install from inside the venv instead.
cd "$VENV"
# Python 3.6's own pip (18.1) knows no manylinux2014 or abi3 wheels: 21.3.1 is the last for 3.6.
"$VENV/bin/python" -m pip --disable-pip-version-check --no-input -q install 'pip==21.3.1' \
  2>&1 | { grep -v 'is ignored: it is neither' || true; }
# Binary wheels only: every pinned package has a cp36 wheel, and nothing is built from source.
"$VENV/bin/python" -m pip --disable-pip-version-check --no-input -q install \
  --only-binary=:all: -r "$ROOT/requirements/py36.txt" 2>&1 | { grep -v 'is ignored: it is neither' || true; }
"$VENV/bin/python" -c 'import numpy, cv2, onnxruntime, onnx, yaml, pytest, skimage'
cd "$ROOT"
echo "$WANT" >"$STAMP"
printf '[setup_py36 %s] %s\n' "$(date +%H:%M:%S)" "ready in $((SECONDS - T0)) s"
