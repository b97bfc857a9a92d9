#!/bin/bash
# ftc train driven as a user would: usage errors (exit 1), bad input naming file and line (exit 2), a real
# run on MiniLM (head) with its run directory, --config with flags winning, and a run killed with SIGKILL at
# a random point and resumed that ends byte-identical to an uninterrupted one.
set -u
FTC=${FTC_BIN:?FTC_BIN not set}
T=$(mktemp -d /tmp/ftc_cli_train.XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/lib/expect.sh"

expect_rc 0 "" "$FTC" train --help
grep -q -- "--lora-targets" "$T/out" || fail "help lacks --lora-targets"
expect_rc 1 "--model DIR is required" "$FTC" train --data x --out y
expect_rc 1 "unknown option '--learnin-rate' (did you mean --learning-rate?)" "$FTC" train --learnin-rate 1
expect_rc 1 "lr: 'fast' is not a number" "$FTC" train --lr fast
expect_rc 1 "method: 'adapter' is not one of full, head, lora" "$FTC" train --method adapter
expect_rc 1 "--resume needs --out" "$FTC" train --resume
expect_rc 1 "--feature-cache is true or false, not 'maybe'" "$FTC" train --feature-cache maybe
printf 'lr: [1, 2]\n' >"$T/bad.yaml"
expect_rc 2 "bad.yaml: line 1: key 'lr'" "$FTC" train --config "$T/bad.yaml" --model m --data d --out o

MINILM=${FTC_MINILM_DIR:-}
if [ -z "$MINILM" ] || [ ! -f "$MINILM/config.json" ]; then
  echo "SKIP: MiniLM not installed (sh scripts/find-minilm.sh prints nothing); ran the usage checks only"
  exit 0
fi

# Pre-tokenized classify data: [CLS] + 8..13 tokens; the class decides which marker tokens appear often.
gen() { # gen SEED N
  awk -v seed="$1" -v n="$2" 'BEGIN { srand(seed);
    for (i = 0; i < n; i++) { c = int(rand() * 3); len = 8 + int(rand() * 6); s = "101";
      for (t = 0; t < len; t++) s = s ", " (rand() < 0.5 ? 2000 + 7 * c : 3000 + int(rand() * 5000));
      printf "{\"input_ids\": [%s, 102], \"label\": \"class%d\"}\n", s, c } }'
}
gen 1 32 >"$T/train.jsonl"
gen 2 8 >"$T/val.jsonl"

printf '{"input_ids": [101, 5, 102], "label": "a"}\n{"input_ids": [101, 99999999, 102], "label": "b"}\n' >"$T/oov.jsonl"
expect_rc 2 "oov.jsonl: line 2: input_ids[1] = 99999999 is outside the vocabulary" \
  "$FTC" train --model "$MINILM" --data "$T/oov.jsonl" --out "$T/r0" --quiet
expect_rc 2 "missing.jsonl" "$FTC" train --model "$MINILM" --data "$T/missing.jsonl" --out "$T/r0" --quiet

# A short real run, settings from a YAML file with one flag overriding it.
printf 'method: head\nlearning_rate: 0.01\nbatch: 8\nmax_steps: 4\neval-every: 2\nmetric: accuracy\nwarmup: 2\n' >"$T/run.yaml"
expect_rc 0 "" "$FTC" train --model "$MINILM" --data "$T/train.jsonl" --val "$T/val.jsonl" --out "$T/run" \
  --config "$T/run.yaml" --batch 4 --quiet
for f in config.resolved.json labels.json metrics.jsonl checkpoint.ftc best.ftc model/config.json model/model.safetensors; do
  [ -s "$T/run/$f" ] || fail "run dir lacks $f"
done
grep -q '"batch": 4' "$T/run/config.resolved.json" || fail "--batch did not override the config file"
for kv in '"memory_plan": {' '"seq_len": [1-9]' '"activation_bytes": [1-9]' '"activation_bytes_per_token": [1-9]'; do
  grep -q "$kv" "$T/run/config.resolved.json" || fail "memory_plan lacks $kv: $(cat "$T/run/config.resolved.json")"
