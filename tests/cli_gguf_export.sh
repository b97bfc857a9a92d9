#!/usr/bin/env bash
# ftc export --format gguf: the tiny fixture models (llama GQA, llama tied, qwen2, gpt2; GGUFs written as llama.cpp's
# converter does, tools/gen_gguf_model_fixtures.py) exported back to GGUF give byte-identical logits and the same
# tensors; every --type loads back; a LoRA run exports merged; the Modelfile follows the chat template; errors.
# (docs/gguf.md; the SmolLM2 comparison with llama.cpp itself is `make check-llamacpp`, not CI.)
set -u
FTC=${FTC_BIN:?}
SRC=${FTC_SOURCE_DIR:?}
FIX=$SRC/tests/fixtures
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$SRC/tests/lib/expect.sh"
export FTC_CACHE_DIR=$T/cache

printf '{"input_ids": [1, 2, 3, 4]}\n{"input_ids": [5, 9, 17]}\n' >"$T/ids.jsonl"
for m in llama_gqa llama_tied qwen2 gpt2; do
  expect_rc 0 "" "$FTC" export --model "$FIX/gguf/$m.gguf" --format gguf --out "$T/$m.gguf"
  grep -q "wrote $T/$m.gguf (GGUF)" "$T/out" || fail "$m: export message"
  "$FTC" logits --model "$FIX/models/$m" --ids "$T/ids.jsonl" >"$T/hf.jsonl" || fail "$m: logits of the HF dir"
  "$FTC" logits --model "$T/$m.gguf" --ids "$T/ids.jsonl" >"$T/gguf.jsonl" || fail "$m: logits of the export"
  cmp -s "$T/hf.jsonl" "$T/gguf.jsonl" || fail "$m: the exported GGUF's logits differ from the original's"
  # the export of the export is the same file but for general.name (same bytes after the name's string)
  "$FTC" export --model "$T/$m.gguf" --format gguf --out "$T/again/$m.gguf" >/dev/null 2>&1 || fail "$m: re-export"
  [ "$(stat -c %s "$T/$m.gguf")" = "$(stat -c %s "$T/again/$m.gguf")" ] || fail "$m: re-export differs in size"
  cmp -s "$T/$m.gguf" "$T/again/$m.gguf" || fail "$m: re-export of the export differs"
  echo "$m: GGUF -> ftc -> GGUF: logits byte-identical, re-export byte-identical"
done

# every --type loads back; quantized types are close to f32 (tests/test_gguf_export.c checks their bytes)
for ty in f16 bf16 q8_0 q4_0 q4_k; do
  expect_rc 0 "" "$FTC" export --model "$FIX/gguf/llama_gqa.gguf" --format gguf --type $ty --out "$T/t_$ty.gguf"
  "$FTC" logits --model "$T/t_$ty.gguf" --ids "$T/ids.jsonl" >"$T/l_$ty" || fail "logits of --type $ty"
  [ -s "$T/l_$ty" ] || fail "no logits for --type $ty"
done
[ "$(stat -c %s "$T/t_q4_0.gguf")" -lt "$(stat -c %s "$T/t_q8_0.gguf")" ] || fail "q4_0 not smaller than q8_0"
[ "$(stat -c %s "$T/t_q8_0.gguf")" -lt "$(stat -c %s "$T/t_f16.gguf")" ] || fail "q8_0 not smaller than f16"
echo "types f16 bf16 q8_0 q4_0 q4_k: exported and loaded back"

# a LoRA run exports merged: the same logits as its merged HF export
for i in 1 2 3 4 5 6 7 8; do echo '{"text": "abcdefghabcdefgh"}'; done >"$T/d.jsonl"
expect_rc 0 "" "$FTC" train --model "$FIX/gguf/llama_gqa.gguf" --data "$T/d.jsonl" --out "$T/run" --method lora \
  --task causal-lm --epochs 1 --quiet
expect_rc 0 "" "$FTC" export --model "$T/run" --format gguf --out "$T/run.gguf"
expect_rc 0 "" "$FTC" export --model "$T/run" --format hf --out "$T/run-hf"
"$FTC" logits --model "$T/run-hf" --ids "$T/ids.jsonl" >"$T/a" && "$FTC" logits --model "$T/run.gguf" --ids "$T/ids.jsonl" >"$T/b" ||
  fail "logits of the run's exports"
