#!/bin/bash
# ftc eval --compare BASE_DIR as a user runs it: a tiny stories260K LoRA run must beat its base model on its own
# training data (loss, in the table and in --json "base"/"tuned"); a MiniLM head-only classify run states that its
# base column uses the run's head, and since only the head trained both columns must then be equal (a base
# without the copied head would differ); a base of another architecture is refused (exit 2) naming both.
# Also RUNDIR/samples.jsonl of a causal-lm run: base and tuned answers equal ftc generate's, shown by ftc report.
set -u
FTC=${FTC_BIN:?FTC_BIN not set}
SRC=${FTC_SOURCE_DIR:-.}
T=$(mktemp -d /tmp/ftc_cli_eval_compare.XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/lib/expect.sh"
# sub-object "NAME": {...} of a one-line JSON without nested braces inside it, then a number field of it
sub() { grep -o "\"$1\": {[^{}]*}" "$2" | head -n 1; }
field() { sed -n "s/.*\"$1\": *\([-0-9.eE+]*\).*/\1/p" | head -n 1; }
row() { awk -v k="$1" '$1 == k' "$2"; } # a table row: name base tuned delta

expect_rc 0 "" "$FTC" eval --help
for w in "--compare BASE_DIR" "classify" "RUNDIR" "tuned run's head"; do
  grep -qF -- "$w" "$T/out" || fail "eval --help lacks '$w'"
done
expect_rc 1 "--compare needs BASE_DIR for a plain model directory" "$FTC" eval --model x --data y --compare

STORIES="${FTC_SHARED_DATA:-}/models/stories260K-hf"
MINILM=${FTC_MINILM_DIR:-}
if [ -f "$STORIES/model.safetensors" ]; then
  for i in 1 2 3 4 5 6 7 8; do
    printf '{"prompt": "Once upon a time, there was a little", "completion": " girl named Lily. She liked to play."}\n'
  done >"$T/lm.jsonl"
  expect_rc 0 "" "$FTC" train --model "$STORIES" --data "$T/lm.jsonl" --out "$T/lm" --task causal-lm --method lora \
    --lr 0.01 --max-steps 4 --batch 4 --quiet
  expect_rc 0 "" "$FTC" eval --model "$T/lm" --data "$T/lm.jsonl" --compare "$STORIES"
  cp "$T/out" "$T/table"
  head -n 1 "$T/table" | grep -qF "base = $STORIES (the pretrained model; for a LoRA run: without the adapters)" \
    || { cat "$T/table"; fail "causal-lm compare: first line should say what base is"; }
  grep -qE '^metric +base +tuned +delta$' "$T/table" || { cat "$T/table"; fail "no 'metric base tuned delta' header"; }
  for k in loss perplexity acc. tokens examples; do
    [ -n "$(row "$k" "$T/table")" ] || [ "$k" = "acc." ] || { cat "$T/table"; fail "table lacks row $k"; }
  done
  row loss "$T/table" | awk '{ exit !($3 < $2 && $4 < 0) }' || { cat "$T/table"; fail "tuned loss not below base"; }
  row examples "$T/table" | awk '{ exit !($2 == 8 && $3 == 8) }' || { cat "$T/table"; fail "examples row"; }

  expect_rc 0 "" "$FTC" eval --model "$T/lm" --data "$T/lm.jsonl" --compare "$STORIES" --json
  cp "$T/out" "$T/cmp.json"
  b=$(sub base "$T/out"); t=$(sub tuned "$T/out")
  [ -n "$b" ] && [ -n "$t" ] || { cat "$T/out"; fail "--json lacks base/tuned objects"; }
  for k in loss perplexity token_accuracy n_examples n_tokens; do
    [ -n "$(echo "$b" | field "$k")" ] && [ -n "$(echo "$t" | field "$k")" ] || fail "--json base/tuned lack $k: $b / $t"
  done
  bl=$(echo "$b" | field loss); tl=$(echo "$t" | field loss); top=$(sed 's/"tuned".*//' "$T/out" | field loss)
  awk -v b="$bl" -v t="$tl" 'BEGIN { exit !(t < b) }' || fail "--json: tuned loss $tl not below base $bl"
  [ "$top" = "$tl" ] || fail "--json top-level loss $top should be the tuned one ($tl)"
  # the table and the JSON agree, and the base is the untouched pretrained model: its loss as plain eval gives it
  row loss "$T/table" | awk -v b="$bl" '{ d = $2 - b; exit !(d * d < 1e-8) }' || fail "table base loss != json $bl"
  # the comparison is kept as RUNDIR/eval.json (what ftc report shows), with the data it was measured on
  python3 - "$T/lm/eval.json" "$T/cmp.json" "$T/lm.jsonl" <<'PY' || fail "RUNDIR/eval.json after --compare --json"
import json, sys
saved, printed = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert saved["data"] == sys.argv[3], saved.get("data")
for k in ("loss", "base", "tuned", "base_model"):
    assert saved[k] == printed[k], (k, saved[k], printed[k])
PY
  # a bare --compare: the base is the model the run was trained from (config.resolved.json)
  expect_rc 0 "" "$FTC" eval "$T/lm" --data "$T/lm.jsonl" --compare
  diff "$T/table" "$T/out" >/dev/null || { diff "$T/table" "$T/out"; fail "bare --compare differs from --compare BASE"; }
  # the plain base model on the same prompt/completion file scores the answer tokens as training would (not the
  # JSON text): its loss is the table's base column
  expect_rc 0 "" "$FTC" eval --model "$STORIES" --data "$T/lm.jsonl" --json
  pl=$(field loss <"$T/out")
  awk -v a="$pl" -v b="$bl" 'BEGIN { d = a - b; exit !(d * d < 1e-10) }' || fail "plain eval on jsonl: loss $pl, run's base column $bl"
  grep -q '"n_examples": 8' "$T/out" || { cat "$T/out"; fail "plain eval on jsonl: n_examples"; }

  # samples.jsonl: the one distinct training prompt (no validation), answered greedily by the base model and by
  # the tuned one exactly as ftc generate answers it (64 tokens at most)
  [ -s "$T/lm/samples.jsonl" ] || fail "causal-lm run lacks samples.jsonl"
  p="Once upon a time, there was a little"
  "$FTC" generate --model "$STORIES" --prompt "$p" --max-tokens 64 --temperature 0 >"$T/gen_base" || fail "generate base"
  "$FTC" generate --model "$T/lm" --prompt "$p" --max-tokens 64 --temperature 0 >"$T/gen_tuned" || fail "generate tuned"
  python3 - "$T/lm/samples.jsonl" "$p" "$T/gen_base" "$T/gen_tuned" <<'PY' || fail "samples.jsonl content"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
base, tuned = (open(f, encoding="utf-8").read() for f in sys.argv[3:5])
assert len(rows) == 1, f"{len(rows)} samples, want 1 (8 copies of one prompt)"
r = rows[0]
assert r["prompt"] == sys.argv[2], r["prompt"]
assert r["base"] == base, (r["base"], base)
assert r["tuned"] == tuned, (r["tuned"], tuned)
assert r["base"] != r["tuned"] and r["base"].strip(), "base and tuned answers should differ"
PY
  expect_rc 0 "" "$FTC" report --run "$T/lm" # no validation, no eval.json: the samples say it is causal-lm
  grep -q "task causal-lm" "$T/lm/report.html" && grep -q "<h2>Sample answers</h2>" "$T/lm/report.html" \
    || fail "report of a causal-lm run without validation: task or samples missing"
  # with validation data the prompts come from it
  printf '{"prompt": "One day, a big dog", "completion": " ran to the park."}\n' >"$T/lm_val.jsonl"
  expect_rc 0 "" "$FTC" train --model "$STORIES" --data "$T/lm.jsonl" --val "$T/lm_val.jsonl" --out "$T/lmv" \
    --task causal-lm --method full --lr 0.003 --max-steps 2 --batch 4 --quiet
  grep -q '^{"prompt":"One day, a big dog","base":"' "$T/lmv/samples.jsonl" || { cat "$T/lmv/samples.jsonl"; fail "val prompts"; }
  # a run with validation data ends with eval.json (its model and the base on the validation examples) and
  # report.html; eval.json's tuned side is what ftc eval measures on that file
  [ -s "$T/lmv/report.html" ] || fail "train with --val wrote no report.html"
  cp "$T/lmv/eval.json" "$T/lmv_train_eval.json"
  expect_rc 0 "" "$FTC" eval "$T/lmv" --data "$T/lm_val.jsonl" --compare --json
  python3 - "$T/lmv_train_eval.json" "$T/out" <<'PY' || fail "eval.json written by train"
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert a["data"].startswith("validation ("), a["data"]
for side in ("tuned", "base"):
    for k in ("loss", "n_tokens", "n_examples"):
        assert abs(a[side][k] - b[side][k]) <= 1e-6 * max(1, abs(b[side][k])), (side, k, a[side][k], b[side][k])
assert a["tuned"]["loss"] != a["base"]["loss"]
PY
  expect_rc 0 "" "$FTC" report --run "$T/lmv"
  grep -q "<h2>Sample answers</h2>" "$T/lmv/report.html" || fail "report lacks the Sample answers section"
  grep -qF "<td>One day, a big dog</td>" "$T/lmv/report.html" || fail "report lacks the sample prompt"

  # a saved comparison is what ftc report shows as base vs tuned
  cp "$T/cmp.json" "$T/lm/eval.json"
  expect_rc 0 "" "$FTC" report --run "$T/lm"
  grep -q "<th>base</th>" "$T/lm/report.html" || fail "report of a compared run lacks the base column"
  grep -q "the pretrained model; for a LoRA run" "$T/lm/report.html" || fail "report lacks the base_note"

  # plain directory on text: a model compared with itself gives the same numbers
  story="$SRC/tests/fixtures/models/stories260k_story.txt"
  expect_rc 0 "" "$FTC" eval --model "$STORIES" --data "$story" --compare "$STORIES"
  row loss "$T/out" | awk '{ exit !($2 == $3 && $4 + 0 == 0) }' || { cat "$T/out"; fail "self-compare differs"; }
  if [ -n "$MINILM" ] && [ -f "$MINILM/config.json" ]; then
    expect_rc 2 "differ in model type" "$FTC" eval --model "$STORIES" --data "$story" --compare "$MINILM"
    grep -qF "$MINILM" "$T/err" && grep -qF "$STORIES" "$T/err" || { cat "$T/err"; fail "mismatch must name both"; }
    expect_rc 2 "differ in model type" "$FTC" eval --model "$T/lm" --data "$T/lm.jsonl" --compare "$MINILM"
  fi
  expect_rc 2 "$T/nowhere" "$FTC" eval --model "$T/lm" --data "$T/lm.jsonl" --compare "$T/nowhere"
else
  echo "note: $STORIES absent; skipping the causal-lm part"
fi

FAQ="$SRC/examples/faq"
if [ -n "$MINILM" ] && [ -f "$MINILM/config.json" ] && [ -f "$FAQ/train.jsonl" ]; then
  head -n 120 "$FAQ/train.jsonl" >"$T/faq_train.jsonl"
  head -n 40 "$FAQ/test.jsonl" >"$T/faq_test.jsonl"
  expect_rc 0 "" "$FTC" train --model "$MINILM" --data "$T/faq_train.jsonl" --out "$T/faq" --method head \
    --lr 0.01 --max-steps 3 --batch 8 --max-len 32 --quiet
  expect_rc 0 "" "$FTC" eval --model "$T/faq" --data "$T/faq_test.jsonl" --compare "$MINILM"
  cp "$T/out" "$T/ctable"
  grep -qF "base = $MINILM backbone with the tuned run's classification head (the base model has no head of its own)" \
    "$T/ctable" || { cat "$T/ctable"; fail "classify compare lacks the head caveat"; }
  for k in loss accuracy macro-F1 examples; do [ -n "$(row "$k" "$T/ctable")" ] || fail "classify table lacks $k"; done
  # head-only run: the backbone is the base's, so base (+ the run's head) must equal the tuned model exactly
  for k in loss accuracy macro-F1; do
    row "$k" "$T/ctable" | awk '{ exit !($2 == $3) }' || { cat "$T/ctable"; fail "head run: base and tuned $k differ"; }
  done
  row accuracy "$T/ctable" | awk '{ exit !($3 > 0.2) }' || { cat "$T/ctable"; fail "head run accuracy near chance"; }
  expect_rc 0 "" "$FTC" eval --model "$T/faq" --data "$T/faq_test.jsonl" --compare "$MINILM" --json
  grep -q '"base": {"task": "classify"' "$T/out" && grep -q '"tuned": {"task": "classify"' "$T/out" \
    || fail "classify --json lacks base/tuned"
  grep -q '"base_note": "base = .*classification head' "$T/out" || fail "classify --json lacks the caveat"
  top=$(sed 's/"per_class".*//' "$T/out"); [ -n "$(echo "$top" | field macro_f1)" ] && [ -n "$(echo "$top" | field accuracy)" ] || fail "classify --json top-level keys"
  if [ -f "$STORIES/model.safetensors" ]; then
    expect_rc 2 "differ in model type" "$FTC" eval --model "$T/faq" --data "$T/faq_test.jsonl" --compare "$STORIES"
    grep -qF "$T/faq/model" "$T/err" && grep -qF "$STORIES" "$T/err" || { cat "$T/err"; fail "mismatch must name both"; }
  fi
else
  echo "note: MiniLM or examples/faq absent; skipping the classify part"
fi
echo "PASS"
