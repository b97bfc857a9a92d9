#!/bin/bash
# ftc train --base-dtype auto on a GGUF (stories260K exported as Q8_0): the run records what auto became
# (config.resolved.json "base_dtype_resolved", the log's "base: auto -> ..."), its base|tuned comparison (end-of-run
# eval.json, ftc eval --compare) reads the base in the GGUF's types as training held it (a zero adapter: both
# columns agree), and --resume resolves auto again: not as a setting the user gave, refused when the base now
# resolves to other types.
set -u
FTC=${FTC_BIN:?FTC_BIN not set}
T=$(mktemp -d /tmp/ftc_cli_train_gguf_auto.XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/lib/expect.sh"
export FTC_CACHE_DIR=$T/cache
# f32 products for the packed base on every CPU (AMD with AVX512-BF16 otherwise takes bf16 ones, src/model/precision.c),
# so that its base column can equal the f32 base's to 1e-5 below
export FTC_BF16_DOT=fma

need_stories260k
story_texts 24 "$T/lm.jsonl"
expect_rc 0 "" "$FTC" export --model "$STORIES" --format gguf --type q8_0 --out "$T/s.gguf"
G=$T/s.gguf
ARGS=(--model "$G" --data "$T/lm.jsonl" --task causal-lm --method lora --lora-r 4 --batch 4 --seed 3)

# a zero adapter (--lr 0): base and tuned are the same model, so the columns agree only if the base is held as
# training held it; the base in the GGUF's Q8_0 blocks gives the f32 base's loss back (the blocks decode to the
# values the converted f32 model holds)
expect_rc 0 "base: auto -> q8_0 x " "$FTC" train "${ARGS[@]}" --lr 0 --max-steps 1 --val-split 0.25 --out "$T/zero"
logged=$(sed -n 's/^ftc train: base: auto -> \(.*\) (from the GGUF)$/\1/p' "$T/err")
python3 - "$T/zero" "$logged" <<'PY' || fail "config.resolved.json / eval.json of the auto run"
import json, sys
run, logged = sys.argv[1], sys.argv[2]
c = json.load(open(run + "/config.resolved.json"))
assert c["base_dtype"] == "auto", c["base_dtype"]
assert c.get("base_dtype_resolved") == logged and logged.startswith("q8_0 x "), (c.get("base_dtype_resolved"), logged)
d = json.load(open(run + "/eval.json"))
b, t = d["base"]["loss"], d["tuned"]["loss"]
assert abs(b - t) <= 1e-5 * abs(t), (b, t)
assert "in the GGUF's types as the run trained on them" in d["base_note"], d["base_note"]
PY
expect_rc 0 "" "$FTC" eval --model "$T/zero" --data "$T/lm.jsonl" --compare --json
python3 - "$T/out" <<'PY' || fail "eval --compare --json of the auto run"
import json, sys
d = json.load(open(sys.argv[1]))
b, t = d["base"]["loss"], d["tuned"]["loss"]
assert abs(b - t) <= 1e-5 * abs(t), (b, t)
assert "the GGUF's types" in d["base_note"], d["base_note"]
PY
auto_base=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["base"]["loss"])' "$T/out")
# the same run on the f32 base: its base column (f32) has the same loss
expect_rc 0 "" "$FTC" train "${ARGS[@]}" --lr 0 --max-steps 1 --val-split 0.25 --base-dtype fp32 --out "$T/f32"
grep -q '"base_dtype_resolved": "fp32 x ' "$T/f32/config.resolved.json" || fail "fp32 run: base_dtype_resolved"
expect_rc 0 "" "$FTC" eval --model "$T/f32" --data "$T/lm.jsonl" --compare --json
f32_base=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["base"]["loss"])' "$T/out")
awk -v a="$auto_base" -v b="$f32_base" 'BEGIN { d = (b - a) / a; exit !(d < 1e-5 && d > -1e-5) }' ||
  fail "base column: Q8_0 GGUF types $auto_base vs f32 $f32_base"
grep -q "frozen weights in" "$T/f32/eval.json" && fail "fp32 run: the note claims a packed base"

# --resume: auto is resolved again (not a setting the user gave: no contradiction, the same record); an explicit
# --base-dtype that differs still contradicts the saved run
expect_rc 0 "" "$FTC" train "${ARGS[@]}" --lr 0.01 --max-steps 2 --save-every 1 --out "$T/res"
saved=$(grep -o '"base_dtype_resolved": "[^"]*"' "$T/res/config.resolved.json")
[ -n "$saved" ] || fail "no base_dtype_resolved in the run"
expect_rc 1 "--base-dtype q4_0 contradicts the saved run's base-dtype auto" \
  "$FTC" train "${ARGS[@]}" --max-steps 3 --base-dtype q4_0 --out "$T/res" --resume
expect_rc 0 "" "$FTC" train "${ARGS[@]}" --max-steps 3 --out "$T/res" --resume
[ "$(grep -o '"base_dtype_resolved": "[^"]*"' "$T/res/config.resolved.json")" = "$saved" ] || fail "resume changed $saved"
grep -q '"base_dtype": "auto"' "$T/res/config.resolved.json" || fail "resumed run lost base_dtype auto"
# a base that now resolves to other types than the run trained on: refused, naming both
sed -i 's/"base_dtype_resolved": "[^"]*"/"base_dtype_resolved": "q4_0 x 15"/' "$T/res/config.resolved.json"
expect_rc 2 "but the run trained on it as q4_0 x 15" "$FTC" train "${ARGS[@]}" --max-steps 4 --out "$T/res" --resume
echo "ok: auto on a Q8_0 GGUF recorded ($saved), base column in the GGUF's types (= f32 base loss $f32_base), resume"
