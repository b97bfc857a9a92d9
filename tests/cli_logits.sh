#!/usr/bin/env bash
# ftc logits: transformers' logits (tests/fixtures/export, from the model fixtures' reference outputs) line by
# line for a causal LM and a BERT classifier, and the named errors for bad ids.
set -u
fail() { echo "FAIL: $*"; exit 1; }
FTC=${FTC_BIN:?}
SRC=${FTC_SOURCE_DIR:?}
FIX=$SRC/tests/fixtures
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# max |a - b| over two files of JSON number lists (nested lists flattened), line by line
. "$(dirname "$0")/lib/maxdiff.sh"

for case in "gpt2 causal-lm" "bert_cls classify"; do
  set -- $case
  "$FTC" logits --model "$FIX/models/$1" --ids "$FIX/export/$1_ids.jsonl" >"$tmp/$1.jsonl" 2>"$tmp/err" ||
    { cat "$tmp/err"; fail "logits $1 exited $?"; }
  [ "$(wc -l <"$tmp/$1.jsonl")" = "$(wc -l <"$FIX/export/$1_ids.jsonl")" ] || fail "$1: one output line per input"
  d=$(maxdiff "$tmp/$1.jsonl" "$FIX/export/$1_logits.jsonl")
  awk -v d="$d" 'BEGIN { exit !(d + 0 == d && d < 1e-5) }' || fail "$1: max |diff| vs transformers $d"
  echo "$1: max |diff| vs transformers $d"
  # --task given explicitly reads the same
  "$FTC" logits --model "$FIX/models/$1" --task "$2" --ids "$FIX/export/$1_ids.jsonl" | cmp -s - "$tmp/$1.jsonl" ||
    fail "$1: --task $2 changed the output"
done

expect() { # expect RC MESSAGE args...
  local rc=$1 msg=$2; shift 2
  "$FTC" logits "$@" >/dev/null 2>"$tmp/err"; local got=$?
  [ "$got" = "$rc" ] || { cat "$tmp/err"; fail "logits $* exited $got, want $rc"; }
  grep -qF -- "$msg" "$tmp/err" || { cat "$tmp/err"; fail "logits $*: stderr lacks '$msg'"; }
}
printf '{"input_ids": [1, 2]}\n{"input_ids": [1, 99]}\n' >"$tmp/oov.jsonl"
expect 2 "oov.jsonl: line 2: input_ids[1] is not an id in [0, 67)" --model "$FIX/models/gpt2" --ids "$tmp/oov.jsonl"
printf '{"input_ids": []}\n' >"$tmp/empty.jsonl"
expect 2 "empty.jsonl: line 1: \"input_ids\" must be a non-empty list" --model "$FIX/models/gpt2" --ids "$tmp/empty.jsonl"
expect 1 "missing --ids" --model "$FIX/models/gpt2"
expect 1 "unknown task 'lm'" --model "$FIX/models/gpt2" --task lm --ids "$tmp/oov.jsonl"
expect 2 "no adapter_config.json" --model "$FIX/models/gpt2" --adapter "$FIX/models/llama_gqa" --ids "$tmp/oov.jsonl"
echo "ok"
