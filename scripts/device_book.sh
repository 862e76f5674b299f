#!/usr/bin/env bash
# Train and execute chapters of the book on a bare device machine (or any machine), in one command.
#
#   OUT=DIR scripts/device_book.sh PRESET [CHAPTER …] [--seeds N] [--fit] [--variants a,b,…] [--parallel N]
#                                  [--probe] [--deadline S] [--mps] [--no-smoke] [--check] [--set KEY=VALUE …]
#
#   OUT=/tmp/o scripts/device_book.sh smoke 01 02                       # a check, on any CPU
#   OUT=$OUT scripts/device_book.sh gpu 01 02 --seeds 3 --variants soft_window,hard_window,alibi
#
# Steps, each logged to $OUT/device.log as it goes (so a command stopped at its limit still returns it):
#  1. the carried wheels (.whl/) are installed into /tmp/site, only those whose package is missing here;
#  2. the data are prepared from $TINYGPT_DATA_SOURCE, else from the carried .rawdata/ (make device-data);
#  3. chapter 01 runs at the smoke preset (seconds): a broken install fails here, not after training;
#  4. on a GPU: the probe's measurements — how many runs share the GPU, which step path (eager, compiled,
#     one CUDA graph: tinygpt/step.py) is fastest over a run, tokens/s — are read from the committed
#     results/bench/h200-probe.json (PROBE=FILE names another); --probe measures them afresh (~100 s) with
#     `tinygpt.book.throughput probe`. --parallel N overrides the probe's N. The step path goes to every
#     run as TINYGPT_STEP (an environment variable: `book run --set` sets notebook parameters only); a
#     probe that predates the step paths leaves it at `graphs`. With --fit, fewer seeds than --seeds when
#     the probe's rate says the planned runs would not finish before the deadline;
#  5. `tinygpt book run --preset PRESET` trains every planned run (N processes at once, bf16 autocast,
#     the step path above) and executes the chapters into $BUILD/book, results in $BUILD/results (never
#     the repository's book/ or results/);
#  6. everything that should come back is packed into at most 8 files in $OUT: device.log, book.tar.gz
#     (executed notebooks, run log), results.tar.gz (every run's JSON; no checkpoints), bench.md and
#     bench.json (tokens/s and MFU per run and in all), probe.json.
# --seeds N sets every chapter's n_seeds and baseline_seeds; --variants narrows the chapters' variants
# (a chunk can shrink). --deadline S (default 540) stops the book run early enough to pack within S s.
# --mps starts NVIDIA's MPS daemon first (kernels of the packed runs then overlap), where it is installed.
LOG=device.log; source "$(dirname "$0")/device_env.sh"  # cd to the repository, $OUT/device.log, $PY
T0=$(date +%s)
BUILD=${BUILD:-$REPO/build/device}
WHL=${WHL:-.whl}     # the carried wheels
SITE=${SITE:-/tmp/site}  # where they are installed (the device README's --target)

usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 1 ] || usage
PRESET=$1; shift
CHAPTERS=(); SETS=(); PARALLEL=""; SMOKE=1; DEADLINE=540; CHECK=0; SEEDS=""; FIT=0; MPS=0; MEASURE=0
PROBE_GIVEN=${PROBE:+1}  # a PROBE named in the environment is read on any machine (tests)
PROBE=${PROBE:-$REPO/results/bench/h200-probe.json}  # measured on a lent H200; --probe measures afresh
while [ $# -gt 0 ]; do
  case $1 in
    --seeds) SEEDS=$2; shift 2 ;;
    --fit) FIT=1; shift ;;
    --mps) MPS=1; shift ;;
    --probe) MEASURE=1; shift ;;
    --variants) SETS+=(--set "variants=[$(echo "$2" | sed "s/[^,][^,]*/'&'/g")]"); shift 2 ;;
    --parallel) PARALLEL=$2; shift 2 ;;
    --deadline) DEADLINE=$2; shift 2 ;;
    --no-smoke) SMOKE=0; shift ;;
    --check) CHECK=1; shift ;;  # stop after the install and the import check
    --set) SETS+=(--set "$2"); shift 2 ;;
    -h|--help) usage ;;
    -*) echo "unknown option $1"; usage ;;
    *) CHAPTERS+=("$1"); shift ;;
  esac
