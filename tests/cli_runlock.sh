#!/usr/bin/env bash
# The run-directory lock (issue 15, include/ftc/runlock.h): a second `ftc train` on a RUNDIR that a live run
# holds is refused, naming the holder's pid, and leaves the run alone; a lock left by a run killed with SIGKILL
# is taken over and --resume continues from the killed run's checkpoint. A finished run leaves no lock file.
set -u
FTC=${FTC_BIN:?FTC_BIN not set}
T=$(mktemp -d /tmp/ftc_cli_runlock.XXXXXX)
A=
trap '[ -n "$A" ] && kill -KILL "$A" 2>/dev/null; rm -rf "$T"' EXIT
. "$(dirname "$0")/lib/expect.sh"
need_stories260k
M=$STORIES
story_pairs 8 "$T/lm.jsonl"
ARGS=(--model "$M" --data "$T/lm.jsonl" --task causal-lm --method full --batch 1 --max-len 16 --seed 3 --save-every 1)
d="$T/run"

# A: a long run; wait until it holds the lock and has written a checkpoint, then freeze it (alive, lock held)
"$FTC" train "${ARGS[@]}" --max-steps 100000 --quiet --out "$d" >/dev/null 2>"$T/a.err" &
A=$!
for _ in $(seq 600); do
  [ -f "$d/checkpoint.ftc" ] && [ "$(cat "$d/train.lock" 2>/dev/null)" = "$A" ] && break
  kill -0 "$A" 2>/dev/null || { cat "$T/a.err"; fail "run A ended early"; }
  sleep 0.05
done
kill -STOP "$A"
[ "$(cat "$d/train.lock" 2>/dev/null)" = "$A" ] || fail "train.lock does not hold run A's pid $A"
cp "$d/checkpoint.ftc" "$T/a.ckpt"

# B: refused while A lives, with A's pid in the message, whether it resumes or starts afresh; A's files untouched
expect_rc 2 "is in use by another run (pid $A, lock $d/train.lock)" "$FTC" train "${ARGS[@]}" --max-steps 4 --out "$d" --resume
expect_rc 2 "pid $A" "$FTC" train "${ARGS[@]}" --max-steps 4 --out "$d"
cmp -s "$d/checkpoint.ftc" "$T/a.ckpt" || fail "a refused run changed the live run's checkpoint"
[ "$(cat "$d/train.lock")" = "$A" ] || fail "a refused run changed the lock file"

# A killed with SIGKILL: its lock file stays, stale; C takes it over and resumes from A's checkpoint
kill -KILL "$A"; wait "$A" 2>/dev/null; A=
[ -f "$d/train.lock" ] || fail "no lock file left by the killed run (the test would not test a stale lock)"
step=$(sed -n 's/^{"step": *\([0-9]*\),.*"loss".*/\1/p' "$d/metrics.jsonl" | tail -1)
[ -n "$step" ] && [ "$step" -ge 1 ] || fail "run A logged no step"
# a mark in A's first metrics line (a timing field): --resume keeps the lines up to its checkpoint as they are,
# a run that started afresh would rewrite the file
sed -i '1s/"tok_s":[0-9.e+-]*/"tok_s":12345.0/' "$d/metrics.jsonl"
grep -q '"tok_s":12345.0' "$d/metrics.jsonl" || fail "could not mark metrics.jsonl: $(head -1 "$d/metrics.jsonl")"
expect_rc 0 "took over the lock of pid" "$FTC" train "${ARGS[@]}" --max-steps $((step + 3)) --out "$d" --resume
head -1 "$d/metrics.jsonl" | grep -q '"tok_s":12345.0' || fail "C did not continue run A's log: $(head -1 "$d/metrics.jsonl")"
tail -1 "$d/metrics.jsonl" | grep -q '"finished": *true' || fail "the resumed run did not finish: $(tail -1 "$d/metrics.jsonl")"
[ ! -e "$d/train.lock" ] || fail "a finished run left train.lock"

# a refused run on a directory it would have created leaves nothing behind; a failed one neither
expect_rc 2 "" "$FTC" train "${ARGS[@]}" --data "$T/missing.jsonl" --max-steps 2 --out "$T/new"
[ ! -e "$T/new" ] || fail "a failed run left $T/new behind: $(ls -A "$T/new")"
echo "ok"
