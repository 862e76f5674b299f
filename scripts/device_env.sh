# Sourced by device_book.sh and device_speed.sh, with LOG set: from the repository root, everything the
# script prints is streamed to $OUT/$LOG from the first second (a call stopped at its limit returns it).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$(pwd)
: "${OUT:?set OUT to the folder the results go to}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/$LOG") 2>&1
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
