#!/usr/bin/env bash
# Create or refresh a side environment: a venv of its own for a tool whose pins clash with the
# node's (motmetrics' numpy 1.x and pandas). Idempotent: a stamp of its inputs
# (the requirements file and the calling script) in the venv; a second run exits at once.
#
# Usage: tools/setup_side_venv.sh NAME VENV REQUIREMENTS CHECK [--force]
#   NAME: for the log and the stamp; CHECK: Python run in the venv once installed.
set -euo pipefail

NAME=$1 VENV=$2 REQUIREMENTS=$3 CHECK=$4 FORCE=${5:-}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${TX2_PYTHON:-python3.11}
STAMP=$VENV/.tx2_${NAME}_stamp
cd "$ROOT"

WANT=$(cat "$REQUIREMENTS" "$0" "tools/setup_$NAME.sh" | sha256sum | cut -d' ' -f1)
if [[ "$FORCE" != --force && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  exit 0
fi
command -v "$PY" >/dev/null 2>&1 || PY=python3
T0=$SECONDS
printf '[setup_%s %s] %s\n' "$NAME" "$(date +%H:%M:%S)" "installing $REQUIREMENTS in $VENV"
if [[ ! -x "$VENV/bin/python" ]]; then
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/pip" --disable-pip-version-check --no-input -q install -r "$REQUIREMENTS" \
  2>&1 | { grep -v 'is ignored: it is neither' || true; }
"$VENV/bin/python" -c "$CHECK"
echo "$WANT" >"$STAMP"
printf '[setup_%s %s] %s\n' "$NAME" "$(date +%H:%M:%S)" "ready in $((SECONDS - T0)) s"