cmp -s "$T/a" "$T/b" || fail "the run's GGUF gives other logits than its merged HF export"
cmp -s "$T/a" "$T/hf.jsonl" && fail "the LoRA run's logits equal the base's: nothing was merged"
echo "LoRA run -> GGUF: merged, logits = its HF export's"
# --base-dtype auto (the default) keeps a Q8_0 GGUF's weights in Q8_0 (their bytes: tests/test_gguf_base_auto.c);
# ffn_down (F16 there: 48 inputs) and an F32 GGUF's weights stay f32; the run's adapter reloads on that base
expect_rc 0 "base: auto -> q8_0 x 14, fp32 x 2 (from the GGUF)" "$FTC" train --model "$T/t_q8_0.gguf" \
  --data "$T/d.jsonl" --out "$T/run_q8" --method lora --task causal-lm --max-steps 2
expect_rc 0 "" "$FTC" logits --model "$T/run_q8" --ids "$T/ids.jsonl"
expect_rc 0 "base: auto -> fp32 x 16 (from the GGUF)" "$FTC" train --model "$FIX/gguf/llama_gqa.gguf" \
  --data "$T/d.jsonl" --out "$T/run_f32" --method lora --task causal-lm --max-steps 2
echo "--base-dtype auto: a Q8_0 GGUF's weights kept in Q8_0, an F32 GGUF's in f32"
# the adapter alone for llama.cpp --lora (tensors and keys equal to convert_lora_to_gguf.py's: docs/gguf.md)
expect_rc 0 "" "$FTC" export --model "$T/run" --format gguf-lora --out "$T/lora.gguf"
[ "$(head -c 4 "$T/lora.gguf")" = GGUF ] || fail "gguf-lora: not a GGUF"
for k in general.type adapter adapter.type adapter.lora.alpha blk.1.attn_q.weight.lora_a blk.0.attn_v.weight.lora_b; do
  grep -qaF "$k" "$T/lora.gguf" || fail "gguf-lora lacks $k"
done
expect_rc 1 "not a run directory" "$FTC" export --model "$FIX/gguf/llama_gqa.gguf" --format gguf-lora --out "$T/x.gguf"
echo "LoRA run -> gguf-lora: adapter GGUF written"

# Modelfile: a ChatML template gives Ollama's ChatML TEMPLATE, the default system prompt and the end-of-turn stop
"$FTC" export --model "$FIX/gguf/llama_gqa.gguf" --format hf --out "$T/chat" >/dev/null || fail "hf export"
cat >"$T/chat/tokenizer_config.json" <<'JSON'
{"bos_token": "a", "eos_token": "b", "chat_template": "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are terse.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"}
JSON
expect_rc 0 "" "$FTC" export --model "$T/chat" --format gguf --out "$T/chat.gguf"
grep -q '^FROM ./chat.gguf$' "$T/chat.Modelfile" || { cat "$T/chat.Modelfile"; fail "Modelfile FROM"; }
grep -q '^TEMPLATE """{{- if .System }}<|im_start|>system$' "$T/chat.Modelfile" || fail "Modelfile TEMPLATE"
grep -q '^SYSTEM """You are terse."""$' "$T/chat.Modelfile" || fail "Modelfile SYSTEM"
grep -q '^PARAMETER stop "<|im_end|>"$' "$T/chat.Modelfile" || fail "Modelfile stop at the end of turn"
grep -q '^PARAMETER stop "b"$' "$T/chat.Modelfile" || fail "Modelfile stop at EOS"
echo "Modelfile: ChatML TEMPLATE, SYSTEM, stops"

# errors
expect_rc 1 "exists: choose another --out" "$FTC" export --model "$FIX/gguf/llama_gqa.gguf" --format gguf --out "$T/llama_gqa.gguf"
expect_rc 1 "unknown --type 'q3'" "$FTC" export --model "$FIX/gguf/llama_gqa.gguf" --format gguf --type q3 --out "$T/x.gguf"
expect_rc 1 "--type is for --format gguf" "$FTC" export --model "$FIX/gguf/llama_gqa.gguf" --format hf --type q8_0 --out "$T/x"
expect_rc 1 "causal language models" "$FTC" export --model "$FIX/models/llama_cls" --format gguf --out "$T/x.gguf"
rm -f "$T/chat/tokenizer.json"
expect_rc 2 "has no tokenizer.json" "$FTC" export --model "$T/chat" --format gguf --out "$T/x.gguf"
[ ! -e "$T/x.gguf" ] || fail "a failed export left $T/x.gguf"
ls "$T" | grep -q 'hf.tmp' && fail "a failed export left its temporary directory"
echo "ok"