done
grep -q '"lr": 0.0099999' "$T/run/config.resolved.json" || fail "lr from the config file missing"
grep -q '"method": "head"' "$T/run/config.resolved.json" || fail "method from the config file missing"
grep -q '"trainable_params": 1155' "$T/run/config.resolved.json" || fail "head on MiniLM should train 384*3+3 params"
[ "$(grep -c '"accuracy"' "$T/run/metrics.jsonl")" -ge 2 ] || fail "expected >= 2 evaluations in metrics.jsonl"
grep -q '"id2label"' "$T/run/model/config.json" || fail "model/config.json lacks id2label"
expect_rc 1 "already holds a run" "$FTC" train --model "$MINILM" --data "$T/train.jsonl" --out "$T/run" --quiet
# A NaN loss is an error from the library (FTC_E_DIVERGED), reported as one with exit 2, naming the step and the
# micro-batch: a checkpoint whose first head weight is poisoned with a NaN, resumed for more steps.
expect_rc 0 "" "$FTC" train --model "$MINILM" --data "$T/train.jsonl" --out "$T/nan" --method head --lr 0.01 --batch 4 \
  --max-steps 2 --quiet
hlen=$(od -An -tu8 -j8 -N8 "$T/nan/checkpoint.ftc" | tr -d ' ') # "FTCCKPT1", u64 header length, header, f32 data
printf '\000\000\300\177' | dd of="$T/nan/checkpoint.ftc" bs=1 seek=$((16 + hlen)) conv=notrunc 2>/dev/null
expect_rc 2 "ftc train: error: training loss is NaN at step 3 (epoch 1), micro-batch 1 of 1: stopped" \
  "$FTC" train --model "$MINILM" --data "$T/train.jsonl" --out "$T/nan" --method head --lr 0.01 --batch 4 \
  --max-steps 4 --quiet --resume
grep -q '"step":3' "$T/nan/metrics.jsonl" && fail "a diverged step was logged: $(cat "$T/nan/metrics.jsonl")"
# head on a frozen backbone caches the encoder's features by default; --feature-cache false runs it every step
grep -q '"feature_cache": true' "$T/run/config.resolved.json" || fail "config.resolved.json lacks feature_cache: true"
expect_rc 0 "" "$FTC" train --model "$MINILM" --data "$T/train.jsonl" --val "$T/val.jsonl" --out "$T/run_nocache" \
  --config "$T/run.yaml" --batch 4 --no-feature-cache --quiet
grep -q '"feature_cache": false' "$T/run_nocache/config.resolved.json" || fail "--feature-cache false not recorded"
[ "$(grep -c '"accuracy"' "$T/run_nocache/metrics.jsonl")" -ge 2 ] || fail "uncached run: expected >= 2 evaluations"

# Continuing from a run's model (e.g. full fine-tuning after a head-only run): the head it was trained with is
# kept, so its pooling (recorded as ftc_pooling; MiniLM's is mean) must be kept too, and its labels must match.
grep -q '"ftc_pooling": "mean"' "$T/run/model/config.json" || fail "run 1 should pool by mean (sentence-transformers)"
expect_rc 0 "" "$FTC" train --model "$T/run/model" --data "$T/train.jsonl" --out "$T/cont" --method full --lr 1e-5 \
  --batch 4 --max-steps 1 --quiet
grep -q '"ftc_pooling": "mean"' "$T/cont/model/config.json" || fail "continued run switched pooling away from mean"
sed 's/"class\([0-9]\)"/"kind\1"/' "$T/train.jsonl" >"$T/renamed.jsonl"
expect_rc 2 "(config.json id2label) but the data's label 0 is 'kind" \
  "$FTC" train --model "$T/run/model" --data "$T/renamed.jsonl" --out "$T/cont2" --method full --max-steps 1 --quiet

# Method defaults: nothing but the method named. Full on a new head runs the head-first stage (LP-FT) into
# RUNDIR/head-stage at the head method's rate, then every weight at full's; --no-lp-ft skips it. Without
# --epochs, epochs follow the data: 32 examples at batch 32 is one step an epoch, so 25 epochs (the cap).
expect_rc 0 "" "$FTC" train --model "$MINILM" --data "$T/train.jsonl" --val "$T/val.jsonl" --out "$T/lpft" --method full \
  --max-steps 2
