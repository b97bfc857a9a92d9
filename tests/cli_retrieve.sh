#!/usr/bin/env bash
# ftc retrieve: the no-training baseline on the shipped FAQ with the real MiniLM encoder.
set -u
fail() { echo "FAIL: $*"; exit 1; }
FTC=${FTC_BIN:?}
FAQ=${FTC_SOURCE_DIR:?}/examples/faq
if [ -z "${FTC_MINILM_DIR:-}" ]; then echo "skip: MiniLM not installed (scripts/install-deps.sh installs it)"; exit 0; fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
awk 'NR % 4 == 1' "$FAQ/test.jsonl" >"$tmp/test.jsonl" # 63 held-out questions over all intents
"$FTC" retrieve --model "$FTC_MINILM_DIR" --index "$FAQ/train.jsonl" --data "$tmp/test.jsonl" --json >"$tmp/r.json" ||
  fail "retrieve exited $?"
acc=$(grep -o '"accuracy": *[0-9.eE+-]*' "$tmp/r.json" | head -n 1 | sed 's/.*: *//')
echo "retrieval accuracy $acc on $(wc -l <"$tmp/test.jsonl") questions (28 intents, chance 0.036)"
awk -v a="$acc" 'BEGIN { exit !(a > 0.7) }' || fail "retrieval accuracy $acc"
grep -q '"latency_ms"' "$tmp/r.json" || fail "no latency in $(cat "$tmp/r.json")"
"$FTC" retrieve --model "$FTC_MINILM_DIR" --index "$FAQ/train.jsonl" >/dev/null 2>&1; [ $? -eq 1 ] || fail "missing --data: exit 1"
"$FTC" retrieve --model "$FTC_MINILM_DIR" --index "$FAQ/train.jsonl" --data "$tmp/test.jsonl" --batch x >/dev/null 2>&1
[ $? -eq 1 ] || fail "bad --batch: exit 1"
echo '{"text": "where is my bike", "label": "no_such_intent"}' >"$tmp/bad.jsonl"
err=$("$FTC" retrieve --model "$FTC_MINILM_DIR" --index "$FAQ/train.jsonl" --data "$tmp/bad.jsonl" 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q 'label "no_such_intent"' <<<"$err" || fail "unseen label: rc $rc, $err"
echo "cli_retrieve: all checks passed"
