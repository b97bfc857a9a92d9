#!/bin/bash
# One option vocabulary across commands (src/cli/opts.c): every boolean takes --flag, --flag true|false,
# --flag=BOOL and --no-flag; an unknown option says "unknown option" with the closest names (never "needs a
# value"); Hugging Face Trainer / Axolotl names are aliases of ftc train's settings; ftc help CMD = ftc CMD --help.
set -u
FTC=${FTC_BIN:?FTC_BIN not set}
T=$(mktemp -d /tmp/ftc_cli_options.XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/lib/expect.sh"

# ftc help CMD prints exactly ftc CMD --help, for every command
for c in train plan data eval generate chat classify tokenize template inspect export init logits report retrieve serve; do
  "$FTC" help "$c" >"$T/a" 2>&1 || fail "ftc help $c exited $?"
  "$FTC" "$c" --help >"$T/b" 2>&1
  cmp -s "$T/a" "$T/b" || fail "ftc help $c differs from ftc $c --help"
  [ -s "$T/a" ] || fail "ftc help $c printed nothing"
  # every help ends with examples, and docs/cli.md has the command's section with the same examples
  ex=$(sed -n '/^Examples:$/,$p' "$T/a" | tail -n +2)
  [ -n "$ex" ] || fail "ftc $c --help has no 'Examples:' block at its end"
  if [ -n "${FTC_SOURCE_DIR:-}" ]; then
    grep -q "^## ftc $c\b" "$FTC_SOURCE_DIR/docs/cli.md" || fail "docs/cli.md has no '## ftc $c' section"
    while IFS= read -r line; do
      grep -qF -- "${line#  }" "$FTC_SOURCE_DIR/docs/cli.md" || fail "docs/cli.md lacks ftc $c's example: $line"
    done <<<"$ex"
  fi
done
expect_rc 1 "unknown command 'trian'" "$FTC" help trian

# every alias in the option tables (train's ALIASES, the other commands' cli_opt entries with a canonical name)
# is listed in docs/cli.md's "Renamed and aliased options", and ftc train accepts it
if [ -n "${FTC_SOURCE_DIR:-}" ]; then
  S=$FTC_SOURCE_DIR
  section=$(sed -n '/^## Renamed and aliased options/,/^## What/p' "$S/docs/cli.md")
  [ -n "$section" ] || fail "docs/cli.md has no 'Renamed and aliased options' section"
  train_aliases=$(sed -n '/ALIASES\[\] = {/,/};/p' "$S/src/train/runconfig.c" | grep -o '{"[a-z0-9-]*", "' | cut -d'"' -f2)
  cmd_aliases=$(cat "$S"/src/cli/cmd_*.c | tr -d '\n' | grep -o '{"[a-z0-9-]*", *[a-z]*, *"[a-z0-9-]*"}' | cut -d'"' -f2)
  [ "$(wc -w <<<"$train_aliases")" -ge 30 ] || fail "found only $(wc -w <<<"$train_aliases") train aliases in runconfig.c"
  for a in $train_aliases $cmd_aliases; do
    grep -qF -- "\`--$a\`" <<<"$section" || fail "docs/cli.md's alias list lacks --$a"
  done
  for a in $train_aliases; do
    "$FTC" train --"$a" 2>&1 | grep -q "unknown option" && fail "ftc train does not know its alias --$a"
  done
fi

# unknown options: the name, and the closest known ones; never "needs a value"
expect_rc 1 "unknown option '--bf17' (did you mean --bf16?)" "$FTC" train --bf17
expect_rc 1 "unknown option '--learning-rat' (did you mean --learning-rate?)" "$FTC" train --learning-rat 1e-3
expect_rc 1 "unknown option '--epoch' (did you mean --epochs" "$FTC" train --epoch 3
expect_rc 1 "unknown option '--resum' (did you mean --resume?)" "$FTC" train --resum
expect_rc 1 "unknown option '--jason' (did you mean --json?)" "$FTC" inspect --jason x
expect_rc 1 "unknown option '--temprature' (did you mean --temperature?)" "$FTC" generate --temprature 0.5
expect_rc 1 "unknown option '--temprature' (did you mean --temperature?)" "$FTC" chat --temprature 0.5
expect_rc 1 "unknown option '--max-token' (did you mean --max-tokens?)" "$FTC" chat --max-token 5
expect_rc 1 "unknown option '--frobnicate'" "$FTC" eval --frobnicate
expect_rc 1 "unknown option '--chat-templat' (did you mean --chat-template?)" "$FTC" data check --data x --chat-templat plain
for c in classify tokenize export init logits report retrieve serve; do
  expect_rc 1 "unknown option '--zzz'" "$FTC" $c --zzz
  grep -q "needs a value" "$T/err" && fail "ftc $c --zzz says 'needs a value'"
done
expect_rc 1 "unknown option '--zzz'" "$FTC" template render --zzz
expect_rc 1 "--model needs a value" "$FTC" generate --model
expect_rc 1 "--seed needs an integer" "$FTC" generate --model x --prompt y --seed=-3

# ftc train: booleans in every form, aliases; checked before anything is loaded (the model does not exist)
for form in "--pack" "--pack true" "--pack=true" "--pack yes"; do
  expect_rc 1 "--pack and --train-on-inputs need --task causal-lm" "$FTC" train --model m --data d --out o $form --max-steps 3
done
for form in "--no-pack" "--pack false" "--pack=false"; do
  expect_rc 2 "m: cannot open" "$FTC" train --model m --data d --out "$T/o" $form --max-steps 3 --quiet
done
expect_rc 1 "--pack is true or false, not 'maybe'" "$FTC" train --pack=maybe
expect_rc 1 "--no-pack takes no value" "$FTC" train --no-pack=true
expect_rc 1 "unknown option '--no-lr'" "$FTC" train --no-lr
expect_rc 1 "--lr needs a value" "$FTC" train --lr
expect_rc 1 "lr: 'fast' is not a number" "$FTC" train --learning-rate fast
expect_rc 1 "epochs: 'x' is not an integer" "$FTC" train --num-epochs x
expect_rc 1 "precision: 'true' is not one of fp32, bf16" "$FTC" train --precision true
printf 'learning_rat: 1\n' >"$T/bad.yaml"
expect_rc 2 "unknown setting 'learning_rat' (did you mean learning-rate?)" "$FTC" train --config "$T/bad.yaml"

STORIES="${FTC_SHARED_DATA:-}/models/stories260K-hf"
if [ ! -f "$STORIES/model.safetensors" ]; then
  echo "SKIP: stories260K not in FTC_SHARED_DATA; ran the checks without a model only"
  echo "PASS"
  exit 0
fi
# a real run: aliases and boolean forms land in config.resolved.json under ftc's names
for i in 1 2 3 4 5 6; do printf '{"text": "Once upon a time there was a little girl named Lily %d."}\n' "$i"; done >"$T/lm.jsonl"
printf 'learning_rate: 0.002\nnum_epochs: 1\nsample_packing: true\n' >"$T/run.yaml"
expect_rc 0 "" "$FTC" train --model "$STORIES" --data "$T/lm.jsonl" --task causal-lm --method full --config "$T/run.yaml" \
  --output-dir "$T/run" --per-device-train-batch-size 2 --max-seq-length 32 --gradient-checkpointing --no-pack \
  --bf16 false --quiet
R="$T/run/config.resolved.json"
for kv in '"lr": 0.0020' '"epochs": 1' '"batch": 2' '"max_len": 32' '"grad_checkpoint": true' '"pack": false' \
          '"precision": "fp32"'; do
  grep -qF "$kv" "$R" || { cat "$R"; fail "config.resolved.json lacks $kv"; }
done

# the task follows the data when --task is not given, and says so
expect_rc 0 "" "$FTC" train --model "$STORIES" --data "$T/lm.jsonl" --out "$T/sniff" --max-steps 1
grep -q "causal-lm (from the data: text records)" "$T/err" || { cat "$T/err"; fail "task not taken from text data"; }
grep -q '"task": "causal-lm"' "$T/sniff/config.resolved.json" || fail "sniffed task not recorded"
expect_rc 1 "need --task causal-lm" "$FTC" train --model "$STORIES" --data "$T/lm.jsonl" --out "$T/sniff2" --task classify \
  --pack --max-steps 1

# other commands: every boolean form
expect_rc 0 "" "$FTC" inspect --json "$STORIES"; grep -q '"n_params"' "$T/out" || fail "inspect --json"
expect_rc 0 "" "$FTC" inspect --json true "$STORIES"; grep -q '"n_params"' "$T/out" || fail "inspect --json true"
expect_rc 0 "" "$FTC" inspect "$STORIES" --json=false; grep -q '"n_params"' "$T/out" && fail "inspect --json=false printed JSON"
expect_rc 0 "" "$FTC" inspect --no-json "$STORIES"; grep -q '"n_params"' "$T/out" && fail "inspect --no-json printed JSON"
expect_rc 0 "" "$FTC" tokenize --model "$STORIES" --no-special "Once upon"; a=$(cat "$T/out")
expect_rc 0 "" "$FTC" tokenize --model "$STORIES" --special false "Once upon"; [ "$(cat "$T/out")" = "$a" ] || fail "--special false != --no-special"
expect_rc 0 "" "$FTC" tokenize --model "$STORIES" --special "Once upon"; [ "$(cat "$T/out")" != "$a" ] || fail "--special should add BOS"
expect_rc 0 "" "$FTC" tokenize --model "$STORIES" --tokens true "Once"; grep -q '"' "$T/out" || grep -q '[A-Za-z]' "$T/out" || fail "--tokens true"
expect_rc 0 "" "$FTC" generate --model "$STORIES" --prompt "Once" --max-tokens 2 --stats; grep -q "tok/s\|tokens" "$T/err" || fail "generate --stats printed no statistics"
expect_rc 0 "" "$FTC" generate --model "$STORIES" --prompt "Once" --max-tokens 2 --no-stats; [ -s "$T/err" ] && fail "generate --no-stats printed statistics"
expect_rc 0 "" "$FTC" generate --model "$STORIES" --prompt "Once" --max-tokens=2 --temperature=0; b=$(cat "$T/out")
expect_rc 0 "" "$FTC" generate --model "$STORIES" --prompt "Once" --max-tokens 2 --temperature 0; [ "$(cat "$T/out")" = "$b" ] || fail "--name=VALUE differs"
expect_rc 0 "" "$FTC" generate "$STORIES" --prompt "Once" --max-tokens 2 --temperature 0; [ "$(cat "$T/out")" = "$b" ] || fail "generate DIR (positional) differs"
expect_rc 1 "unexpected argument 'extra'" "$FTC" generate "$STORIES" extra --prompt "Once"
expect_rc 0 "" "$FTC" report "$T/run"; [ -s "$T/run/report.html" ] || fail "ftc report RUNDIR (positional) wrote no report"
printf '{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n' >"$T/cls.jsonl"
expect_rc 0 "" "$FTC" data check --data "$T/cls.jsonl" --json; grep -q '"n_errors"' "$T/out" || fail "data check --json"
expect_rc 0 "" "$FTC" data check --data "$T/cls.jsonl" --json false; grep -q '"n_errors"' "$T/out" && fail "data check --json false printed JSON"
echo "PASS"
