#!/usr/bin/env bash
# Write faults inside checkpoint and model saves (issue 15): through the CLI's test hook FTC_TEST_IO_FAULT
# (the library's I/O hook, include/ftc/base.h), a write, an fsync or a rename of a save fails with ENOSPC or EIO.
# The run must stop with exit 2 and a message naming the file and the cause, leave the previous checkpoint as it
# was, and `--resume` must then finish with the same model bytes as a run that never failed.
set -u
FTC=${FTC_BIN:?FTC_BIN not set}
T=$(mktemp -d /tmp/ftc_cli_io_faults.XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/lib/expect.sh"
need_stories260k
M=$STORIES
story_pairs 8 "$T/lm.jsonl"
ARGS=(--model "$M" --data "$T/lm.jsonl" --task causal-lm --method full --batch 1 --max-len 16 --seed 3
      --save-every 2 --max-steps 8 --quiet)
"$FTC" train "${ARGS[@]}" --out "$T/ref" >/dev/null 2>"$T/err" || { cat "$T/err"; fail "reference run failed"; }
ref=$(md5sum <"$T/ref/model/model.safetensors")

n=0
# OP:FILE:SAVE:ERRNO — checkpoint faults in the third save (steps 2 and 4 saved before), the model's in its only one
for fault in write:checkpoint.ftc:3:ENOSPC fsync:checkpoint.ftc:3:EIO rename:checkpoint.ftc:3:ENOSPC \
             write:model.safetensors:1:ENOSPC fsync:model.safetensors:1:EIO rename:config.json:1:EIO \
             rename:/model:1:ENOSPC; do
  IFS=: read -r op file save errname <<<"$fault"
  msg="No space left on device"; [ "$errname" = EIO ] && msg="Input/output error"
  d="$T/run$n"; n=$((n + 1))
  FTC_TEST_IO_FAULT=$fault expect_rc 2 "$msg" "$FTC" train "${ARGS[@]}" --out "$d"
  grep -qF "${file#/}" "$T/err" || { cat "$T/err"; fail "$fault: the message does not name $file"; }
  if [ "$file" = checkpoint.ftc ]; then
    # the checkpoint of step 4 is still there, whole: it loads (resume) and the run ends as if nothing happened
    st=$(head -c 65536 "$d/checkpoint.ftc" 2>/dev/null | grep -ao '"state":{"step":[0-9]*')
    [ "$st" = '"state":{"step":4' ] || fail "$fault: checkpoint.ftc is not step 4's: '$st'"
    [ ! -d "$d/model" ] || fail "$fault: a model was written by a run that failed"
  fi
  expect_rc 0 "" "$FTC" train "${ARGS[@]}" --out "$d" --resume
  [ "$(md5sum <"$d/model/model.safetensors")" = "$ref" ] || fail "$fault: the resumed run's model differs from the reference"
  left=$(find "$d" -name '*.tmp.*' -o -name '*.old.*' | head -3)
  [ -z "$left" ] || fail "$fault: temporaries left after the resume: $left"
done
echo "ok: $n faults"
