#!/bin/bash
# ftc data as a user runs it: Banking77 checks clean without flags; a broken chat file gives every error
# as file:line:column and exit 2; chat data needs a template the model names or --chat-template (exit 1);
# preview shows the trained tokens; split writes stratified files.
set -u
ftc=${FTC_BIN:-build/ftc}
src=${FTC_SOURCE_DIR:-.}
shared=${FTC_SHARED_DATA:-../shared/data}
dir=$(mktemp -d /tmp/ftc_cli_data_XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
fx="$src/tests/fixtures/data"

"$ftc" data --help | grep -q "Usage: ftc data check --model DIR --data FILE" || fail "--help"
"$ftc" data >/dev/null 2>&1; [ $? -eq 1 ] || fail "no subcommand should exit 1"
"$ftc" data check >/dev/null 2>&1; [ $? -eq 1 ] || fail "missing --data should exit 1"
"$ftc" data check --data x.jsonl --bogus 1 >/dev/null 2>&1; [ $? -eq 1 ] || fail "unknown flag should exit 1"
"$ftc" data check --data "$dir/none.jsonl" >/dev/null 2>&1; [ $? -eq 2 ] || fail "missing file should exit 2"

# Banking77 without flags: text,category is found, 77 labels, no errors
if [ -f "$shared/banking77/train.csv" ] && [ -d "$shared/tokenizers/bert-base-uncased" ]; then
  out=$("$ftc" data check --model "$shared/tokenizers/bert-base-uncased" --data "$shared/banking77/train.csv" \
        --val "$shared/banking77/test.csv") || fail "banking77 check exit $?"
  echo "$out" | grep -q "train.csv (csv, format label): 10003 records, 10003 examples, 0 bad" || fail "banking77 counts: $out"
  echo "$out" | grep -q "labels: 77" || fail "banking77 labels"
  echo "$out" | grep -q "validation examples also in training: 25" || fail "banking77 leakage"
  echo "$out" | grep -q "^0 errors$" || fail "banking77 errors"
  "$ftc" data check --model "$shared/tokenizers/bert-base-uncased" --data "$shared/banking77/train.csv" --json > "$dir/r.json" \
    || fail "--json exit"
  grep -q '"n_errors": 0' "$dir/r.json" || fail "--json n_errors"
  grep -q '"num_labels": 77' "$dir/r.json" || fail "--json num_labels"
fi

# the broken file: every bad line, exact positions, exit 2 (without --model: no tokenizer needed)
out=$("$ftc" data check --data "$fx/broken_chat.jsonl" 2>&1); rc=$?
[ $rc -eq 2 ] || fail "broken file exit $rc, want 2"
for want in \
  "broken_chat.jsonl:5:90: not valid JSON: ']' expected near end of file" \
  "broken_chat.jsonl:6:1: expected a JSON object, got a list" \
  "broken_chat.jsonl:7:14: no assistant message in \"messages\" (nothing to train on)" \
  "broken_chat.jsonl:8:24: messages\[0\] has unknown role \"human\" (allowed: system, user, assistant)" \
  "broken_chat.jsonl:9:40: messages\[0\] has unknown key \"text\" (allowed: role, content, name, weight)" \
  "broken_chat.jsonl:10:43: messages\[0\].content is empty" \
  "broken_chat.jsonl:11:83: messages\[1\].content must be a string, got an integer" \
  "broken_chat.jsonl:12:1: missing field \"messages\"" \
  "^8 errors$"; do
  echo "$out" | grep -q "$want" || fail "missing: $want in: $out"
done
out=$("$ftc" data check --data "$fx/broken_chat.jsonl" --max-errors 2 2>&1)
echo "$out" | grep -q "and 6 more errors" || fail "--max-errors cap: $out"

# chat data: stories260K names no template, so the flag is required (exit 1); with it, token statistics
m="$shared/models/stories260K-hf"
if [ -d "$m" ]; then
  err=$("$ftc" data check --model "$m" --data "$fx/val_chat.jsonl" 2>&1 >/dev/null); rc=$?
  [ $rc -eq 1 ] || fail "chat without template exit $rc, want 1"
  echo "$err" | grep -q "choose one with --chat-template" || fail "template message: $err"
  out=$("$ftc" data check --model "$m" --data "$fx/broken_chat.jsonl" --val "$fx/val_chat.jsonl" --chat-template zephyr \
        --max-len 32)
  [ $? -eq 2 ] || fail "broken with model exit"
  echo "$out" | grep -q "validation examples also in training: 1" || fail "leakage: $out"
  echo "$out" | grep -q "duplicates: 1 exact, 1 near" || fail "duplicates: $out"
  echo "$out" | grep -q "6 training examples have no trainable tokens" || fail "no trainable: $out"
  out=$("$ftc" data preview --model "$m" --data "$fx/val_chat.jsonl" --chat-template zephyr -n 1) || fail "preview exit"
  echo "$out" | grep -q "\[\[4</s>\]\]" || fail "preview does not mark the answer: $out"
fi

: > "$dir/empty.jsonl"
out=$("$ftc" data check --data "$dir/empty.jsonl"); [ $? -eq 2 ] || fail "empty file should exit 2"
echo "$out" | grep -q "empty.jsonl: no valid examples (0 records read)" || fail "empty file message: $out"

# split: stratified, files the user can read
printf 'text,label\n' > "$dir/d.csv"
for i in $(seq 1 30); do echo "text $i,$([ $((i % 3)) -eq 0 ] && echo rare || echo common)" >> "$dir/d.csv"; done
out=$("$ftc" data split --data "$dir/d.csv" --out "$dir/split" --val-split 0.2 --test-split 0.1 --seed 3) || fail "split exit"
[ "$(wc -l < "$dir/split/val.jsonl")" -eq 6 ] || fail "val size: $(cat "$dir/split/val.jsonl")"
[ "$(grep -c rare "$dir/split/val.jsonl")" -eq 2 ] || fail "val not stratified"
[ "$(wc -l < "$dir/split/test.jsonl")" -eq 3 ] || fail "test size"
[ "$(wc -l < "$dir/split/train.jsonl")" -eq 21 ] || fail "train size"
"$ftc" data check --data "$dir/split/train.jsonl" --val "$dir/split/val.jsonl" | grep -q "validation examples also in training: 0" \
  || fail "split files overlap"
echo "cli_data: ok"
