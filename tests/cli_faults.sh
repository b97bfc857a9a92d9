#!/usr/bin/env bash
# Regression suite for issue 26 (an adversarial probe of the CLI): each finding is a command that once
# hung, lost data, swallowed an error or gave the wrong cause, checked here for its exit code and message.
set -u
fail() { echo "FAIL: $*"; exit 1; }
FTC=${FTC_BIN:?}
M=${FTC_SHARED_DATA:?}/models/stories260K-hf
[ -f "$M/model.safetensors" ] || { echo "note: stories260K-hf not in FTC_SHARED_DATA; skipping"; exit 0; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
# expect RC PATTERN CMD...: runs CMD (60 s at most: a hang fails as rc 124), checks exit code and stderr
expect() {
  local want=$1 pat=$2; shift 2
  local err rc
  err=$(timeout 60 "$@" 2>&1 >/dev/null); rc=$?
  [ "$rc" -eq "$want" ] || fail "$* exited $rc, want $want: $err"
  grep -qE -- "$pat" <<<"$err" || fail "$*: message lacks /$pat/: $err"
}

## 1. Every file read is checked to be a regular file before a read that could block.
mkfifo fifo
expect 2 "fifo: not a regular file \(a FIFO\)" "$FTC" inspect fifo
expect 2 "fifo: not a regular file \(a FIFO\)" "$FTC" data check --data fifo
expect 2 "fifo: not a regular file \(a FIFO\)" "$FTC" tokenize --model "$M" --file fifo
expect 2 "fifo: not a regular file \(a FIFO\)" "$FTC" logits --model "$M" --ids fifo
expect 2 "fifo: not a regular file \(a FIFO\)" "$FTC" eval --model "$M" --data fifo
for f in config.json tokenizer.json tokenizer_config.json generation_config.json model.safetensors; do
  rm -rf m; mkdir m; cp "$M"/*.json "$M"/model.safetensors m/
  rm m/$f; mkfifo m/$f
  expect 2 "m/$f: not a regular file \(a FIFO\)" "$FTC" generate --model m --prompt hi --max-tokens 2
  case $f in config.json|generation_config.json|model.safetensors) ;; *)  # tokenize reads only tokenizer files
    expect 2 "m/$f: not a regular file \(a FIFO\)" "$FTC" tokenize --model m hi ;; esac
  [ $f = config.json ] && expect 2 "m/$f: not a regular file \(a FIFO\)" "$FTC" inspect m
done
rm m/model.safetensors; ln -s /dev/zero m/model.safetensors
expect 2 "m/model.safetensors: not a regular file \(a device\)" "$FTC" inspect m
expect 2 "m/model.safetensors: not a regular file \(a device\)" "$FTC" generate --model m --prompt hi

## 5a. A model file that is not JSON is an error in every command (tokenize and generate ignored it)
for f in tokenizer_config.json generation_config.json; do
  rm -rf m; mkdir m; cp "$M"/*.json "$M"/model.safetensors m/
  echo '{"bos_token": "<s>",' > m/$f
  expect 2 "m/$f:2:0: not valid JSON" "$FTC" generate --model m --prompt hi --max-tokens 2
  [ $f = tokenizer_config.json ] && expect 2 "m/$f:2:0: not valid JSON" "$FTC" tokenize --model m hi
  echo '[1]' > m/$f
  expect 2 "m/$f: not a JSON object" "$FTC" generate --model m --prompt hi --max-tokens 2
done

## 2. A failed write to standard output is exit 3 with its cause, in every command.
echo '{"input_ids":[1,2,3]}' > ids.jsonl
printf 'once upon a time there was a cat\n\nthe end of it all\n' > ev.txt
full() { # CMD...: stdout to /dev/full
  local err rc
  err=$(timeout 60 "$@" 2>&1 >/dev/full); rc=$?
  [ "$rc" -eq 3 ] || fail "$* > /dev/full exited $rc, want 3: $err"
  grep -q "error: writing standard output: No space left on device" <<<"$err" || fail "$* > /dev/full: $err"
}
if [ -w /dev/full ]; then
  full "$FTC" version
  full "$FTC" --help
  full "$FTC" inspect "$M"
  full "$FTC" logits --model "$M" --ids ids.jsonl
  full "$FTC" eval --model "$M" --data ev.txt
  full "$FTC" data check --data ev.txt
  full "$FTC" tokenize --model "$M" hello
  full "$FTC" generate --model "$M" --prompt hi --max-tokens 5
  full "$FTC" template show --model "$M" --chat-template chatml
  full sh -c 'echo hi | "$0" chat --model "$1" --max-tokens 3 --chat-template chatml' "$FTC" "$M"
else
  echo "note: no writable /dev/full; skipping the ENOSPC checks"
fi
# EPIPE with SIGPIPE ignored (a closed pager with SIGPIPE left alone ends ftc by the signal, as any tool)
yes 'hello there' | head -20000 > many.txt
rc=$(trap '' PIPE; "$FTC" tokenize --model "$M" --file many.txt 2>"$tmp/pipe.err" | true; echo "${PIPESTATUS[0]}")
[ "$rc" -eq 3 ] && grep -q "writing standard output: Broken pipe" pipe.err || fail "EPIPE: rc $rc $(cat pipe.err)"

## 3. An export never replaces its input or a directory holding a run, --force or not.
awk 'BEGIN { srand(5); for (i = 0; i < 16; i++) { s = "1";
  for (t = 0; t < 24; t++) s = s ", " (300 + int(rand() * 100)); printf "{\"input_ids\": [%s]}\n", s } }' >lm.jsonl
"$FTC" train --model "$M" --data lm.jsonl --out run --task causal-lm --method lora --lora-r 4 --lora-alpha 8 \
  --lr 0.01 --batch 8 --max-steps 3 --quiet >/dev/null 2>&1 || fail "train a LoRA run"
run_files() { ls run/checkpoint.ftc run/metrics.jsonl run/config.resolved.json run/model/config.json >/dev/null 2>&1; }
run_files || fail "the run lacks its files"
expect 1 "--out run is the input run" "$FTC" export --model run --format hf --out run --force
expect 1 "--out \. holds the input run" "$FTC" export --model run --format hf --out . --force
expect 1 "--out run/model is the input run/model" "$FTC" export --model run/model --format hf --out run/model --force
mkdir other && expect 1 "other holds a training run \(other/run/.*\): an export never replaces a run" \
  sh -c 'cp -r run other/ && "$0" export --model "$1" --format hf --out other --force' "$FTC" "$M"
run_files || fail "a refused export lost run files"
[ -f other/run/checkpoint.ftc ] || fail "other/run lost its checkpoint"
"$FTC" export --model run --format hf --out run/hf >/dev/null 2>&1 && [ -f run/hf/model.safetensors ] || fail "export into a new subdirectory of the run"

## 4. RUNDIR/model is replaced whole: a kill at any rename leaves the old model (or none) or the new one.
printf 'text,label\n' > cls.csv
for i in $(seq 1 12); do echo "the cat sat on mat $i,cat" >> cls.csv; echo "a dog ran in park $i,dog" >> cls.csv; done
TR=(train --model "$M" --data cls.csv --task classify --method lora --lora-r 4 --lr 0.01 --batch 8 --quiet)
sums() { [ -d "$1" ] && (cd "$1" && ls -A | LC_ALL=C sort | xargs md5sum) || echo none; }
leftovers() { find "$1" -name '*.tmp.*' -o -name '*.old.*' | head -3; }
if ! command -v strace >/dev/null || ! strace -f -o /dev/null true 2>/dev/null; then
  echo "note: strace missing or not permitted (ptrace); skipping the kill-at-each-rename checks"
else
  "$FTC" "${TR[@]}" --out refA --max-steps 2 >/dev/null || fail "train refA"
  cp -r refA refB && "$FTC" "${TR[@]}" --out refB --max-steps 4 --resume >/dev/null || fail "resume refB"
  A=$(sums refA/model) B=$(sums refB/model)
  [ "$A" != "$B" ] || fail "the two models should differ"
  for mode in fresh replace; do
    if [ $mode = fresh ]; then want=(--max-steps 2); ok1=none ok2=$A
    else want=(--max-steps 4 --resume); ok1=$A ok2=$B; fi
    rm -rf k; [ $mode = replace ] && cp -r refA k
    n=$(strace -f -c -e trace=rename,renameat2 "$FTC" "${TR[@]}" --out k "${want[@]}" 2>&1 >/dev/null |
        awk '$NF ~ /^rename/ { n += $4 } END { print n + 0 }')
    [ "$n" -ge 3 ] || fail "$mode: expected several renames, counted $n"
    for i in $(seq 1 "$n"); do
      rm -rf k; [ $mode = replace ] && cp -r refA k
      (strace -f -o /dev/null -e trace=rename,renameat2 -e inject=rename,renameat2:signal=SIGKILL:when=$i \
        "$FTC" "${TR[@]}" --out k "${want[@]}"; true) >/dev/null 2>&1
      got=$(sums k/model)
      [ "$got" = "$ok1" ] || [ "$got" = "$ok2" ] || fail "$mode: killed at rename $i of $n: k/model is a mix: $got"
      if [ "$got" != none ]; then
        out=$("$FTC" classify --model k/model "the cat sat on mat 3" 2>&1) || fail "$mode $i: classify: $out"
        grep -q "LABEL_" <<<"$out" && fail "$mode $i: generic labels: $out"
      fi
      "$FTC" "${TR[@]}" --out k "${want[@]}" --resume >/dev/null 2>&1 || fail "$mode $i: resume after the kill failed"
      [ -z "$(leftovers k)" ] || fail "$mode $i: temporaries left after a successful resume: $(leftovers k)"
    done
  done
fi

echo "cli_faults: ok"
