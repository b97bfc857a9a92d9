#!/usr/bin/env bash
# Banking77 smoke test: the whole stack (CSV reader, WordPiece tokenizer, MiniLM forward/backward,
# trainer, eval) on a stratified subset: 12 training and 4 test texts per intent, one short epoch of
# head training. Chance is 1/77 = 0.013; a broken layer anywhere lands near it, a working stack far above.
set -u
fail() { echo "FAIL: $*"; exit 1; }
FTC=${FTC_BIN:?}
DATA=${FTC_SHARED_DATA:?}/banking77
if [ -z "${FTC_MINILM_DIR:-}" ]; then echo "skip: MiniLM not installed (scripts/install-deps.sh installs it)"; exit 0; fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# first N rows of each category, header kept (awk splits on the last comma: texts may hold commas)
subset() {
  awk -v n="$2" 'NR == 1 { print; next } { c = $0; sub(/.*,/, "", c); if (seen[c]++ < n) print }' "$1"
}
subset "$DATA/train.csv" 12 >"$tmp/train.csv"
subset "$DATA/test.csv" 4 >"$tmp/test.csv"
[ "$(wc -l <"$tmp/train.csv")" -eq 925 ] || fail "train subset has $(wc -l <"$tmp/train.csv") lines, expected 1 + 77*12"
"$FTC" train --model "$FTC_MINILM_DIR" --data "$tmp/train.csv" --out "$tmp/run" --task classify --method head \
  --lr 2e-2 --epochs 2 --batch 32 --max-len 32 --seed 1 --quiet || fail "train exited $?"
"$FTC" eval --model "$tmp/run" --data "$tmp/test.csv" --json >"$tmp/eval.json" || fail "eval exited $?"
acc=$(grep -o '"accuracy": *[0-9.eE+-]*' "$tmp/eval.json" | head -n 1 | sed 's/.*: *//')
echo "banking77 smoke: test accuracy $acc on $(($(wc -l <"$tmp/test.csv") - 1)) texts (chance 0.013)"
awk -v a="$acc" 'BEGIN { exit !(a > 0.35) }' || fail "accuracy $acc is not far above chance"