grep -q "LP-FT stage 1" "$T/err" || { cat "$T/err"; fail "full on a new head did not announce the head stage"; }
grep -q '"method": "head"' "$T/lpft/head-stage/config.resolved.json" || fail "no head stage in RUNDIR/head-stage"
grep -q '"lr": 0.0099999' "$T/lpft/head-stage/config.resolved.json" || fail "head stage lr is not the head default 1e-2"
grep -q '"epochs": 25' "$T/lpft/head-stage/config.resolved.json" || fail "head stage epochs not fitted to 32 examples"
grep -q '"lr": 4.99999' "$T/lpft/config.resolved.json" || fail "full stage lr is not the full default 5e-5"
grep -q '"batch": 32' "$T/lpft/config.resolved.json" || fail "full stage batch is not the default 32"
# the full stage moved the weights: its two evaluations differ (model/ is the most accurate of them, which may be
# step 1's: warmup starts the rate at 0, and a later evaluation as accurate does not replace it)
[ "$(grep -o '"val_loss":[^,]*' "$T/lpft/metrics.jsonl" | sort -u | wc -l)" -ge 2 ] \
  || { cat "$T/lpft/metrics.jsonl"; fail "full stage changed nothing (the same val_loss at each evaluation)"; }
expect_rc 0 "" "$FTC" train --model "$MINILM" --data "$T/train.jsonl" --out "$T/nolpft" --method full --max-steps 1 \
  --no-lp-ft --lr 1e-4 --batch 8 --quiet
[ -d "$T/nolpft/head-stage" ] && fail "--no-lp-ft ran a head stage"
grep -q '"lp_ft": false' "$T/nolpft/config.resolved.json" && grep -q '"batch": 8' "$T/nolpft/config.resolved.json" \
  || fail "--no-lp-ft / --batch not recorded"

# --grad-checkpoint recomputes each block in backward (with the same dropout masks): the same model, bit for bit.
for ck in false true; do
  expect_rc 0 "" "$FTC" train --model "$MINILM" --data "$T/train.jsonl" --out "$T/ck_$ck" --method full --lr 1e-4 \
    --batch 4 --max-steps 2 $([ $ck = true ] && echo --grad-checkpoint || echo --no-grad-checkpoint) --quiet
done
grep -q '"grad_checkpoint": true' "$T/ck_true/config.resolved.json" || fail "grad_checkpoint not recorded"
cmp "$T/ck_false/model/model.safetensors" "$T/ck_true/model/model.safetensors" || fail "--grad-checkpoint changed the model"
expect_rc 1 "--grad-checkpoint is true or false, not 'maybe'" "$FTC" train --model "$MINILM" --data "$T/train.jsonl" --out "$T/ck_bad" --grad-checkpoint maybe

# --rdrop (R-Drop): each example twice with its own dropout masks (MiniLM's 0.1), the loss + their symmetric KL.
# Full on classify runs it at alpha 1 by default (ck_false and ck_true above: the same bits with --grad-checkpoint);
# --rdrop 1 given is the same run; --rdrop 0 another model (each example once), also the same bits with
# --grad-checkpoint; stopped after step 1 and resumed, the same bits as in one go.
grep -q '"rdrop": 1' "$T/ck_false/config.resolved.json" || fail "rdrop is not 1 by default for full on classify"
grep -q '"rdrop": 0' "$T/lpft/head-stage/config.resolved.json" || fail "the LP-FT head stage should not use R-Drop"
grep -q '"rdrop": 1' "$T/lpft/config.resolved.json" || fail "the LP-FT full stage should use R-Drop"
expect_rc 0 "" "$FTC" train --model "$MINILM" --data "$T/train.jsonl" --out "$T/rd" --method full --lr 1e-4 --batch 4 \
  --max-steps 2 --rdrop 1 --save-every 1 --save-total-limit 0 --quiet
grep -q '"rdrop": 1' "$T/rd/config.resolved.json" || fail "--rdrop not recorded"
cmp "$T/ck_false/model/model.safetensors" "$T/rd/model/model.safetensors" || fail "--rdrop 1 is not the default"
for ck in false true; do
  expect_rc 0 "" "$FTC" train --model "$MINILM" --data "$T/train.jsonl" --out "$T/rd0_$ck" --method full --lr 1e-4 \
    --batch 4 --max-steps 2 --rdrop 0 $([ $ck = true ] && echo --grad-checkpoint || echo --no-grad-checkpoint) --quiet
done
grep -q '"rdrop": 0' "$T/rd0_false/config.resolved.json" || fail "--rdrop 0 not recorded"
cmp -s "$T/ck_false/model/model.safetensors" "$T/rd0_false/model/model.safetensors" && fail "--rdrop 0 changed nothing"
cmp "$T/rd0_false/model/model.safetensors" "$T/rd0_true/model/model.safetensors" || fail "--rdrop 0 with --grad-checkpoint changed the model"
cp -r "$T/rd" "$T/rd_re" && cp "$T/rd/checkpoint-1.ftc" "$T/rd_re/checkpoint.ftc" || fail "no checkpoint-1.ftc"
expect_rc 0 "" "$FTC" train --out "$T/rd_re" --resume --quiet
cmp "$T/rd/model/model.safetensors" "$T/rd_re/model/model.safetensors" || fail "--rdrop run resumed differs"
expect_rc 1 "--rdrop needs --task classify" "$FTC" train --model "$MINILM" --data "$T/train.jsonl" --out "$T/rd_lm" \
  --task causal-lm --rdrop 1
