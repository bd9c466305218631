#!/usr/bin/env bash
# tools/gpu_check.sh — issue 16's check on a CUDA GPU machine (the `device` tool's nvidia-h200:
# Python 3.12 at /opt/torch/.venv as python3, torch, Cython, numpy, pytest(-xdist, -timeout),
# NVIDIA's cuBLAS/cuDNN wheels and nvcc 13 installed; no network).  Under 8 minutes:
#
#   1. nvidia-smi                       → $OUT/nvidia-smi.txt
#   2. carried wheels (.whl/*.whl)      → /tmp/site (PYTHONPATH)
#   3. build: pip install --no-build-isolation --no-deps --target /tmp/site . with GRAPHC_CUDA=1
#      (GRAPHC_CUDA_ARCHS=90 here, to halve nvcc's time: CI compiles sm_80 + sm_90 + PTX)
#                                       → $OUT/build.log
#   4. the CUDA tests: every test whose id says cuda in tests/test_kernels.py, test_random.py,
#      test_dropout.py, test_gradients.py, test_train_e2e.py, test_cuda_parity.py, test_cuda_runtime.py
#      (pytest -k cuda, in parallel when pytest-xdist is there)
#                                       → $OUT/tests.log
#   4b. NCCL: tests/test_nccl.py (a 1-rank NCCL world, library search, the one-GPU-per-rank verdict)
#                                       → $OUT/nccl.log
#   5. compute-sanitizer --tool memcheck on a subset of the kernel tests, when present
#                                       → $OUT/sanitizer.log
#   6. tools/bench_cuda.py (the table vs PyTorch CUDA)
#                                       → $OUT/bench.txt, $OUT/bench.json
#   then one table (phase, status, seconds, detail; then the benchmark's) → $OUT/summary.txt
#
# Each phase has a time limit, and the whole script a budget (GPU_CHECK_BUDGET, default 450 s):
# a phase that would start past it is reported "skipped (time)".  The exit status is 0 when every
# phase passed, else 1.  Python runs with -P, so the graphc under test is the one just installed
# in /tmp/site, not the checkout's uncompiled package.
#
# Wheels the machine lacks travel with the working tree in .whl/ (ignored by git: run
# `echo /.whl/ >> .git/info/exclude` once).  Fetch them on a machine with network, in the repo's
# root (checked on 2026-12-02: these three, 8 MB together; the NCCL phase also needs
# nvidia-nccl-cu13, 305 MB: over the 64 MiB carry limit, so it must be on the machine already):
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
#     scipy-openblas32==0.3.34.481.3 protobuf==7.36.2 graphviz==0.21
#
# On the device tool:  run(command="bash tools/gpu_check.sh", carry=[".whl"], timeout_s=560)
#
# --dry-run: the shell logic on a machine without a GPU: no pip build (the checkout's in-place
# build is used through PYTHONPATH), the same test, sanitizer and benchmark commands (which then
# skip or exit 2 saying why), the same table; logs under $OUT or build/gpu_check/.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DRY=0
case "${1:-}" in
    --dry-run) DRY=1 ;;
    "") ;;
    -h|--help) sed -n '2,40p' "$0"; exit 0 ;;
    *) echo "usage: tools/gpu_check.sh [--dry-run]" >&2; exit 2 ;;
esac

LOGS=${OUT:-$ROOT/build/gpu_check}
mkdir -p "$LOGS"
BUDGET=${GPU_CHECK_BUDGET:-450}
START=$(date +%s)
SITE=/tmp/site
PY=${PYTHON:-python3}
if [ "$DRY" = 1 ]; then
    PY=${PYTHON:-python}
    PYFLAGS=()
    export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
else
    PYFLAGS=(-P)
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
JOBS=$(nproc 2>/dev/null || echo 4)

ROWS=()     # "phase|status|seconds|detail"
FAILED=0

elapsed() { echo $(( $(date +%s) - START )); }

