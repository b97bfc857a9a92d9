#!/bin/sh
# Issue 24 on AMD Zen 4: one-sequence decode of SmolLM2 F32 / BF16 against llama.cpp, with the skinny kernels'
# old shape (FTC_SKINNY=tiles: 4-row tiles of W, L1 prefetch, main before this change) and this CPU's default
# (zen4 on AMD: one W row at a time for 1-2 rows of A, tiles with an L2 prefetch 32 KB ahead for more). Rounds
# alternate llama-bench (tg64 after 256 tokens), ftc tiles, ftc default, per type: this VM swings up to 25% back to
# back, so only alternated rounds give a ratio. 2 threads for both programs. Prints the raw lines with the load.
#
#   sh bench/decode_skinny_ab.sh [BUILD_DIR]       (ROUNDS=3, TYPES="F32 BF16", LLAMACPP=.../bin, MODELS_DIR)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
lcp=${LLAMACPP:-$(ls -d /work/cache/llama.cpp-*/bin 2>/dev/null | tail -1)}
dir=${MODELS_DIR:-/work/cache/decode}
[ -x "$lcp/llama-bench" ] || { echo "no llama-bench (set LLAMACPP)" >&2; exit 1; }
[ -f "$dir/smol-F32.gguf" ] || { echo "no $dir/smol-F32.gguf: run bench/decode_vs_llamacpp.sh once" >&2; exit 1; }
cmake --build "$build" --target decode_bench >/dev/null
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -1); ftc $(git -C "$root" rev-parse --short HEAD)"
"$build/decode_bench" "$dir/smol-F32.gguf" --pp 0 --gen 1 --batch 1 --prompt 1 | head -1
for r in $(seq 1 "${ROUNDS:-3}"); do
  for t in ${TYPES:-F32 BF16}; do
    echo "== round $r $t llama.cpp; load $(cut -d' ' -f1-3 /proc/loadavg)"
    "$lcp/llama-bench" -m "$dir/smol-$t.gguf" -t 2 -r 1 -p 0 -n 64 -d 256 2>/dev/null | grep -E "tg"
    x=; [ "$t" = BF16 ] && x=--bf16
    for s in tiles auto; do
      echo "== round $r $t ftc FTC_SKINNY=$s; load $(cut -d' ' -f1-3 /proc/loadavg)"
      if [ $s = auto ]; then unset FTC_SKINNY; else export FTC_SKINNY=$s; fi
      FTC_THREADS=2 "$build/decode_bench" "$dir/smol-F32.gguf" $x --pp 0 --prompt 256 --gen 64 --batch 8 --bw-mb 0 |
        grep -E "^model|^decode|^batch" | sed "s/^model: .*; skinny/  skinny/"
      unset FTC_SKINNY
    done
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
