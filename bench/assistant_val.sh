#!/bin/sh
# One LoRA setting of the support assistant scored on the VALIDATION conversations
# (examples/assistant/val.jsonl: FAQ training-split questions that training does not use, one per intent, and
# out-of-scope questions of their own; never the held-out test.jsonl). The settings of examples/assistant/run.sh
# were chosen with it (the table in examples/assistant/README.md, "How the LoRA settings were chosen").
#
# Usage: sh bench/assistant_val.sh FTC NAME DATA [ftc train options...]
#   trains SmolLM2-135M-Instruct on DATA (a training file; examples/assistant/train.jsonl or a variant of it)
#   into runs/assistant-val/NAME/lora with the options given (after run.sh's common ones), answers val.jsonl
#   through examples/assistant/run.sh (FTC_ASSISTANT_REUSE=1, systems "lora") and prints one line:
#   NAME, train_s, val loss, F1, ROUGE-L, intent share, refusal share, FAQ questions answered with the refusal.
# Environment: FTC_ASSISTANT_MAX_TOKENS (default 80, as run.sh), FTC_VAL_RUNS (default runs/assistant-val).
set -eu
FTC=$1; NAME=$2; DATA=$3; shift 3
ROOT=$(cd "$(dirname "$0")/.." && pwd)
A=$ROOT/examples/assistant
RUNS=${FTC_VAL_RUNS:-$ROOT/runs/assistant-val}/$NAME
GGUF=$(sh "$ROOT/scripts/find-smollm2.sh")
mkdir -p "$RUNS"
if [ ! -s "$RUNS/lora.train_s" ]; then
  rm -rf "$RUNS/lora"
  t0=$(date +%s.%N)
  "$FTC" train --model "$GGUF" --data "$DATA" --out "$RUNS/lora" --task causal-lm --warmup 0.1 --max-len 512 \
    --samples 0 "$@" >"$RUNS/train.log" 2>&1 || { tail -n 20 "$RUNS/train.log"; exit 1; }
  echo "$t0 $(date +%s.%N)" | awk '{printf "%.0f\n", $2 - $1}' >"$RUNS/lora.train_s"
  echo 0 >"$RUNS/lora.train_rss"
fi
FTC_ASSISTANT_RUNS=$RUNS FTC_ASSISTANT_SYSTEMS=lora FTC_ASSISTANT_REUSE=1 FTC_ASSISTANT_TEST=$A/val.jsonl \
  sh "$A/run.sh" "$FTC" >"$RUNS/run.log" 2>&1 || { tail -n 20 "$RUNS/run.log"; exit 1; }
# FAQ questions answered nearest to the refusal (over-refusal)
refused=$(grep -o '"label": "[^"]*"' "$RUNS/lora.scored.jsonl" | sed 's/.*"\([^"]*\)"$/\1/' |
  paste -d ' ' - "$RUNS/lora.nearest.txt" | awk '$1 != "out_of_scope" && $2 == "out_of_scope" { n++ } END { print n + 0 }')
faq=$(grep -c '"kind": *"faq"' "$A/val.jsonl")
line=$(grep '^lora ' "$RUNS/table.txt")
echo "$NAME $*" | tr '\n' ' '
echo "$line" | awk -v r="$refused" -v f="$faq" -v t="$(cat "$RUNS/lora.train_s")" \
  '{printf "| train_s %s | loss %s | F1 %s | ROUGE-L %s | intent %s | refusal %s | FAQ refused %s/%s\n", t, $2, $4, $5, $6, $7, r, f}' |
  tee -a "${FTC_VAL_RUNS:-$ROOT/runs/assistant-val}/results.txt"