# ftc plan names R-Drop on the full stage by default (not the head stage) and plans the activations of 2 x batch
# rows; --rdrop 0: neither
for a in 1 0; do
  expect_rc 0 "" "$FTC" plan --model "$MINILM" --data "$T/train.jsonl" --method full $([ $a = 0 ] && echo --rdrop 0) \
    --measure-steps 1
  cp "$T/out" "$T/plan_rd$a"
done
grep -q "^full stage: method full, lr 5e-05, R-Drop 1 (each example twice), batch" "$T/plan_rd1" || { cat "$T/plan_rd1"; fail "plan: no R-Drop on the full stage"; }
[ "$(grep -c "R-Drop" "$T/plan_rd1")" = 1 ] && ! grep -q "R-Drop" "$T/plan_rd0" || fail "plan: R-Drop named where it is off"
act() { sed -n '/^full stage/,$p' "$1" | grep -o 'activations [0-9.]*' | head -n 1 | sed 's/.* //'; }
awk -v a="$(act "$T/plan_rd1")" -v b="$(act "$T/plan_rd0")" 'BEGIN { exit !(a > 1.3 * b && b > 0) }' \
  || fail "plan: R-Drop's activations $(act "$T/plan_rd1") MiB should exceed each-example-once's $(act "$T/plan_rd0") MiB"

# Text data through the data layer (the model's tokenizer), then `ftc eval --model RUNDIR` on held-out text.
FAQ="${FTC_SOURCE_DIR:-.}/examples/faq"
if [ -f "$FAQ/train.jsonl" ]; then
  head -n 120 "$FAQ/train.jsonl" >"$T/faq_train.jsonl"
  expect_rc 0 "" "$FTC" train --model "$MINILM" --data "$T/faq_train.jsonl" --out "$T/faq" --method head \
    --lr 0.01 --max-steps 3 --batch 8 --max-len 32 --quiet
  [ -s "$T/faq/labels.json" ] && [ -s "$T/faq/model/tokenizer.json" ] || fail "faq run lacks labels.json or the tokenizer"
  head -n 40 "$FAQ/test.jsonl" >"$T/faq_test.jsonl"
  expect_rc 0 "" "$FTC" eval --model "$T/faq" --data "$T/faq_test.jsonl" --json
  grep -q '"task": "classify"' "$T/out" && grep -q '"accuracy"' "$T/out" && grep -q '"loss"' "$T/out" \
    || { cat "$T/out"; fail "eval --json on the run dir lacks task/accuracy/loss"; }
fi
STORIES="${FTC_SHARED_DATA:-}/models/stories260K-hf"
if [ -f "$STORIES/model.safetensors" ]; then
  for i in 1 2 3 4 5 6 7 8; do
    printf '{"prompt": "Once upon a time, there was a little", "completion": " girl named Lily. She liked to play."}\n'
  done >"$T/lm.jsonl"
  expect_rc 0 "" "$FTC" train --model "$STORIES" --data "$T/lm.jsonl" --out "$T/lm" --task causal-lm --method lora \
    --lr 0.01 --max-steps 4 --batch 4 --quiet
  expect_rc 0 "" "$FTC" eval --model "$T/lm" --data "$T/lm.jsonl" --json
  grep -q '"task": "causal-lm"' "$T/out" && grep -q '"loss"' "$T/out" || { cat "$T/out"; fail "causal-lm run dir eval"; }
  first=$(head -n 1 "$T/lm/metrics.jsonl" | grep -o '"loss": *[0-9.]*' | grep -o '[0-9.]*$')
  last=$(grep -o '"loss": *[0-9.]*' "$T/lm/metrics.jsonl" | grep -v val | tail -n 1 | grep -o '[0-9.]*$')
  awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }' || fail "causal-lm LoRA loss did not fall ($first -> $last)"
fi

