#!/bin/bash
# ftc train --precision / --base-dtype from the command line: usage errors (exit 1), a bf16 LoRA run on
# stories260K whose run directory records the precision and whose model keeps the frozen base as BF16 tensors,
# a bf16 run killed with SIGKILL and resumed that ends byte-identical to an uninterrupted one, and the warning
# when bf16 would run in the slow portable matmul.
set -u
FTC=${FTC_BIN:?FTC_BIN not set}
T=$(mktemp -d /tmp/ftc_cli_train_bf16.XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/lib/expect.sh"

expect_rc 0 "" "$FTC" train --help
grep -q -- "--precision fp32|bf16" "$T/out" || fail "help lacks --precision"
expect_rc 1 "precision: 'fp16' is not one of fp32, bf16" "$FTC" train --precision fp16
expect_rc 1 "base-dtype: 'int4' is not one of auto, fp32, bf16" "$FTC" train --base-dtype int4
expect_rc 1 "--base-dtype bf16 stores the frozen base weights: it needs --method lora or head" \
  "$FTC" train --model m --data d --out o --method full --base-dtype bf16

need_stories260k   # (the usage checks above ran either way)
MODEL=$STORIES
story_texts 24 "$T/lm.jsonl"

ARGS=(--model "$MODEL" --data "$T/lm.jsonl" --task causal-lm --method lora --lora-targets all-linear --lora-r 4
      --lr 0.01 --batch 4 --max-steps 6 --save-every 1 --log-every 1 --seed 3 --precision bf16 --save-merged --quiet)
expect_rc 0 "" "$FTC" train "${ARGS[@]}" --out "$T/ref"
grep -q '"precision": "bf16"' "$T/ref/config.resolved.json" || fail "config.resolved.json lacks the precision"
# the portable bf16 matmul is slow: a bf16 run on it says so (FTC_MATMUL=generic forces it on any CPU)
FTC_MATMUL=generic expect_rc 0 "without AVX512-BF16" "$FTC" train "${ARGS[@]}" --max-steps 1 --out "$T/generic"
if grep -qw -e avx512bf16 -e avx2 /proc/cpuinfo 2>/dev/null; then # AVX2 CPUs: bf16 as an f32 GEMM, no warning
  expect_rc 0 "" "$FTC" train "${ARGS[@]}" --max-steps 1 --out "$T/native"
  ! grep -q "without AVX512-BF16" "$T/err" || fail "warned about the bf16 matmul on a CPU with AVX512-BF16 or AVX2"
  FTC_MATMUL=avx2 expect_rc 0 "" "$FTC" train "${ARGS[@]}" --max-steps 1 --out "$T/avx2"
  ! grep -q "without AVX512-BF16" "$T/err" || fail "warned about the bf16 matmul with FTC_MATMUL=avx2"
fi
grep -q '"base_dtype": "auto"' "$T/ref/config.resolved.json" || fail "config.resolved.json lacks base_dtype"
grep -q '"precision"' "$T/ref/checkpoint.ftc" || fail "checkpoint state lacks the precision"
# the merged model: block linears BF16 (frozen base, adapters merged and rounded), embeddings and norms F32
python3 - "$T/ref/model/model.safetensors" <<'PY' || fail "model.safetensors dtypes"
import json, struct, sys
f = open(sys.argv[1], "rb"); n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n))
dt = {k: v["dtype"] for k, v in h.items() if k != "__metadata__"}
assert dt["model.layers.0.self_attn.q_proj.weight"] == "BF16", dt
assert dt["model.layers.4.mlp.down_proj.weight"] == "BF16", dt
assert dt["model.embed_tokens.weight"] == "F32" and dt["model.norm.weight"] == "F32", dt
PY
first=$(grep -o '"loss":[0-9.]*' "$T/ref/metrics.jsonl" | head -n 1 | cut -d: -f2)
last=$(grep -o '"loss":[0-9.]*' "$T/ref/metrics.jsonl" | tail -n 1 | cut -d: -f2)
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }' || fail "bf16 LoRA loss did not fall ($first -> $last)"
expect_rc 0 "" "$FTC" eval --model "$T/ref" --data "$T/lm.jsonl"
merged=$(grep -o 'loss *[0-9.]*' "$T/out" | head -n 1)
# without model/, RUNDIR is the bf16 base + adapter/ merged as the run merged it: the same weights. The loss may
# differ in the 4th digit: that model keeps its weights in bf16 and evaluates with the bf16 matmul, which on
# AVX-512 BF16 and AVX2 CPUs also rounds the activations to bf16, while model/ is read back as f32.
mkdir "$T/adapter_only" && cp -r "$T/ref/adapter" "$T/ref/config.resolved.json" "$T/adapter_only/"
expect_rc 0 "" "$FTC" eval --model "$T/adapter_only" --data "$T/lm.jsonl"
awk -v a="$(grep -o 'loss *[0-9.]*' "$T/out" | head -n 1 | awk '{print $2}')" -v b="$(echo "$merged" | awk '{print $2}')" \
  'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a > 0 && d <= 2e-3 * b) }' || fail "base + adapter: $(cat "$T/out") vs merged $merged"

# Kill at a random point, resume (the precision comes back from config.resolved.json), compare byte for byte.
t0=$(date +%s%N)
"$FTC" train "${ARGS[@]}" --out "$T/ref2" >/dev/null || fail "second reference run failed"
cmp "$T/ref/model/model.safetensors" "$T/ref2/model/model.safetensors" || fail "bf16 runs are not deterministic"
dur_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
"$FTC" train "${ARGS[@]}" --out "$T/killed" >/dev/null 2>&1 &
pid=$!
sleep "$(awk -v d="$dur_ms" -v s="$RANDOM" 'BEGIN { srand(s); printf "%.3f", d * (0.2 + 0.6 * rand()) / 1000 }')"
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
# resume without repeating --precision: the run directory's settings carry it
if [ -f "$T/killed/checkpoint.ftc" ]; then
  args=()
  skip=0
  for a in "${ARGS[@]}"; do
    [ "$skip" = 1 ] && { skip=0; continue; }
    [ "$a" = --precision ] && { skip=1; continue; }
    args+=("$a")
  done
  "$FTC" train "${args[@]}" --out "$T/killed" --resume >/dev/null || fail "resumed run failed"
else
  "$FTC" train "${ARGS[@]}" --out "$T/killed" >/dev/null || fail "rerun failed"
fi
cmp "$T/ref/model/model.safetensors" "$T/killed/model/model.safetensors" || fail "resumed bf16 model differs"
cmp "$T/ref/checkpoint.ftc" "$T/killed/checkpoint.ftc" || fail "resumed bf16 checkpoint differs"
echo "ok: bf16 usage errors, run directory, BF16 base in model/, kill + resume byte-identical"
