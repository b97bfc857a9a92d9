#!/usr/bin/env bash
# ftc eval on plain text with a causal LM: stories260K on a short story must give the loss transformers gives
# for the same text (tests/fixtures/models/stories260k_eval.json, from tools/gen_model_fixtures.py), in one
# window and in windows of 32 tokens; bad input gives the promised exit codes.
set -u
fail() { echo "FAIL: $*"; exit 1; }
FTC=${FTC_BIN:?}
SRC=${FTC_SOURCE_DIR:?}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
model="$FTC_SHARED_DATA/models/stories260K-hf"
story="$SRC/tests/fixtures/models/stories260k_story.txt"
ref="$SRC/tests/fixtures/models/stories260k_eval.json"
field() { sed -n "s/.*\"$1\": *\([-0-9.e+]*\).*/\1/p" "$2" | head -1; }
close() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-4 * (b < 0 ? -b : b)) }'; }

if [ -d "$model" ]; then
  "$FTC" eval --model "$model" --data "$story" --json > "$tmp/out.json" || fail "eval exited $?"
  printf '%s\n' "$(cat "$tmp/out.json")" | sed 's/, /,\n/g' > "$tmp/o.json"
  loss=$(field loss "$tmp/o.json"); n=$(field n_tokens "$tmp/o.json"); ppl=$(field perplexity "$tmp/o.json")
  want=$(field loss "$ref"); want_n=$(field n_tokens "$ref")
  [ "$n" = "$want_n" ] || fail "n_tokens $n, transformers $want_n: $(cat "$tmp/out.json")"
  close "$loss" "$want" || fail "loss $loss, transformers $want"
  awk -v l="$loss" -v p="$ppl" 'BEGIN { exit !(p > 0 && (p - exp(l)) ^ 2 < 1e-6 * p * p) }' || fail "perplexity $ppl != exp($loss)"
  awk -v l="$loss" 'BEGIN { exit !(l < 0.5 * log(512)) }' || fail "loss $loss not well below ln(512)"
  "$FTC" eval --model "$model" --data "$story" --context 32 --json > "$tmp/w.json" || fail "eval --context exited $?"
  sed 's/, /,\n/g' "$tmp/w.json" > "$tmp/w2.json"
  loss32=$(field loss "$tmp/w2.json"); want32=$(sed -n 's/.*"loss_context32": *\([-0-9.e+]*\).*/\1/p' "$ref")
  close "$loss32" "$want32" || fail "windowed loss $loss32, transformers $want32"
  grep -q '"n_tokens": 84' "$tmp/w.json" || fail "windowed n_tokens: $(cat "$tmp/w.json")"
  "$FTC" eval --model "$model" --data "$story" | grep -q "^perplexity" || fail "text output"
  # bad input: missing file (2), empty text (2), an encoder (2)
  "$FTC" eval --model "$model" --data "$tmp/nope.txt" 2>"$tmp/err"; [ $? -eq 2 ] || fail "missing data file should exit 2"
  grep -q "nope.txt" "$tmp/err" || fail "missing file error should name it: $(cat "$tmp/err")"
  : > "$tmp/empty.txt"
  "$FTC" eval --model "$model" --data "$tmp/empty.txt" 2>"$tmp/err"; [ $? -eq 2 ] || fail "empty text should exit 2"
  grep -q "empty.txt" "$tmp/err" || fail "empty text error should name the file: $(cat "$tmp/err")"
else
  echo "note: $model absent; skipping the stories260K part"
fi
if [ -n "${FTC_MINILM_DIR:-}" ]; then
  echo "hello" > "$tmp/t.txt"
  "$FTC" eval --model "$FTC_MINILM_DIR" --data "$tmp/t.txt" 2>"$tmp/err"; [ $? -eq 2 ] || fail "BERT text eval should exit 2"
  grep -q "causal LM" "$tmp/err" || fail "BERT error: $(cat "$tmp/err")"
  # a text classifier exported to a plain HF directory: same numbers as its run; integer labels are class indices;
  # MiniLM itself has no head, so classify data gets a clear error
  printf '{"text": "great movie", "label": "pos"}\n{"text": "awful film", "label": "neg"}\n{"text": "loved it", "label": "pos"}\n{"text": "hated it", "label": "neg"}\n' >"$tmp/cls.jsonl"
  "$FTC" train --model "$FTC_MINILM_DIR" --data "$tmp/cls.jsonl" --out "$tmp/run" --task classify --method head \
    --max-steps 2 --batch 4 --quiet >/dev/null || fail "train classify"
  "$FTC" export --model "$tmp/run" --format hf --out "$tmp/hf" 2>/dev/null || fail "export hf"
  "$FTC" eval --model "$tmp/run" --data "$tmp/cls.jsonl" --json >"$tmp/e_run" || fail "eval run"
  "$FTC" eval --model "$tmp/hf" --data "$tmp/cls.jsonl" --json >"$tmp/e_hf" || fail "eval hf dir"
  for k in accuracy loss n_examples; do
    a=$(field $k "$tmp/e_run"); b=$(field $k "$tmp/e_hf")
    awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && d <= 1e-6) }' || fail "$k: run $a, hf dir $b"
  done
  sed 's/"pos"/1/; s/"neg"/0/' "$tmp/cls.jsonl" >"$tmp/int.jsonl"
  "$FTC" eval --model "$tmp/hf" --data "$tmp/int.jsonl" --json >"$tmp/e_int" || fail "eval integer labels"
  [ "$(field loss "$tmp/e_int")" = "$(field loss "$tmp/e_hf")" ] || fail "integer labels: $(cat "$tmp/e_int")"
  "$FTC" eval --model "$FTC_MINILM_DIR" --data "$tmp/cls.jsonl" 2>"$tmp/err"; [ $? -eq 2 ] || fail "no head should exit 2"
  grep -q "without a classification head" "$tmp/err" || fail "no-head error: $(cat "$tmp/err")"
fi
"$FTC" eval --model "$tmp" 2>/dev/null; [ $? -eq 1 ] || fail "missing --data should be a usage error (1)"
"$FTC" eval --data x --bogus 2>/dev/null; [ $? -eq 1 ] || fail "unknown flag should be a usage error (1)"
"$FTC" eval --model "$tmp/none" --data "$story" 2>"$tmp/err"; [ $? -eq 2 ] || fail "missing model dir should exit 2"
"$FTC" eval --help | grep -q "Usage: ftc eval" || fail "--help"
echo "ok"