# phase NAME LIMIT LOG COMMAND...: run COMMAND (bash -c) with a time limit, log appended to LOG.
# Sets PHASE_RC.  The limit shrinks to what is left of the budget.
phase() {
    local name=$1 limit=$2 log=$3
    shift 3
    local left=$(( BUDGET - $(elapsed) ))
    if [ "$left" -lt 15 ]; then
        ROWS+=("$name|skipped (time)|0|budget of ${BUDGET}s spent")
        PHASE_RC=125
        PHASE_SKIPPED=1
        FAILED=1
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    local t0=$(date +%s)
    PHASE_SKIPPED=0
    {
        echo "=== $name (limit ${limit}s): $*"
    } >>"$log"
    timeout --kill-after=10 "$limit" bash -c "$*" >>"$log" 2>&1
    PHASE_RC=$?
    PHASE_SECONDS=$(( $(date +%s) - t0 ))
    echo "=== $name: exit $PHASE_RC after ${PHASE_SECONDS}s" >>"$log"
}

record() {  # record NAME STATUS DETAIL (uses PHASE_SECONDS); nothing after a phase skipped for time
    [ "${PHASE_SKIPPED:-0}" = 1 ] && return
    ROWS+=("$1|$2|${PHASE_SECONDS:-0}|$3")
    case "$2" in pass*|"no GPU"*|absent*|"skipped (dry run)"*) ;; *) FAILED=1 ;; esac
}

status_of() {  # a pytest/command exit status in words
    case "$1" in
        0) echo "pass" ;;
        5) echo "pass (nothing selected)" ;;
        124|137) echo "TIMEOUT" ;;
        *) echo "FAIL (exit $1)" ;;
    esac
}

pytest_line() {  # the last pytest summary line of a log ("3 passed, 1 skipped in 2.0s")
    grep -E "[0-9]+ (passed|failed|skipped|error|errors|deselected)" "$1" 2>/dev/null | tail -1 | sed 's/=//g; s/^ *//; s/ *$//'
}

# 1. the machine
PHASE_SECONDS=0
if command -v nvidia-smi >/dev/null 2>&1; then
    phase "nvidia-smi" 20 "$LOGS/nvidia-smi.txt" "nvidia-smi; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv"
    record "nvidia-smi" "$(status_of $PHASE_RC)" "$(grep -m1 '^NVIDIA [^-]' "$LOGS/nvidia-smi.txt" | cut -c1-100)"
else
    echo "nvidia-smi: not found" >"$LOGS/nvidia-smi.txt"
    ROWS+=("nvidia-smi|absent|0|no NVIDIA driver tools on this machine")
fi

# 2-3. wheels and the build
if [ "$DRY" = 1 ]; then
    ROWS+=("wheels|skipped (dry run)|0|$(ls .whl/*.whl 2>/dev/null | wc -l) wheel(s) in .whl/")
    ROWS+=("build|skipped (dry run)|0|the in-place build: cuda_built=$("$PY" -c 'import graphc._runtime as r; print(r.cuda_built())' 2>&1 | tail -1)")
