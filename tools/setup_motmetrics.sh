#!/usr/bin/env bash
# Create or refresh build/motmetrics-venv (or $TX2_MOTMETRICS_VENV): py-motmetrics 1.4.0 with
# the numpy 1.x and pandas < 2.3 it needs (it calls np.asfarray, gone in numpy 2), for the
# tracking evaluation on its MOTChallenge sequences (tx2_inference/tools/mot_eval.py). Its own
# interpreter: the node's environment has numpy 2. Idempotent (a stamp of its inputs in the
# venv: a second run exits at once); about 100 MB.
#
# Usage: tools/setup_motmetrics.sh [--force]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${TX2_MOTMETRICS_VENV:-$ROOT/build/motmetrics-venv}
PY=${TX2_PYTHON:-python3.11}
STAMP=$VENV/.tx2_motmetrics_stamp
cd "$ROOT"

WANT=$(cat requirements/motmetrics.txt tools/setup_motmetrics.sh | sha256sum | cut -d' ' -f1)
if [[ "${1:-}" != --force && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  exit 0
fi
command -v "$PY" >/dev/null 2>&1 || PY=python3
T0=$SECONDS
printf '[setup_motmetrics %s] %s\n' "$(date +%H:%M:%S)" "installing motmetrics in $VENV"
if [[ ! -x "$VENV/bin/python" ]]; then
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/pip" --disable-pip-version-check --no-input -q install \
  -r requirements/motmetrics.txt 2>&1 | { grep -v 'is ignored: it is neither' || true; }
"$VENV/bin/python" -c 'import motmetrics, numpy, pandas; numpy.asfarray'
echo "$WANT" >"$STAMP"
printf '[setup_motmetrics %s] %s\n' "$(date +%H:%M:%S)" "ready in $((SECONDS - T0)) s"