# Kill at a random point, resume, compare with an uninterrupted run byte for byte.
# (kept small: this also runs under ASan; tests/test_train.c kills tiny models of every family many times)
ARGS=(--model "$MINILM" --data "$T/train.jsonl" --val-split 0.25 --method lora --lora-r 4 --lr 0.003
      --batch 2 --grad-accum 2 --max-steps 6 --save-every 1 --eval-every 3 --seed 5 --quiet)
t0=$(date +%s%N)
"$FTC" train "${ARGS[@]}" --out "$T/ref" >/dev/null || fail "reference run failed"
dur_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
kills=0
for k in 1 2; do
  "$FTC" train "${ARGS[@]}" --out "$T/killed" $([ -d "$T/killed" ] && echo --resume) >/dev/null 2>&1 &
  pid=$!
  sleep "$(awk -v d="$dur_ms" -v s="$RANDOM" 'BEGIN { srand(s); printf "%.3f", d * (0.1 + 0.8 * rand()) / 1000 }')"
  kill -9 "$pid" 2>/dev/null && kills=$((kills + 1))
  wait "$pid" 2>/dev/null
done
"$FTC" train "${ARGS[@]}" --out "$T/killed" --resume >/dev/null || fail "resumed run failed"
cmp "$T/ref/adapter/adapter_model.safetensors" "$T/killed/adapter/adapter_model.safetensors" || fail "resumed adapter differs from uninterrupted"
cmp "$T/ref/checkpoint.ftc" "$T/killed/checkpoint.ftc" || fail "resumed checkpoint differs"
diff <(sed -E 's/"(tok_s|elapsed_s)":[0-9.e+]*//g' "$T/ref/metrics.jsonl") <(sed -E 's/"(tok_s|elapsed_s)":[0-9.e+]*//g' "$T/killed/metrics.jsonl") \
  || fail "metrics.jsonl of the resumed run differs"
echo "resume: killed $kills of 2 times (uninterrupted run ${dur_ms} ms); final model byte-identical"

# --save-only-model: the same run keeps model/ only (same bytes), and --resume knows it finished
"$FTC" train "${ARGS[@]}" --out "$T/only" --save-only-model >/dev/null || fail "--save-only-model run failed"
cmp "$T/ref/adapter/adapter_model.safetensors" "$T/only/adapter/adapter_model.safetensors" || fail "--save-only-model: adapter differs"
[ ! -e "$T/only/checkpoint.ftc" ] && [ ! -e "$T/only/best.ftc" ] || fail "--save-only-model kept checkpoints: $(ls "$T/only")"
out=$("$FTC" train "${ARGS[@]}" --out "$T/only" --save-only-model --resume) || fail "--resume of a --save-only-model run"
grep -q "already finished" <<<"$out" || fail "--resume of a finished --save-only-model run: $out"

# --save-total-limit N (HF Trainer's): at most N checkpoints with optimizer state, checkpoint.ftc (the newest)
# included, the others checkpoint-<step>.ftc; the oldest go first, never the best evaluation's
"$FTC" train "${ARGS[@]}" --out "$T/lim" --save-total-limit 3 >/dev/null || fail "--save-total-limit 3 run failed"
best=$(head -c 4000 "$T/lim/best.ftc" | grep -ao '"step":[0-9]*' | head -n 1 | cut -d: -f2)
kept=$(cd "$T/lim" && ls checkpoint-*.ftc | sort -t- -k2 -n | tr '\n' ' ')
[ "$(wc -w <<<"$kept")" -le 2 ] && [ -f "$T/lim/checkpoint-5.ftc" ] || fail "--save-total-limit 3 kept: $kept"
[ "$best" -ge 6 ] || [ -f "$T/lim/checkpoint-$best.ftc" ] || fail "--save-total-limit 3 removed the best step $best's: $kept"
[ "$best" = 1 ] || [ ! -e "$T/lim/checkpoint-1.ftc" ] || fail "--save-total-limit 3 kept the oldest: $kept"
cmp -s "$T/lim/checkpoint-5.ftc" "$T/lim/checkpoint.ftc" && fail "checkpoint-5.ftc is the last checkpoint's data"
# a rate that overshoots after the first evaluation: the best step is an early one and outlives newer checkpoints
"$FTC" train "${ARGS[@]}" --lr 0.05 --max-steps 12 --eval-every 2 --out "$T/lim2" --save-total-limit 2 >/dev/null ||
  fail "--save-total-limit 2 run failed"
best2=$(head -c 4000 "$T/lim2/best.ftc" | grep -ao '"step":[0-9]*' | head -n 1 | cut -d: -f2)
kept2=$(cd "$T/lim2" && ls checkpoint-*.ftc 2>/dev/null | tr '\n' ' ')
if [ "$best2" -lt 12 ]; then
  [ "$kept2" = "checkpoint-$best2.ftc " ] || fail "--save-total-limit 2, best step $best2: kept $kept2"
