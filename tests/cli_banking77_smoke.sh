#!/usr/bin/env bash
# Banking77 smoke test: the whole stack (CSV reader, WordPiece tokenizer, MiniLM forward/backward,
# trainer, eval) on a stratified subset (about 15 training and 4 test texts per intent), two short epochs of
# head training. Chance is 1/77 = 0.013; a broken layer anywhere lands near it, a working stack far above.
set -u
fail() { echo "FAIL: $*"; exit 1; }
FTC=${FTC_BIN:?}
DATA=${FTC_SHARED_DATA:?}/banking77
if [ -z "${FTC_MINILM_DIR:-}" ]; then echo "skip: MiniLM not installed (scripts/install-deps.sh installs it)"; exit 0; fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# stratified subsets made by ftc itself: 12% of train (about 15 per intent), 10% of test (about 4 per intent)
"$FTC" data split --data "$DATA/train.csv" --out "$tmp/tr" --val-split 0.88 --seed 1 >/dev/null || fail "split train"
"$FTC" data split --data "$DATA/test.csv" --out "$tmp/te" --val-split 0.9 --seed 1 >/dev/null || fail "split test"
mv "$tmp/tr/train.jsonl" "$tmp/train.jsonl"; mv "$tmp/te/train.jsonl" "$tmp/test.jsonl"
n_labels=$(grep -o '"label": *"[^"]*"' "$tmp/train.jsonl" | sort -u | wc -l)
[ "$n_labels" -eq 77 ] || fail "the training subset has $n_labels intents, expected all 77"
"$FTC" train --model "$FTC_MINILM_DIR" --data "$tmp/train.jsonl" --out "$tmp/run" --task classify --method head \
  --lr 2e-2 --epochs 2 --batch 32 --max-len 32 --seed 1 --quiet || fail "train exited $?"
"$FTC" eval --model "$tmp/run" --data "$tmp/test.jsonl" --json >"$tmp/eval.json" || fail "eval exited $?"
acc=$(grep -o '"accuracy": *[0-9.eE+-]*' "$tmp/eval.json" | head -n 1 | sed 's/.*: *//')
echo "banking77 smoke: test accuracy $acc on $(wc -l <"$tmp/test.jsonl") texts (chance 0.013)"
awk -v a="$acc" 'BEGIN { exit !(a > 0.35) }' || fail "accuracy $acc is not far above chance"
