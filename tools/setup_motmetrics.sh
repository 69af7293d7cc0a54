#!/usr/bin/env bash
# Create or refresh build/motmetrics-venv (or $TX2_MOTMETRICS_VENV): py-motmetrics 1.4.0 with
# the numpy 1.x and pandas < 2.3 it needs (it calls np.asfarray, gone in numpy 2), for the
# tracking evaluation on its MOTChallenge sequences (tx2_inference/tools/mot_eval.py). Its own
# interpreter: the node's environment has numpy 2. Idempotent; about 100 MB.
#
# Usage: tools/setup_motmetrics.sh [--force]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
exec "$ROOT/tools/setup_side_venv.sh" motmetrics \
  "${TX2_MOTMETRICS_VENV:-$ROOT/build/motmetrics-venv}" requirements/motmetrics.txt \
  'import motmetrics, numpy, pandas; numpy.asfarray' "${1:-}"