else
  [ "$kept2" = "checkpoint-11.ftc " ] || fail "--save-total-limit 2, best step 12: kept $kept2"
fi
"$FTC" train "${ARGS[@]}" --out "$T/all" --save-total-limit 0 >/dev/null || fail "--save-total-limit 0 run failed"
[ "$(cd "$T/all" && ls checkpoint-*.ftc | tr '\n' ' ')" = "checkpoint-1.ftc checkpoint-2.ftc checkpoint-3.ftc checkpoint-4.ftc checkpoint-5.ftc " ] ||
  fail "--save-total-limit 0 should keep every checkpoint: $(ls "$T/all")"
[ -z "$(ls "$T/ref" | grep 'checkpoint-')" ] || fail "the default kept step checkpoints: $(ls "$T/ref")"
# going on from an older checkpoint: copied over checkpoint.ftc, --resume runs the later steps again, same result
cp "$T/all/checkpoint-4.ftc" "$T/all/checkpoint.ftc"
"$FTC" train "${ARGS[@]}" --out "$T/all" --resume >/dev/null || fail "--resume from checkpoint-4.ftc failed"
cmp "$T/ref/adapter/adapter_model.safetensors" "$T/all/adapter/adapter_model.safetensors" || fail "resumed from step 4: adapter differs"
"$FTC" train "${ARGS[@]}" --out "$T/only2" --save-total-limit 0 --save-only-model >/dev/null || fail "--save-only-model run"
[ -z "$(ls "$T/only2" | grep 'checkpoint')" ] || fail "--save-only-model kept step checkpoints: $(ls "$T/only2")"
echo "--save-total-limit: 3 kept $kept+ checkpoint.ftc (best step $best); 2 kept $kept2+ checkpoint.ftc (best step $best2); 0 kept all five"

# a LoRA run keeps its adapter (PEFT layout) and no merged copy; every command that takes RUNDIR loads base +
# adapter; --save-merged (alias --merge-lora) also writes model/, with the same outputs
[ -f "$T/ref/adapter/adapter_config.json" ] && [ ! -e "$T/ref/model" ] || fail "LoRA run layout: $(ls "$T/ref")"
kb=$(du -sk "$T/ref" | cut -f1)
[ "$kb" -lt 8000 ] || fail "a MiniLM LoRA run takes $kb KB (no merged model/ expected)"
"$FTC" train "${ARGS[@]}" --out "$T/merged" --merge-lora >/dev/null || fail "--merge-lora run failed"
[ -f "$T/merged/model/model.safetensors" ] || fail "--merge-lora wrote no model/"
cmp "$T/ref/adapter/adapter_model.safetensors" "$T/merged/adapter/adapter_model.safetensors" || fail "--save-merged changed the adapter"
echo "run sizes: adapter only $kb KB, with --save-merged $(du -sk "$T/merged" | cut -f1) KB"
q=("my bike won't unlock" "refund please")
"$FTC" classify --model "$T/ref" "${q[@]}" >"$T/c_adapter" || fail "classify RUNDIR (base + adapter)"
"$FTC" classify --model "$T/merged" "${q[@]}" >"$T/c_merged" || fail "classify RUNDIR (model/)"
cmp "$T/c_adapter" "$T/c_merged" || fail "base + adapter classifies differently from the merged model/"
"$FTC" logits --model "$T/ref" --ids "$T/val.jsonl" >"$T/l_adapter" || fail "logits RUNDIR (base + adapter)"
"$FTC" logits --model "$T/merged" --ids "$T/val.jsonl" >"$T/l_merged" || fail "logits RUNDIR (model/)"
cmp "$T/l_adapter" "$T/l_merged" || fail "logits: base + adapter differ from the merged model/"
expect_rc 0 "" "$FTC" export "$T/ref" --format hf --out "$T/ref_hf"
"$FTC" classify --model "$T/ref_hf" "${q[@]}" >"$T/c_hf" || fail "classify the export of base + adapter"
cmp "$T/c_adapter" "$T/c_hf" || fail "export --format hf of an adapter-only run classifies differently"
expect_rc 1 "--save-merged is for --method lora" "$FTC" train --model "$MINILM" --data "$T/train.jsonl" --method head \
  --save-merged --out "$T/x"
echo "PASS"
