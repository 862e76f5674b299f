#!/usr/bin/env bash
# Issue 29's speed measurements on a lent GPU (or any machine), in one prepared call.
#
#   OUT=DIR scripts/device_speed.sh [PRESET] [device_speed.py options …]      # PRESET: gpu (default)
#
#   OUT=$OUT scripts/device_speed.sh gpu                 # on a lent H200: about 4 minutes
#   OUT=/tmp/s scripts/device_speed.sh smoke --fake-graphs --processes 1,2 --process-seconds 1   # CPU check
#
# Prepares the data from $TINYGPT_DATA_SOURCE (else the carried .rawdata/), then runs
# scripts/device_speed.py: the step per path, a whole run, evaluation, every variant's step and peak
# memory, nanoGPT's step, processes per GPU (its docstring says what each is). Needs torch and numpy
# only: no wheels. $OUT receives speed.log (streamed from the first second), speed.json and speed.md,
# each section's results written as soon as it ends, so a call stopped at its limit still returns them.
LOG=speed.log; source "$(dirname "$0")/device_env.sh"  # cd to the repository, $OUT/speed.log, $PY
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
PRESET=gpu
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then PRESET=$1; shift; fi
export TINYGPT_DATA_SOURCE=${TINYGPT_DATA_SOURCE:-$REPO/.rawdata}
export TINYGPT_DATA_DIR=${TINYGPT_DATA_DIR:-$REPO/build/device/data}
echo "== $(date -u '+%Y-%m-%d %H:%M UTC') device_speed.sh $PRESET $*"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -m tinygpt prepare shakespeare_char || { echo "FAILED: data"; exit 1; }
$PY scripts/device_speed.py --preset "$PRESET" --out "$OUT" "$@"
RC=$?
ls -l "$OUT"
exit $RC