else
    mkdir -p "$SITE"
    if ls .whl/*.whl >/dev/null 2>&1; then
        phase "wheels" 60 "$LOGS/build.log" "'$PY' -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target '$SITE' .whl/*.whl"
        record "wheels" "$(status_of $PHASE_RC)" "$(ls .whl/*.whl | wc -l) wheel(s) into $SITE"
    else
        ROWS+=("wheels|absent|0|no .whl/ folder: scipy-openblas32, protobuf>=7.35, graphviz must be installed")
    fi
    phase "build" 280 "$LOGS/build.log" "GRAPHC_CUDA=1 GRAPHC_CUDA_ARCHS=\${GRAPHC_CUDA_ARCHS:-90} GRAPHC_BUILD_JOBS=$JOBS '$PY' -m pip install -v --no-build-isolation --no-deps --no-index --no-cache-dir --upgrade --target '$SITE' . && cd /tmp && '$PY' -P -c 'import graphc, graphc._runtime as r; print(graphc.__file__); assert r.cuda_built(), \"not a CUDA build\"; s = getattr(r, \"cuda_status\", lambda: \"(no cuda_status)\")(); print(\"cuda_status:\", repr(s)); print(\"cuda kernels:\", len(r.kernel_keys(\"cuda\")))'"
    record "build" "$(status_of $PHASE_RC)" "$(grep -E '^cuda_status:|^cuda kernels:' "$LOGS/build.log" | tr '\n' ' ')"
    if [ "$PHASE_RC" != 0 ]; then
        tail -40 "$LOGS/build.log"
    fi
fi

# 4. the CUDA tests
TESTS=(tests/test_kernels.py tests/test_gradients.py tests/test_train_e2e.py tests/test_random.py tests/test_dropout.py
       tests/test_cuda_parity.py)
[ -f tests/test_cuda_runtime.py ] && TESTS+=(tests/test_cuda_runtime.py)
XDIST=()
if "$PY" -c "import xdist" >/dev/null 2>&1; then
    XDIST=(-n "$(( JOBS < 8 ? JOBS : 8 ))")
fi
TIMEOUT_OPT=()
if "$PY" -c "import pytest_timeout" >/dev/null 2>&1; then
    TIMEOUT_OPT=(--timeout 150)
fi
phase "tests" 200 "$LOGS/tests.log" "'$PY' ${PYFLAGS[*]} -m pytest -q -p no:cacheprovider -rfEs ${XDIST[*]} ${TIMEOUT_OPT[*]} -k cuda ${TESTS[*]}"
CUDA_SKIPS=$(grep -cE "^SKIPPED .*device 'cuda'" "$LOGS/tests.log" 2>/dev/null); CUDA_SKIPS=${CUDA_SKIPS:-0}
if [ "$DRY" = 0 ] && [ "$PHASE_RC" = 0 ] && [ "$CUDA_SKIPS" -gt 0 ]; then
    # On the GPU machine a CUDA test that skips because CUDA is unusable is a failure.
    record "tests" "FAIL (cuda skipped)" "$CUDA_SKIPS skip line(s) say CUDA is unusable; $(pytest_line "$LOGS/tests.log")"
else
    record "tests" "$(status_of $PHASE_RC)" "$(pytest_line "$LOGS/tests.log")"
fi

# 4b. NCCL (data-parallel training on CUDA, issue 17): tests/test_nccl.py on the GPU: a real
#     1-rank NCCL communicator (ncclCommInitRank, allreduce in both modes through the plan's C
#     path, the ordered-sum kernel), the library search, and create() over 3 in-process ranks on
#     the one GPU (every rank refused with the same "both use GPU" message: NCCL needs one GPU per
#     rank, so a 2-rank plan run needs a 2-GPU machine).  Needs the nvidia-nccl-cu13 wheel.
phase "nccl" 120 "$LOGS/nccl.log" "'$PY' ${PYFLAGS[*]} -m pytest -q -p no:cacheprovider -rfEs tests/test_nccl.py"
NCCL_SKIPS=$(grep -cE "^SKIPPED .*(without CUDA\+NCCL|wheel is not installed|nvcc not found)" "$LOGS/nccl.log" 2>/dev/null); NCCL_SKIPS=${NCCL_SKIPS:-0}
if [ "$DRY" = 0 ] && [ "$PHASE_RC" = 0 ] && [ "$NCCL_SKIPS" -gt 0 ]; then
    record "nccl" "FAIL (nccl skipped)" "$NCCL_SKIPS NCCL test(s) skipped on the GPU machine; $(pytest_line "$LOGS/nccl.log")"
else
    record "nccl" "$(status_of $PHASE_RC)" "$(pytest_line "$LOGS/nccl.log")"
fi

# 5. compute-sanitizer memcheck on a subset of the kernel tests (one process, step by step)
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if [ -n "$SAN" ]; then
    SUBSET="cuda and (add or mul or softmax or layer_norm or sum or max or matmul or embedding or take_along or conv2d or max_pool or dropout_train or random_uniform or cumsum or topk or transpose or concat or pad)"
    phase "sanitizer" 100 "$LOGS/sanitizer.log" "GRAPHC_CUDA_SYNC=1 '$SAN' --tool memcheck --error-exitcode 86 --print-limit 30 '$PY' ${PYFLAGS[*]} -m pytest -v -p no:cacheprovider -x -k '$SUBSET' tests/test_kernels.py"
    errors=$(grep -cE "^========= (Invalid|Program hit|Out-of-range|Misaligned)" "$LOGS/sanitizer.log" 2>/dev/null); errors=${errors:-0}
    if [ "$PHASE_RC" = 86 ] || [ "$errors" -gt 0 ]; then
        record "sanitizer" "FAIL (memcheck errors)" "$errors memcheck report(s); $(pytest_line "$LOGS/sanitizer.log")"
    elif [ "$PHASE_RC" = 124 ] || [ "$PHASE_RC" = 137 ]; then
        # memcheck slows every launch; what ran before the limit was clean
        record "sanitizer" "pass (partial: time limit)" "0 memcheck reports in $(grep -c ' PASSED' "$LOGS/sanitizer.log") test(s) passed before the limit"
    else
        record "sanitizer" "$(status_of $PHASE_RC)" "$errors memcheck report(s); $(pytest_line "$LOGS/sanitizer.log")"
    fi
else
    echo "compute-sanitizer: not found" >"$LOGS/sanitizer.log"
    ROWS+=("sanitizer|absent|0|compute-sanitizer not found")
fi

# 6. the benchmarks
phase "bench" 200 "$LOGS/bench.txt" "'$PY' ${PYFLAGS[*]} tools/bench_cuda.py --repeat \${BENCH_REPEAT:-10} --json '$LOGS/bench.json'"
if [ "$PHASE_RC" = 2 ] && grep -q "no usable CUDA GPU" "$LOGS/bench.txt" 2>/dev/null; then
    record "bench" "no GPU (exit 2)" "$(grep -m1 'no usable CUDA GPU' "$LOGS/bench.txt" | cut -c1-110)"
else
    record "bench" "$(status_of $PHASE_RC)" "$(grep -c '^  [a-z_]*: done' "$LOGS/bench.txt" 2>/dev/null) row(s) measured, $(grep -c '^  [a-z_]*: FAILED' "$LOGS/bench.txt" 2>/dev/null) failed"
fi

# the table
{
    echo "gpu_check: $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -n), $( [ "$DRY" = 1 ] && echo 'DRY RUN, ' )total $(elapsed)s of ${BUDGET}s"
    printf '%-11s  %-24s  %7s  %s\n' phase status seconds detail
    printf '%-11s  %-24s  %7s  %s\n' ----------- ------------------------ ------- ------
    for row in "${ROWS[@]}"; do
        IFS='|' read -r p s t d <<<"$row"
        printf '%-11s  %-24s  %7s  %s\n' "$p" "$s" "$t" "$d"
    done
    if grep -q "^what  " "$LOGS/bench.txt" 2>/dev/null; then
        echo
        sed -n '/^machine:/,/^$/p' "$LOGS/bench.txt"
        grep -E "^device-to-device copy" "$LOGS/bench.txt"
        sed -n '/^what  /,$p' "$LOGS/bench.txt"
    fi
    failures=$(grep -E "^(FAILED|ERROR) " "$LOGS/tests.log" 2>/dev/null | head -30)
    if [ -n "$failures" ]; then
        echo
        echo "test failures (first 30; tests.log has them all):"
        echo "$failures"
    fi
} | tee "$LOGS/summary.txt"
exit $FAILED
