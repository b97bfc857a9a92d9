#!/bin/sh
# Issue 24: the VNNI tiles of generation's Q8_0 / Q4_0 / Q4_1 products (src/kernels/cpu/qmatmul_avx512.c) of this
# tree against a base revision, alternated round by round (base, new, base, new, ...; this VM swings too much back
# to back for anything else): per round and build
#   - qmatmul_bench --decode 8 and --decode 1 (SmolLM2-135M's 211 products of one decoding step, one thread, the
#     default kernels' lines: ms a step and CPU ms a step),
#   - decode_bench on SmolLM2 with a Q4_0 base (one sequence and a batch of 8, 2 threads: tokens/s and the batch's
#     ratio to one sequence).
# The base is exported with git archive and built once under $TMPDIR (kept for the next run). Prints the load.
#
#   sh bench/qtile_ab.sh [BASE_REV [BUILD_DIR]]      (BASE_REV main; ROUNDS=3; MODELS_DIR=/work/cache/decode)
# e.g. sh bench/qtile_ab.sh 918fe36 build: issue 24 q24tile against main before it
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
rev=${1:-main}
build=$(cd "${2:-$root/build}" && pwd)
dir=${MODELS_DIR:-/work/cache/decode}
[ -f "$dir/smol-F32.gguf" ] || { echo "no $dir/smol-F32.gguf: run bench/decode_vs_llamacpp.sh once" >&2; exit 1; }
sha=$(git -C "$root" rev-parse --short "$rev")
base=${TMPDIR:-/tmp}/ftc-qtile-ab-$sha
if [ ! -x "$base/build/decode_bench" ] || [ ! -x "$base/build/qmatmul_bench" ]; then
  mkdir -p "$base/src"
  git -C "$root" archive "$sha" | tar -x -C "$base/src"
  [ -e "$base/src/../shared" ] || [ ! -d "$root/../shared" ] || ln -s "$(cd "$root/../shared" && pwd)" "$base/shared"
  cmake -S "$base/src" -B "$base/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  nice cmake --build "$base/build" -j2 --target qmatmul_bench decode_bench >/dev/null
fi
nice cmake --build "$build" -j2 --target qmatmul_bench decode_bench >/dev/null
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -1); base $sha, new $(git -C "$root" rev-parse --short HEAD)"
for r in $(seq 1 "${ROUNDS:-3}"); do
  for b in base new; do
    if [ $b = base ]; then bd=$base/build; else bd=$build; fi
    echo "== round $r $b; load $(cut -d' ' -f1-3 /proc/loadavg)"
    for rows in 8 1; do
      # a base without the TYPES argument runs the AVX2 lines too: only the default kernels' lines are kept
      FTC_THREADS=1 "$bd/qmatmul_bench" --decode $rows 21 q8_0,q4_0,q4_1,auto | grep -E " auto " | sed "s/^/  rows $rows: /"
    done
    FTC_THREADS=2 "$bd/decode_bench" "$dir/smol-F32.gguf" --base q4_0 --pp 0 --prompt 256 --gen 64 --batch 8 --bw-mb 0 |
      grep -E "^decode|^batch" | sed "s/^/  q4_0 /"
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
