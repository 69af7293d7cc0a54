#!/usr/bin/env bash
# Create or refresh build/qat-env (or $TX2_QAT_ENV): tf-keras and TensorFlow Model Optimization
# (requirements/qat.txt) for quantization-aware training, as an overlay on the main venv's
# TensorFlow: the packages go to build/qat-env/site (pip --target, no deps) and
# build/qat-env/bin/python runs the main venv's Python with that folder first on the path.
# The main venv stays as pinned (absl-py 2.5.1; tfmot wants 1.x). Idempotent (a stamp of its
# inputs); with pip's cache a rebuild takes seconds.
#
# Usage: tools/setup_qat_env.sh [--force]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ENVDIR=${TX2_QAT_ENV:-$ROOT/build/qat-env}
VENV=${TX2_VENV:-$ROOT/.venv}
STAMP=$ENVDIR/.tx2_qat_stamp
cd "$ROOT"

WANT=$(cat requirements/qat.txt tools/setup_qat_env.sh | sha256sum | cut -d' ' -f1)
if [[ "${1:-}" != --force && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  exit 0
fi
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "setup_qat_env: $VENV/bin/python is missing: run tools/setup_env.sh first." >&2
  exit 1
fi
T0=$SECONDS
printf '[setup_qat_env %s] %s\n' "$(date +%H:%M:%S)" "installing tf-keras + tfmot into $ENVDIR"
rm -rf "$ENVDIR.new"
mkdir -p "$ENVDIR.new/bin"
"$VENV/bin/pip" --disable-pip-version-check --no-input -q install --no-deps \
  --target "$ENVDIR.new/site" -r requirements/qat.txt \
  2>&1 | { grep -v 'is ignored: it is neither' || true; }
# The launcher: the main venv's Python, this folder's packages first.
cat >"$ENVDIR.new/bin/python" <<LAUNCH
#!/usr/bin/env bash
export PYTHONPATH="$ENVDIR/site\${PYTHONPATH:+:\$PYTHONPATH}"
exec "$VENV/bin/python" "\$@"
LAUNCH
chmod +x "$ENVDIR.new/bin/python"
rm -rf "$ENVDIR"
mv "$ENVDIR.new" "$ENVDIR"
HOME=${HOME:-/tmp} TF_CPP_MIN_LOG_LEVEL=2 "$ENVDIR/bin/python" -c \
  'import absl, tf_keras, tensorflow_model_optimization as tfmot; from importlib.metadata import version; assert version("absl-py").startswith("1."), version("absl-py"); assert absl.__file__.startswith("'$ENVDIR'")' \
  || { echo "setup_qat_env: the QAT environment does not import (see above)" >&2; exit 1; }
echo "$WANT" >"$STAMP"
printf '[setup_qat_env %s] %s\n' "$(date +%H:%M:%S)" "QAT environment ready in $((SECONDS - T0)) s"
