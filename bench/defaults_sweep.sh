#!/bin/bash
# The sweep the method defaults (src/train/runconfig.c, docs/train.md "Defaults") were chosen from: a few
# learning rates per method around the default, on VALIDATION splits only (a seeded share of each training
# set; no test set is read), everything else at its default (epochs from the data's size, batch, warmup).
# Prints one TSV row per run: task, data, method, lr, epochs, best validation figure (accuracy for classify,
# val_loss for causal-lm), wall seconds.
#   bash bench/defaults_sweep.sh [FTC_BIN] [OUTDIR]        (SWEEP_ONLY="classify" or "causal-lm" to run one half)
# Data: Banking77 and stories260K from ../shared/data; examples/faq; the VADER sentiment lexicon (PyPI
# vaderSentiment 3.3.2: words with a human-rated polarity; label = sign of the mean rating, |mean| >= 0.5).
set -u
FTC=${1:-build/ftc}
OUT=${2:-/tmp/ftc_sweep}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${FTC_SHARED_DATA:-$ROOT/../shared/data}
MINILM=$(sh "$ROOT/scripts/find-minilm.sh")
STORIES=$SHARED/models/stories260K-hf
mkdir -p "$OUT/data"
D=$OUT/data
N=${SWEEP_N:-1200}   # examples kept per classification set (subsampled, seeded)

# ---- data (seeded subsamples; validation = --val-split 0.2 of these) ----
awk -v n="$N" 'NR > 1 { print }' "$SHARED/banking77/train.csv" | shuf -n "$N" --random-source=<(yes 42) |
  awk -F, 'BEGIN { print "text,category" } { print }' >"$D/banking77.csv"
shuf -n "$N" --random-source=<(yes 42) "$ROOT/examples/faq/train.jsonl" >"$D/faq.jsonl"
VADER=${VADER_LEXICON:-}
if [ -z "$VADER" ]; then
  pip_dir=$(mktemp -d)
  /usr/bin/python3 -m pip download --no-deps vaderSentiment==3.3.2 -d "$pip_dir" -q >/dev/null 2>&1 &&
    (cd "$pip_dir" && unzip -q -o ./*.whl) && VADER=$pip_dir/vaderSentiment/vader_lexicon.txt
fi
if [ -f "$VADER" ]; then
  /usr/bin/python3 - "$VADER" "$N" >"$D/vader.jsonl" <<'PY'
import json, random, sys
rows = []
for line in open(sys.argv[1], encoding="utf-8"):
    f = line.rstrip("\n").split("\t")
    if len(f) >= 2 and abs(float(f[1])) >= 0.5:
        rows.append({"text": f[0], "label": "positive" if float(f[1]) > 0 else "negative"})
random.Random(42).shuffle(rows)
for r in rows[: int(sys.argv[2])]:
    print(json.dumps(r))
PY
fi
# causal-lm: question -> answer text (FAQ canonical answers), and Banking77 text -> intent name
/usr/bin/python3 - "$ROOT/examples/faq" "$D" "$SHARED/banking77/train.csv" <<'PY'
import json, sys, csv, random
faq, d, b77 = sys.argv[1:4]
answers = json.load(open(f"{faq}/answers.json"))
rows = [json.loads(l) for l in open(f"{faq}/train.jsonl")]
with open(f"{d}/faq_qa.jsonl", "w") as f:
    for r in rows:
        a = answers[r["label"]]
        a = a if isinstance(a, str) else a.get("answer", str(a))
        f.write(json.dumps({"prompt": "Q: " + r["text"] + "\nA:", "completion": " " + a}) + "\n")
rs = list(csv.DictReader(open(b77)))
random.Random(42).shuffle(rs)
with open(f"{d}/b77_gen.jsonl", "w") as f:
    for r in rs[:600]:
        f.write(json.dumps({"prompt": r["text"] + "\nIntent:", "completion": " " + r["category"].replace("_", " ")}) + "\n")
PY

best() { # best FIELD MODE FILE: the best value of FIELD in metrics.jsonl (max or min)
  grep -o "\"$1\":[-0-9.e+]*" "$3" | sed 's/.*://' | sort -g | { [ "$2" = max ] && tail -n 1 || head -n 1; }
}
run() { # run TASK DATA MODEL METHOD LR
  local task=$1 data=$2 model=$3 method=$4 lr=$5 name
  name="$task-$(basename "${data%.*}")-$method-$lr"
  rm -rf "${OUT:?}/$name"
  local t0; t0=$(date +%s.%N)
  local extra=(); [ "$task" = classify ] && extra=(--metric accuracy) || extra=(--max-len 96)
  if ! "$FTC" train --model "$model" --data "$data" --out "$OUT/$name" --task "$task" --method "$method" --lr "$lr" \
       --val-split 0.2 --seed 42 "${extra[@]}" --quiet >"$OUT/$name.log" 2>&1; then
    printf '%s\t%s\t%s\t%s\tFAILED\n' "$task" "$(basename "$data")" "$method" "$lr"; return
  fi
  local wall; wall=$(echo "$t0 $(date +%s.%N)" | awk '{printf "%.0f", $2 - $1}')
  local ep; ep=$(grep -o '"epochs": *[0-9]*' "$OUT/$name/config.resolved.json" | grep -o '[0-9]*$')
  local v; if [ "$task" = classify ]; then v=$(best accuracy max "$OUT/$name/metrics.jsonl"); else v=$(best val_loss min "$OUT/$name/metrics.jsonl"); fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$task" "$(basename "$data")" "$method" "$lr" "$ep" "$v" "$wall"
}
printf 'task\tdata\tmethod\tlr\tepochs\tbest_val\twall_s\n'
if [ "${SWEEP_ONLY:-causal-lm}" != classify ] && [ -f "$STORIES/model.safetensors" ]; then
  for data in "$D/faq_qa.jsonl" "$D/b77_gen.jsonl"; do
    for lr in 1e-4 5e-4 2e-3 8e-3 3e-2; do run causal-lm "$data" "$STORIES" full $lr; done
    for lr in 5e-4 2e-3 1e-2 3e-2 1e-1; do run causal-lm "$data" "$STORIES" lora $lr; done
    for lr in 3e-4 1e-3 3e-3 1e-2 3e-2; do run causal-lm "$data" "$STORIES" head $lr; done
  done
fi
if [ "${SWEEP_ONLY:-classify}" != causal-lm ] && [ -n "$MINILM" ]; then
  for set in ${SWEEP_SETS:-banking77.csv faq.jsonl vader.jsonl}; do
    data=$D/$set
    [ -s "$data" ] || continue
    for lr in 3e-3 1e-2 3e-2; do run classify "$data" "$MINILM" head $lr; done
    for lr in 3e-4 1e-3 3e-3; do run classify "$data" "$MINILM" lora $lr; done
    for lr in 2e-5 5e-5 1e-4; do run classify "$data" "$MINILM" full $lr; done
  done
fi
