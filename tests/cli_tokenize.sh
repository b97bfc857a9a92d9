#!/usr/bin/env bash
# ftc tokenize driven as a user would: ids, tokens, --no-special, --file, --decode, errors and exit codes.
# Expected ids are HF tokenizers' (see tests/fixtures/tok_*.jsonl for the full corpus comparison).
set -u
fail() { echo "FAIL: $*"; exit 1; }
FTC=${FTC_BIN:?}
D=${FTC_SHARED_DATA:?}/tokenizers
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

out=$("$FTC" tokenize --model "$D/gpt2" "Hello world") || fail "gpt2 exited $?"
[ "$out" = "15496 995" ] || fail "gpt2 ids: $out"
out=$("$FTC" tokenize --model "$D/gpt2" --tokens "Hello world") || fail "gpt2 tokens"
[ "$out" = "Hello Ġworld" ] || fail "gpt2 tokens: $out"
out=$("$FTC" tokenize --model "$D/bert-base-uncased" "Hello world" "Hi") || fail "bert exited $?"
[ "$out" = $'101 7592 2088 102\n101 7632 102' ] || fail "bert ids: $out"
out=$("$FTC" tokenize --model "$D/bert-base-uncased" --no-special "Hello world") || fail "bert --no-special"
[ "$out" = "7592 2088" ] || fail "bert --no-special: $out"
out=$("$FTC" tokenize --model "$D/llama2" "Hello world") || fail "llama2"
[ "$out" = "1 15043 3186" ] || fail "llama2 ids: $out"
out=$("$FTC" tokenize --model "$D/bert-base-uncased" --max-len 3 "Hello world again") || fail "max-len"
[ "$out" = "101 7592 102" ] || fail "max-len: $out"

# --file: one output line per input line
printf 'Hello world\nHi\n' > "$tmp/in.txt"
out=$("$FTC" tokenize --model "$D/bert-base-uncased" --file "$tmp/in.txt") || fail "--file"
[ "$out" = $'101 7592 2088 102\n101 7632 102' ] || fail "--file: $out"

# --decode from arguments and from standard input
out=$("$FTC" tokenize --model "$D/gpt2" --decode 15496 995) || fail "decode args"
[ "$out" = "Hello world" ] || fail "decode: $out"
out=$(echo "101 7592 2088 102" | "$FTC" tokenize --model "$D/bert-base-uncased" --decode) || fail "decode stdin"
[ "$out" = "hello world" ] || fail "decode stdin: $out"
out=$(echo "1 15043 3186" | "$FTC" tokenize --model "$D/llama2" --decode --keep-special) || fail "decode keep"
[ "$out" = "<s> Hello world" ] || fail "decode keep-special: $out"

# a directory holding only tokenizer files (the older file set)
mkdir "$tmp/tok" && cp "$D/gpt2/vocab.json" "$D/gpt2/merges.txt" "$tmp/tok/"
out=$("$FTC" tokenize --model "$tmp/tok" "Hello world") || fail "vocab.json+merges.txt"
[ "$out" = "15496 995" ] || fail "legacy gpt2: $out"

# errors
"$FTC" tokenize --help | grep -q "Usage: ftc tokenize" || fail "--help"
"$FTC" tokenize "x" >/dev/null 2>&1; [ $? -eq 1 ] || fail "missing --model should exit 1"
err=$("$FTC" tokenize --model "$tmp" "x" 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "no tokenizer.json" <<<"$err" || fail "empty dir: $rc $err"
printf '{"model":{"type":"Unigram","vocab":[]}}' > "$tmp/tokenizer.json"
err=$("$FTC" tokenize --model "$tmp" "x" 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "unsupported: model Unigram" <<<"$err" || fail "unigram: $rc $err"
err=$("$FTC" tokenize --model "$D/gpt2" --decode 12 abc 2>&1); rc=$?
[ $rc -eq 1 ] || fail "bad id should exit 1: $rc $err"
printf 'ok\n\xff\xfe bad\n' > "$tmp/bad.txt"
err=$("$FTC" tokenize --model "$D/gpt2" --file "$tmp/bad.txt" 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "line 2: invalid UTF-8 in the text at byte 0" <<<"$err" || fail "invalid utf-8: $rc $err"
echo "ok"
