#!/bin/bash
# ftc train --resume for every method x task: full, head and lora on classify (MiniLM) and causal-lm
# (stories260K). Each run is killed with SIGKILL at random moments (mostly during steps and checkpoint
# saves) and at chosen ones through the CLI's test hook FTC_TEST_KILL_AT (docs/train.md "Resume"): inside a
# validation pass, after its metrics line, after best.ftc, at each stage of the final model save, and before
# eval.json; full on classify (LP-FT) gets all of these in its head stage and again in its full stage. It is
# resumed until it finishes and must end byte-identical to an uninterrupted run:
# model/model.safetensors, checkpoint.ftc, best.ftc, eval.json, adapter/ (LoRA) and metrics.jsonl (timing
# fields aside). Then --resume of the finished run is a no-op that says so, and --resume with a contradicting
# flag is refused.
set -u
FTC=${FTC_BIN:?FTC_BIN not set}
T=$(mktemp -d /tmp/ftc_cli_resume.XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/lib/expect.sh"
MINILM=${FTC_MINILM_DIR:-}
STORIES="${FTC_SHARED_DATA:-}/models/stories260K-hf"
KILLS=${FTC_RESUME_KILLS:-2}

# classify: pre-tokenized, [CLS] + 6..9 tokens; causal-lm: prompt/completion text through the tokenizer
awk 'BEGIN { srand(3); for (i = 0; i < 24; i++) { c = i % 3; s = "101";
  for (t = 0; t < 6 + i % 4; t++) s = s ", " (rand() < 0.5 ? 2000 + 7 * c : 3000 + int(rand() * 5000));
  printf "{\"input_ids\": [%s, 102], \"label\": \"class%d\"}\n", s, c } }' >"$T/cls.jsonl"
for i in 1 2 3 4 5 6 7 8 9 10 11 12; do
  printf '{"prompt": "Once upon a time, there was a little %d", "completion": " girl named Lily. She liked to play."}\n' "$i"
done >"$T/lm.jsonl"

