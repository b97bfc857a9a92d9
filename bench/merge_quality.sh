#!/bin/sh
# Merging a LoRA adapter trained on a quantized base back into the weights (issue 18): held-out loss of
#   unmerged  the run's own end-of-run evaluation (the adapter beside the packed base, as it trained),
#   f32       `ftc export --format hf` (adapted weights = dequantized base + adapter, F32) evaluated,
#   requant   `ftc export --format gguf --type base` (the same sums re-quantized to the base's type) evaluated,
#   base      the quantized base without the adapter (the run's eval.json, --compare),
# on stories260K (Banking77 texts: 2000 to train, 500 held out, the quant_bench quality run) and SmolLM2-135M
# (examples/smollm2: 84 FAQ chats to train, 56 held out).
#
#   sh bench/merge_quality.sh [FTC_BIN]
# Environment: MQ_MODELS (default "stories260K smollm2"), MQ_BASES (default "q8_0 q4_0 q4_k"), MQ_SMOL_STEPS (20)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
ftc=${1:-$root/build/ftc}
shared=${FTC_SHARED_DATA:-$root/../shared/data}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 "$here/banking77_texts.py" "$shared/banking77" "$tmp"
loss() { "$ftc" eval "$@" 2>/dev/null | awk '$1 == "loss" { print $2; exit }'; }
echo "| model | base | base alone | unmerged | merged f32 | merged re-quantized | re-quantized vs f32 |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for model in ${MQ_MODELS:-stories260K smollm2}; do
  case $model in
    stories260K) m=$shared/models/stories260K-hf train=$tmp/train.jsonl val=$tmp/test.jsonl len=64
      args="--lora-r 8 --lr 3e-3 --batch 16 --max-steps 60 --eval-every 60" ;;
    *) m=$(sh "$root/scripts/find-smollm2.sh") train=$root/examples/smollm2/train.jsonl
      val=$root/examples/smollm2/val.jsonl len=160
      args="--lora-r 16 --lora-alpha 32 --lr 1e-3 --batch 4 --max-steps ${MQ_SMOL_STEPS:-20} --eval-every ${MQ_SMOL_STEPS:-20}" ;;
  esac
  for b in ${MQ_BASES:-q8_0 q4_0 q4_k}; do
    r=$tmp/$model-$b
    # shellcheck disable=SC2086
    "$ftc" train --model "$m" --data "$train" --val "$val" --task causal-lm --method lora --lora-targets all-linear \
      --max-len $len $args --seed 1 --base-dtype "$b" --quiet --out "$r" >/dev/null 2>&1 || { echo "run $model $b failed" >&2; continue; }
    unmerged=$(grep -o '"val_loss":[0-9.]*' "$r/metrics.jsonl" | tail -n 1 | cut -d: -f2)
    alone=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d.get("base", {}).get("loss", ""))' "$r/eval.json")
    "$ftc" export "$r" --format hf --out "$r.hf" >/dev/null 2>&1
    "$ftc" export "$r" --format gguf --type base --out "$r.gguf" >/dev/null 2>"$r.warn"
    f32=$(loss --model "$r.hf" --data "$val" --max-len $len)
    rq=$(loss --model "$r.gguf" --data "$val" --max-len $len)
    echo "| $model | $b | $alone | $unmerged | $f32 | $rq | $(python3 -c 'import sys; a,b=map(float,sys.argv[1:]); print(f"{100*(b-a)/a:+.2f}%")' "$f32" "$rq") |"
    rm -rf "$r.hf" "$r.gguf" "$r.Modelfile"
  done
done