done
step() { echo "== [$(( $(date +%s) - T0 )) s] $*"; }

pack() {  # whatever exists by now; runs also when a step failed
  step "packing into $OUT"
  (cd "$BUILD" && tar czf "$OUT/book.tar.gz" --exclude='.*.running.ipynb' book smoke/book 2>/dev/null)
  (cd "$BUILD" && find results smoke/results -name '*.json' -print0 2>/dev/null \
    | tar czf "$OUT/results.tar.gz" --null -T -)
  [ -d "$BUILD/results/$PRESET" ] && $PY -m tinygpt.book.throughput report "$BUILD/results" --preset "$PRESET" \
    --run-log "$BUILD/book/_run_log.json" --json "$OUT/bench.json" > "$OUT/bench.md"
  [ -f "$PROBE" ] && cp "$PROBE" "$OUT/probe.json"
  ls -l "$OUT"
}
fail() { step "FAILED: $*"; pack; exit 1; }

# 1. wheels ($WHL): only the packages missing here (the device image lacks the notebook tool chain)
step "python $($PY -c 'import platform; print(platform.python_version())'), installing missing wheels"
export PYTHONPATH="$REPO:$SITE${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G "$WHL/*.whl" > /dev/null; then
  missing=$(WHL=$WHL $PY - <<'EOF'
import importlib.metadata as md, os, pathlib
for w in sorted(pathlib.Path(os.environ["WHL"]).glob("*.whl")):
    try:
        md.version(w.name.split("-")[0])
    except md.PackageNotFoundError:
        print(w)
EOF
)
  if [ -n "$missing" ]; then
    echo "installing $(echo "$missing" | wc -l) of $(ls "$WHL"/*.whl | wc -l) wheels into $SITE"
    # shellcheck disable=SC2086  # one path per word
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" $missing \
      || fail "wheel install"
  else
    echo "every carried package is present: nothing installed"
  fi
fi
$PY -c "import papermill, nbclient, ipykernel, tinygpt.book.runner" || fail "the notebook tool chain does not import"
[ "$CHECK" = 1 ] && { step "install checked"; exit 0; }

# 2. data
export TINYGPT_DATA_SOURCE=${TINYGPT_DATA_SOURCE:-$REPO/.rawdata}
export TINYGPT_DATA_DIR=${TINYGPT_DATA_DIR:-$BUILD/data}
step "preparing data from $TINYGPT_DATA_SOURCE into $TINYGPT_DATA_DIR"
$PY -m tinygpt prepare shakespeare_char shakespeare_complete || fail "data"
$PY - <<'EOF'
import datetime, platform, torch
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, torch {torch.__version__}, "
      f"CUDA {torch.version.cuda}, GPUs {torch.cuda.device_count()} ({gpu}), python {platform.python_version()}")
EOF

# 3. a smoke chapter: seconds, and it proves the kernel, papermill and the data work here
if [ "$SMOKE" = 1 ]; then
  step "smoke: chapter 01 at the smoke preset"
  TINYGPT_RESULTS=$BUILD/smoke/results $PY -m tinygpt book run --preset smoke --notebooks 01 --set n_seeds=2 \
    --out-dir "$BUILD/smoke/book" --no-progress || fail "smoke chapter"
fi

# 4. how many runs at once, and how many seeds fit
ON_GPU=0; $PY -c "import sys, torch; sys.exit(not torch.cuda.is_available())" && ON_GPU=1
if [ "$MPS" = 1 ] && [ "$ON_GPU" = 1 ]; then
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  nvidia-cuda-mps-control -d && step "MPS daemon started" || echo "MPS did not start: runs time-slice the GPU"
fi
if [ "$ON_GPU" = 1 ] && [ "$MEASURE" = 1 ]; then
  step "probe: step paths and runs per GPU"
  if $PY -m tinygpt.book.throughput probe --preset "$PRESET" --json "$BUILD/probe.json" > /dev/null; then
    PROBE=$BUILD/probe.json
  else
    echo "the probe failed: using $PROBE"
  fi
fi
probe_get() { $PY -c "import json, sys; d = json.load(open(sys.argv[1])); print($1)" "$PROBE"; }
if { [ "$ON_GPU" = 1 ] || [ -n "$PROBE_GIVEN" ]; } && [ -f "$PROBE" ]; then
  step "probe: $PROBE ($(probe_get "d.get('measured', 'measured here')"))"
  [ -z "${TINYGPT_STEP:-}" ] && export TINYGPT_STEP=$(probe_get "d.get('step', 'graphs')")
  if [ -z "$PARALLEL" ]; then
    GPUS=$($PY -c "import torch; print(max(1, torch.cuda.device_count()))")
    PARALLEL=$(( $(probe_get "d['n']") * GPUS ))
  fi
fi
[ -n "$PARALLEL" ] || PARALLEL=$($PY -c "import os; print(max(1, len(os.sched_getaffinity(0)) // 2))")
echo "step path: TINYGPT_STEP=${TINYGPT_STEP:-auto}, $PARALLEL runs at once"
export TINYGPT_STEP=${TINYGPT_STEP:-auto}

LEFT=$(( DEADLINE - ($(date +%s) - T0) - 20 ))
if [ "$FIT" = 1 ] && [ -n "$SEEDS" ] && { [ "$ON_GPU" = 1 ] || [ -n "$PROBE_GIVEN" ]; } && [ -f "$PROBE" ]; then
  RATE=$(probe_get "[r for r in d['rows'] if r['n'] == d['n']][0]['tokens_per_s'] * $PARALLEL // d['n']")
  # training gets what is left but ~90 s for the chapters themselves; variants run up to ~1.3x the baseline's step
  SEEDS=$($PY -m tinygpt.book.throughput plan --preset "$PRESET" "${CHAPTERS[@]}" "${SETS[@]}" \
    --tokens-per-s "$RATE" --fit $(( (LEFT - 90) * 10 / 13 )) --seeds "$SEEDS") || fail "plan"
  step "--fit: $SEEDS seeds fit at $RATE tokens/s"
fi
if [ -n "$SEEDS" ]; then  # baseline_seeds only where a chosen chapter takes it (01 alone does not: an error)
  SETS+=(--set "n_seeds=$SEEDS")
  if [ ${#CHAPTERS[@]} -eq 0 ] || printf '%s\n' "${CHAPTERS[@]}" | grep -qv '^0[15]'; then
    SETS+=(--set "baseline_seeds=$SEEDS")
  fi
fi

# 5. train and execute, stopped in time to pack
LEFT=$(( DEADLINE - ($(date +%s) - T0) - 20 ))
step "book run --preset $PRESET ${CHAPTERS[*]:-(all)}: $PARALLEL at once, ${LEFT} s left"
[ "$LEFT" -gt 30 ] || fail "no time left for the book run"
NB=(); [ ${#CHAPTERS[@]} -gt 0 ] && NB=(--notebooks "${CHAPTERS[@]}")
TINYGPT_RESULTS=$BUILD/results timeout -k 10 "$LEFT" $PY -m tinygpt book run --preset "$PRESET" "${NB[@]}" \
  --jobs "$PARALLEL" --out-dir "$BUILD/book" "${SETS[@]}"
RC=$?
[ $RC = 124 ] && echo "book run stopped at the deadline (${LEFT} s)"
pack
step "done (book run exit $RC)"
exit $RC