ran=0
for combo in classify:full classify:head classify:lora causal-lm:full causal-lm:head causal-lm:lora; do
  task=${combo%%:*} method=${combo#*:}
  if [ "$task" = classify ]; then
    [ -n "$MINILM" ] && [ -f "$MINILM/config.json" ] || { echo "SKIP $combo: MiniLM not installed"; continue; }
    ARGS=(--model "$MINILM" --data "$T/cls.jsonl" --val-split 0.25 --metric accuracy)
  else
    [ -f "$STORIES/model.safetensors" ] || { echo "SKIP $combo: stories260K not in FTC_SHARED_DATA"; continue; }
    ARGS=(--model "$STORIES" --data "$T/lm.jsonl" --val-split 0.25 --max-len 32)
  fi
  lr=0.001; [ "$method" = full ] || lr=0.01
  # a full MiniLM checkpoint (weights + AdamW moments) is 270 MB: fewer of them keeps the test fast
  save=1; [ "$combo" = classify:full ] && save=3
  # no LoRA flag for full/head: config.resolved.json stores LoRA's defaults, and resuming must not trip on them
  ARGS+=(--task "$task" --method "$method" --lr "$lr" --batch 2 --grad-accum 2 --max-steps 6 --save-every "$save"
         --eval-every 2 --seed 7 --quiet)
  d="$T/$task-$method"
  t0=$(date +%s%N)
  "$FTC" train "${ARGS[@]}" --out "$d.ref" >/dev/null 2>"$T/err" || { cat "$T/err"; fail "$combo: reference run failed"; }
  dur_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  # a kill at a chosen moment: that process must die there (exit 137), not finish or fail. The braces keep
  # bash's "Killed" job notice out of the log.
  kill_at() {
    { (FTC_TEST_KILL_AT=$1 "$FTC" train "${ARGS[@]}" --out "$d" $([ -d "$d" ] && echo --resume) \
      >/dev/null 2>"$T/err"); } 2>/dev/null
    rc=$?
    [ "$rc" = 137 ] || { cat "$T/err"; fail "$combo$stage: FTC_TEST_KILL_AT=$1: exit $rc, not killed there"; }
    hooked="$hooked $1"
  }
  # random kills between shares $1 and $2 of the uninterrupted run's time, never past the final save's first
  # moment (the kills after them need the final save ahead)
  kill_randomly() {
    for k in $(seq "$KILLS"); do
      FTC_TEST_KILL_AT=final-best "$FTC" train "${ARGS[@]}" --out "$d" --resume >/dev/null 2>&1 &
      pid=$!
      sleep "$(awk -v d="$dur_ms" -v s="$RANDOM" -v a="$1" -v b="$2" 'BEGIN { srand(s); printf "%.3f", d * (a + (b - a) * rand()) / 1000 }')"
      if kill -9 "$pid" 2>/dev/null; then
        kills=$((kills + 1))
        wait "$pid" 2>/dev/null
        # where it was killed: the step of the last checkpoint, and whether the final model was there yet
        st=$(head -c 100000 "$d/checkpoint.ftc" 2>/dev/null | grep -ao '"step": *[0-9]*' | head -n 1 | grep -o '[0-9]*$')
        at="$at ${st:-none}$([ -d "$d/model" ] && echo +model)"
      else
        wait "$pid" 2>/dev/null
      fi
    done
  }
  # every chosen moment once: the first evaluation is always the best so far (best.ftc); the next ones are killed
  # inside the validation pass and after its metrics.jsonl line (the step's checkpoint comes after both); then the
  # final save: best weights loaded, LoRA's adapter/ written (a LoRA run writes no model/), model/ staged, model/
  # in place, eval.json. A kill point fires the first time the process reaches it, so for classify:full they all
  # land in the LP-FT head stage first (stage " head"), and once that has finished, in the full stage (" full").
  kill_everywhere() {
    kill_at best-saved
    if [ "$stage" = " head" ]; then
      # killed inside the LP-FT head stage: the run's settings are down already, so a contradicting flag is refused
      [ -d "$d/head-stage" ] && [ ! -f "$d/checkpoint.ftc" ] || fail "$combo: the first kill was not inside the head stage"
      expect_rc 1 "--resume: --batch 4 contradicts the saved run's batch 2" "$FTC" train "${ARGS[@]}" --out "$d" --resume --batch 4
    elif [ "$stage" = " full" ]; then
      [ -d "$d/head-stage/model" ] && [ ! -d "$d/model" ] \
        || fail "$combo: the full stage's first kill came before the head stage had finished"
    fi
    kill_at eval
    kill_at eval-logged
    # random kills: none in the head stage, a short part of the run where they would mostly come too late;
    # classify:full's full stage restarts from step 0 until its first checkpoint (step 3), so its kills come later
    # for some to land after it (stderr muted: bash reports a process that killed itself at final-best)
    if [ "$stage" = " full" ]; then kill_randomly 0.3 0.9 2>/dev/null
    elif [ "$stage" = "" ]; then kill_randomly 0.05 0.5 2>/dev/null; fi
    kill_at final-best
    if [ "$stage" = " head" ]; then
      # the first final save is the head stage's: its checkpoint is there, the full stage's not yet; a restart
      # without --resume must not train over it
      [ -f "$d/head-stage/checkpoint.ftc" ] && [ ! -f "$d/checkpoint.ftc" ] || fail "$combo: final-best was not the head stage's"
      expect_rc 1 "already holds a run (head-stage/checkpoint.ftc): use --resume" "$FTC" train "${ARGS[@]}" --out "$d"
    elif [ "$stage" = " full" ]; then
      [ -f "$d/checkpoint.ftc" ] || fail "$combo: final-best of the full stage came before its checkpoint"
    fi
    if [ "$method" = lora ]; then kill_at final-adapter; else kill_at final-staged; fi
    kill_at final-done
    # eval.json is the whole run's (the head stage writes none): its moment comes at the end of the full stage
    [ "$stage" = " head" ] || kill_at final-eval
  }
  hooked="" kills=0 at=""
  if [ "$combo" = classify:full ]; then
    stage=" head"; hooked="$hooked head-stage:"; kill_everywhere
    stage=" full"; hooked="$hooked; full-stage:"; kill_everywhere
  else
    stage=""; kill_everywhere
  fi
  expect_rc 0 "" "$FTC" train "${ARGS[@]}" --out "$d" --resume
  # a LoRA run keeps its adapter, no merged model/
  mf=model/model.safetensors; [ "$method" = lora ] && mf=adapter/adapter_model.safetensors
  [ "$method" = lora ] && [ -e "$d/model" ] && fail "$combo: a LoRA run wrote a merged model/ without --save-merged"
  files="$mf checkpoint.ftc best.ftc eval.json"
  [ "$method" = lora ] && files="$files adapter/adapter_config.json"
  for f in $files; do
    cmp -s "$d.ref/$f" "$d/$f" || fail "$combo: $f of the resumed run differs from the uninterrupted run"
  done
  diff <(sed -E 's/"(tok_s|elapsed_s)":[0-9.e+]*//g' "$d.ref/metrics.jsonl") <(sed -E 's/"(tok_s|elapsed_s)":[0-9.e+]*//g' "$d/metrics.jsonl") >/dev/null \
    || fail "$combo: metrics.jsonl of the resumed run differs"
  # the training time continues across the kills: elapsed_s never goes back
  grep -o '"elapsed_s":[0-9.e+]*' "$d/metrics.jsonl" | cut -d: -f2 \
    | awk 'NR > 1 && $1 + 0 < prev { bad = 1 } { prev = $1 + 0 } END { exit bad || NR < 2 }' \
    || fail "$combo: elapsed_s of the resumed run goes back or is missing: $(grep -o '"elapsed_s":[0-9.e+]*' "$d/metrics.jsonl" | tr '\n' ' ')"
  # a finished run: --resume says so and changes nothing
  sum=$(cat "$d/$mf" "$d/checkpoint.ftc" "$d/metrics.jsonl" | md5sum)
  expect_rc 0 "" "$FTC" train "${ARGS[@]}" --out "$d" --resume
  grep -q "already finished (6 steps); nothing to resume" "$T/out" || { cat "$T/out"; fail "$combo: finished run not reported"; }
  [ "$(cat "$d/$mf" "$d/checkpoint.ftc" "$d/metrics.jsonl" | md5sum)" = "$sum" ] \
    || fail "$combo: --resume of a finished run changed files"
  echo "$combo: killed at$hooked; at random $kills of $KILLS times (checkpoint step at each:${at:- -}; uninterrupted ${dur_ms} ms); resumed run byte-identical"
  ran=$((ran + 1))
done

# --resume with a flag that contradicts the saved run: refused, naming the flag and both values
if [ -d "$T/causal-lm-lora" ]; then
  expect_rc 1 "--resume: --lora-r 4 contradicts the saved run's lora-r 8" \
    "$FTC" train --model "$STORIES" --data "$T/lm.jsonl" --out "$T/causal-lm-lora" --resume --lora-r 4
  expect_rc 1 "--resume: --method full contradicts the saved run's method lora" \
    "$FTC" train --model "$STORIES" --data "$T/lm.jsonl" --out "$T/causal-lm-lora" --resume --method full
  # a flag that only changes how often checkpoints are written is fine
  expect_rc 0 "" "$FTC" train --out "$T/causal-lm-lora" --resume --save-every 3
fi
[ "$ran" -gt 0 ] || echo "SKIP: no model available"
echo "PASS"
