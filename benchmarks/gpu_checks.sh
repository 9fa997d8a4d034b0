#!/usr/bin/env bash
# Every check that needs a CUDA GPU, in one command, most important first, for a machine lent for minutes:
#   1. the CUDA tests (tests/test_ligo_cuda.py; the two-GPU device_map test in test_ligo_torch_tooling.py,
#      which skips where there is one GPU);
#   2. the operator's training step against the plain target's, fp32, eager and compiled (bench_operator.py;
#      the aim is LiGO / plain <= 1.5; the step's peak GPU memory, LiGO / plain, is reported beside it);
#   3. gpu-small with every method of its comparison and --tune, seeds 0-2, for what is left of the time
#      budget. It runs with --resume in WORK_DIR: bring WORK_DIR's kept runs back (gpu-small-kept.tgz holds
#      every kept summary) and a later call continues where this one stopped.
# A step that fails does not stop the next; each writes its own log in OUT_DIR.
#
#   benchmarks/gpu_checks.sh OUT_DIR DATA_DIR [WORK_DIR] [SECONDS_FOR_GPU_SMALL]
#
# WORK_DIR defaults to runs/gpu-small, SECONDS_FOR_GPU_SMALL to 300 (with the tests and the benchmarks before
# it, the whole script should stay inside a 10-minute call). On a machine without a package index, set
# BUNDLE to an archive of benchmarks/offline_bundle.py: it is installed first into BUNDLE_DEST (default
# /tmp/fedgrow-offline; its site/ goes first on PYTHONPATH), and DATA_DIR can be BUNDLE_DEST/data:
#   BUNDLE=.devbundle/offline.tar.gz benchmarks/gpu_checks.sh OUT /tmp/fedgrow-offline/data
# Nothing here reaches the Hub (HF_HUB_OFFLINE is set). PYTHON (default python3) names the interpreter.
# PRESET (default gpu-small), DEVICE (default cuda) and BENCH_ARGS (default --steps 30) are for a dry run
# on a machine without a GPU, e.g. PRESET=tiny DEVICE=cpu BENCH_ARGS="--steps 1 --batch 2 --length 16".
set -u
if [ $# -lt 2 ]; then
  echo "usage: $0 OUT_DIR DATA_DIR [WORK_DIR] [SECONDS_FOR_GPU_SMALL]" >&2
  exit 2
fi
out=$(realpath -m "$1") data=$(realpath -m "$2") work=$(realpath -m "${3:-runs/gpu-small}") budget=${4:-300}
preset=${PRESET:-gpu-small} device=${DEVICE:-cuda} bench=${BENCH_ARGS:---steps 30} python=${PYTHON:-python3}
bundle=${BUNDLE:+$(realpath -m "$BUNDLE")}
cd "$(dirname "$0")/.." || exit 2
mkdir -p "$out" "$work"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the checkout's fedgrow_hf, installed or not
status=0

step() {  # step NAME COMMAND...: run COMMAND, its output in OUT_DIR/NAME.log, and say how it ended
  local name=$1
  shift
  local started=$SECONDS
  "$@" >"$out/$name.log" 2>&1
  local rc=$?
  echo "$name: exit $rc after $((SECONDS - started)) s" | tee -a "$out/steps.txt"
  [ $rc -eq 0 ] || status=1
}

if [ -n "$bundle" ]; then
  dest=$(realpath -m "${BUNDLE_DEST:-/tmp/fedgrow-offline}")
  "$python" benchmarks/offline_bundle.py install "$bundle" "$dest" >"$out/bundle.log" 2>&1 \
    || { echo "installing $bundle failed: $out/bundle.log" | tee -a "$out/steps.txt"; exit 1; }
  export PYTHONPATH="$dest/site${PYTHONPATH:+:$PYTHONPATH}"
fi
{ nvidia-smi -L 2>&1 || true; "$python" -c "import torch; print(torch.__version__, torch.cuda.is_available())"; } \
  >"$out/machine.txt" 2>&1
step cuda-tests "$python" -m pytest -q -p no:cacheprovider tests/test_ligo_cuda.py tests/test_ligo_torch_tooling.py
# shellcheck disable=SC2086  # BENCH_ARGS is a list of options
step operator-step "$python" benchmarks/bench_operator.py --device "$device" --random-source --no-memory $bench
# shellcheck disable=SC2086
step operator-step-compiled "$python" benchmarks/bench_operator.py --device "$device" --random-source --no-memory \
  $bench --compile
step "$preset" timeout "$budget" "$python" -m fedgrow_hf.cli reproduce "$preset" --data-dir "$data" \
  --output-dir "$out/$preset" --work-dir "$work" --report "$out/RESULTS.md" \
  --methods own-source fed-grow independent fed-scratch --seeds 0,1,2 --tune --engine inprocess --resume
# the kept summaries: WORK_DIR/tuning-<search>.json and WORK_DIR/seed-<seed>/<method>.json
(cd "$work" && find . -maxdepth 2 -name '*.json' -print0 | tar czf - --null -T -) >"$out/$preset-kept.tgz"
exit $status
