#!/bin/sh
# Matmul microbenchmark: ftc's own AVX-512 kernels (fp32 and bf16) against OpenBLAS with the environment's
# core type and with its SkylakeX kernels, per training shape and layout (bench/matmul_bench.c lists them).
#
#   sh bench/run_matmul.sh [BUILD_DIR]     (default build; bench/run.sh and `make bench` call it)
# Environment: MATMUL_RUNS (alternations, default 5), MATMUL_REPS (timed repetitions per invocation, default 5),
#              MATMUL_ONLY (substring of shape names), BENCH_RESULTS (default bench/RESULTS.md),
#              MATMUL_CPU_TIME=1: one thread each, GFLOP per CPU-second (kernel quality per core, much less
#              sensitive to other processes on a shared machine than wall-clock figures).
#
# The implementations run alternately, MATMUL_RUNS times, each invocation reporting the median over
# MATMUL_REPS timings; the table gives the median over the runs and [min-max] of the run medians. Only this
# benchmark's OpenBLAS-SkylakeX child process gets OPENBLAS_CORETYPE=SkylakeX; tests never change it.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
runs=${MATMUL_RUNS:-5}
reps=${MATMUL_REPS:-5}
only=${MATMUL_ONLY:-}
results=${BENCH_RESULTS:-$here/RESULTS.md}
cmake --build "$build" --target matmul_bench >/dev/null
bin=$build/matmul_bench
core=${OPENBLAS_CORETYPE:-unset}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
set -- --reps "$reps"
[ -n "$only" ] && set -- "$@" --only "$only"
threads="2 threads, wall clock"
if [ "${MATMUL_CPU_TIME:-0}" = 1 ]; then
  set -- "$@" --cpu-time
  export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
  threads="1 thread each, GFLOP per CPU-second (MATMUL_CPU_TIME=1)"
fi
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
i=1
while [ "$i" -le "$runs" ]; do
  echo "matmul bench: run $i/$runs" >&2
  "$bin" --impl avx512 "$@" >"$tmp/ours.$i"
  "$bin" --impl openblas "$@" >"$tmp/blas_env.$i"
  OPENBLAS_CORETYPE=SkylakeX "$bin" --impl openblas "$@" >"$tmp/blas_skx.$i"
  "$bin" --impl bf16 "$@" >"$tmp/bf16.$i"
  i=$((i + 1))
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$root" diff --quiet HEAD 2>/dev/null || commit="$commit+uncommitted"
model=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
flags=$(grep -o -w 'avx512f\|avx512_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')
cmd="MATMUL_RUNS=$runs MATMUL_REPS=$reps${only:+ MATMUL_ONLY=$only}${MATMUL_CPU_TIME:+ MATMUL_CPU_TIME=$MATMUL_CPU_TIME} sh bench/run_matmul.sh"

table=$(awk -v core="$core" '
  function median(key, n,   i, j, t, v) {
    n = cnt[key]
    for (i = 1; i <= n; i++) v[i] = val[key, i]
    for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
    lo[key] = v[1]; hi[key] = v[n]
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
  }
  function cell(impl, k,   key) {
    key = impl SUBSEP k
    if (!(key in cnt)) return "-"
    med[key] = median(key)
    return sprintf("%.0f [%.0f-%.0f]", med[key], lo[key], hi[key])
  }
  function ratio(a, b, k) { return (a SUBSEP k in med) && (b SUBSEP k in med) && med[b, k] > 0 ? sprintf("%.2f", med[a, k] / med[b, k]) : "-" }
  /^#/ { next }
  {
    impl = FILENAME; sub(/.*\//, "", impl); sub(/\.[0-9]+$/, "", impl)
    k = $1 " " $2 " " $3 "x" $4 "x" $5
    if (!((impl, k) in cnt) && impl == "ours") order[++nk] = k
    n = ++cnt[impl, k]; val[impl, k, n] = $6
  }
  END {
    printf "| shape | layout MxNxK | ours fp32 | OpenBLAS %s | OpenBLAS SkylakeX | ours bf16 | ours/%s | ours/SkylakeX | bf16/ours |\n", core, core
    print "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    for (i = 1; i <= nk; i++) {
      k = order[i]; split(k, p, " ")
      a = cell("ours", k); b = cell("blas_env", k); c = cell("blas_skx", k); d = cell("bf16", k)
      printf "| %s | %s %s | %s | %s | %s | %s | %s | %s | %s |\n", p[1], p[2], p[3], a, b, c, d,
             ratio("ours", "blas_env", k), ratio("ours", "blas_skx", k), ratio("bf16", "ours", k)
    }
  }' "$tmp"/ours.* "$tmp"/blas_env.* "$tmp"/blas_skx.* "$tmp"/bf16.*)

[ -f "$results" ] || printf '# Benchmark results\n\nNewest last. See ../shared/docs/BENCHMARKS.md for the method.\n' >"$results"
{
  printf '\n## Matmul GFLOP/s, %s\n\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
  printf -- '- commit %s; %s, %s cores (%s); %s\n' "$commit" "$model" "$(getconf _NPROCESSORS_ONLN)" "$flags" "$threads"
  printf -- '- command: `%s` (from the repository root)\n' "$cmd"
  printf -- '- GFLOP/s = 2MNK/time; cell = median over %s alternating runs [min-max of the run medians], each run the median of %s timings\n' "$runs" "$reps"
  printf -- '- ours = ftc_matmul avx512 backend; bf16 = ftc_matmul_bf16 with both operands bf16 (AVX512-BF16); OpenBLAS %s = the environment'"'"'s OPENBLAS_CORETYPE; SkylakeX = OPENBLAS_CORETYPE=SkylakeX for that child process only\n' "$core"
  printf -- '- machine shared with other jobs: load average %s before, %s after; expect noise, trust ratios within a row\n\n' "$load_before" "$load_after"
  printf '%s\n' "$table"
} >>"$results"
printf '%s\n' "$table"
echo "matmul bench: appended to $results" >&2
