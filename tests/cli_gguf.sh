#!/usr/bin/env bash
# A .gguf path works wherever a model is taken: the tiny fixture models as GGUF (tools/gen_gguf_model_fixtures.py)
# give the same logits as their HF directories, inspect/generate/export read them, a converted copy is cached
# once, and bad GGUF files are refused by name.
set -u
FTC=${FTC_BIN:?}
SRC=${FTC_SOURCE_DIR:?}
FIX=$SRC/tests/fixtures
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$SRC/tests/lib/expect.sh"
BUILD_CACHE=${FTC_CACHE_DIR:-$T/build-cache} # the build's cache: SmolLM2 converted once for all tests
export FTC_CACHE_DIR=$T/cache

printf '{"input_ids": [1, 2, 3, 4]}\n{"input_ids": [5, 9, 17]}\n' >"$T/ids.jsonl"
for m in llama_gqa llama_tied qwen2 gpt2; do
  "$FTC" logits --model "$FIX/models/$m" --ids "$T/ids.jsonl" >"$T/hf.jsonl" || fail "$m: logits of the HF dir"
  "$FTC" logits --model "$FIX/gguf/$m.gguf" --ids "$T/ids.jsonl" >"$T/gguf.jsonl" || fail "$m: logits of the GGUF"
  cmp -s "$T/hf.jsonl" "$T/gguf.jsonl" || fail "$m: GGUF logits differ from the HF directory's"
  echo "$m: logits from the GGUF = logits from the HF directory (byte for byte)"
done
[ "$(ls "$T/cache/gguf" | wc -l)" = 4 ] || fail "one cache entry per GGUF expected: $(ls "$T/cache/gguf")"

# inspect, generate and export take it too; the second use reads the cache
"$FTC" inspect "$FIX/gguf/llama_gqa.gguf" >"$T/out" || fail "inspect"
"$FTC" logits --model="$FIX/gguf/llama_gqa.gguf" --ids "$T/ids.jsonl" >/dev/null || fail "--model=X.gguf"
grep -q "kv heads 2" "$T/out" || { cat "$T/out"; fail "inspect shows the GGUF's hyperparameters"; }
"$FTC" generate --model "$FIX/gguf/llama_gqa.gguf" --prompt "ab" --max-tokens 5 >"$T/g1" || fail "generate"
"$FTC" export --model "$FIX/gguf/llama_tied.gguf" --format hf --out "$T/hf" >/dev/null || fail "export --format hf"
for f in config.json model.safetensors tokenizer.json tokenizer_config.json; do
  [ -f "$T/hf/$f" ] || fail "export wrote no $f"
done
"$FTC" logits --model "$T/hf" --ids "$T/ids.jsonl" >"$T/exp.jsonl" || fail "logits of the export"
"$FTC" logits --model "$FIX/models/llama_tied" --ids "$T/ids.jsonl" | cmp -s - "$T/exp.jsonl" ||
  fail "the export's logits differ from the original model's"
echo "export --format hf from a GGUF: same logits as the original"

# train (LoRA, causal-lm) from a GGUF: the run records the converted directory and its model loads back
for i in 1 2 3 4 5 6 7 8; do echo '{"text": "abcdefghabcdefgh"}'; done >"$T/d.jsonl"
expect_rc 0 "" "$FTC" train --model "$FIX/gguf/llama_gqa.gguf" --data "$T/d.jsonl" --out "$T/run" --method lora \
  --task causal-lm --epochs 1 --quiet
grep -q "\"model\": \"$T/cache/gguf/llama_gqa-" "$T/run/config.resolved.json" || fail "run records the converted model"
"$FTC" logits --model "$T/run" --ids "$T/ids.jsonl" >/dev/null || fail "logits of the run"
expect_rc 0 "" "$FTC" eval --model "$T/run" --data "$T/d.jsonl" --compare "$FIX/gguf/llama_gqa.gguf"
grep -q "^loss" "$T/out" || { cat "$T/out"; fail "eval --compare X.gguf"; }
echo "train --method lora from a GGUF, eval --compare X.gguf: ok"

# errors name the file
printf 'GGML' >"$T/bad.gguf"
expect_rc 2 "bad magic" "$FTC" inspect "$T/bad.gguf"
expect_rc 2 "architecture 'test' is not supported" "$FTC" logits --model "$FIX/gguf/dequant.gguf" --ids "$T/ids.jsonl"
# the real model: SmolLM2-135M-Instruct Q4_1 answers in ftc chat (skipped when not installed, and for the ASan
# binary, where the 135M model is slow; tests/test_gguf_smollm2.c checks its logits and greedy ids)
if [ -n "${FTC_SMOLLM2_GGUF:-}" ] && [ -f "$FTC_SMOLLM2_GGUF" ] && ! ldd "$FTC" 2>/dev/null | grep -q asan; then
  echo "What is the capital of France?" | FTC_CACHE_DIR=$BUILD_CACHE "$FTC" chat --model "$FTC_SMOLLM2_GGUF" >"$T/chat" 2>"$T/err" ||
    { cat "$T/err"; fail "chat with SmolLM2"; }
  grep -q "The capital of France is Paris." "$T/chat" || { cat "$T/chat"; fail "SmolLM2's answer"; }
  echo "SmolLM2 GGUF chat: $(grep -o 'The capital of France is Paris.' "$T/chat")"
else
  echo "SmolLM2 chat skipped (FTC_SMOLLM2_GGUF absent or ASan binary)"
fi
echo "ok"
