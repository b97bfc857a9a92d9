#!/usr/bin/env bash
# A run's model/ is exactly what transformers loads, with the same outputs, and exactly what
# `ftc export --format hf` writes (one code path). For each case of tests/fixtures/run_model/cases.tsv (tiny fixture
# models: a mean-pooled BERT classifier trained full, a CLS BERT head, a Llama classifier by LoRA with --save-merged,
# a GPT-2 LM trained full) the same `ftc train` as tools/gen_run_model_fixtures.py ran, then:
#   - model/config.json declares the class transformers computed the fixture's logits with (a mean-pooled head,
#     which BertForSequenceClassification would not apply, as the bare BertModel + "ftc_classifier_head");
#   - `ftc logits` of RUNDIR/model and of RUNDIR equal transformers' logits of the fixture (max |diff| 1e-4:
#     training on another CPU rounds differently);
#   - RUNDIR/model is byte for byte `ftc export RUNDIR --format hf`.
# The fixtures come from transformers itself (tools/gen_run_model_fixtures.py); this test needs no Python.
set -u
FTC=${FTC_BIN:?FTC_BIN not set}
SRC=${FTC_SOURCE_DIR:?}
FIX=$SRC/tests/fixtures
T=$(mktemp -d /tmp/ftc_cli_run_model.XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/lib/expect.sh"

. "$(dirname "$0")/lib/maxdiff.sh"

n=0
while IFS=$'\t' read -r name base args; do
  C=$FIX/run_model/$name
  R=$T/$name
  # shellcheck disable=SC2086
  expect_rc 0 "" "$FTC" train --model "$FIX/models/$base" --data "$C/train.jsonl" --out "$R" --quiet $args
  want=$(grep -o '"architectures": "[^"]*"' "$C/expected.json" | cut -d'"' -f4)
  got=$(tr -d ' \n' <"$R/model/config.json" | grep -o '"architectures":\["[^"]*"' | cut -d'"' -f4)
  [ -n "$want" ] && [ "$got" = "$want" ] || fail "$name: model/config.json declares $got, transformers' fixture used $want"
  if grep -q '"pooling"' "$C/expected.json"; then
    pool=$(grep -o '"pooling": "[^"]*"' "$C/expected.json" | cut -d'"' -f4)
    tr -d ' \n' <"$R/model/config.json" | grep -q "\"ftc_classifier_head\":{[^}]*\"pooling\":\"$pool\"" ||
      fail "$name: model/config.json lacks ftc_classifier_head pooling $pool"
  fi
  for m in "$R/model" "$R"; do
    "$FTC" logits --model "$m" --ids "$C/probe.jsonl" >"$T/got" || fail "$name: ftc logits --model $m"
    d=$(maxdiff "$T/got" "$C/logits.jsonl")
    awk -v d="$d" 'BEGIN { exit !(d + 0 == d && d <= 1e-4) }' || fail "$name: $m vs transformers: max |diff| $d"
  done
  expect_rc 0 "" "$FTC" export "$R" --format hf --out "$R.hf"
  for f in "$R"/model/* "$R.hf"/*; do
    b=$(basename "$f")
    cmp -s "$R/model/$b" "$R.hf/$b" || fail "$name: model/$b differs from ftc export --format hf's"
  done
  echo "$name: model/ is $got; logits vs transformers max |diff| $d; identical to export --format hf"
  n=$((n + 1))
done <"$FIX/run_model/cases.tsv"
[ "$n" -ge 4 ] || fail "only $n cases in cases.tsv"
echo "PASS"
