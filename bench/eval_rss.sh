#!/bin/bash
# Peak RSS of a LoRA run on SmolLM2-135M-Instruct from its Q4_1 GGUF (--base-dtype auto: the file's types) split
# into training and the end-of-run base|tuned comparison, and of `ftc eval RUNDIR --compare` afterwards (issue 18:
# the comparison reads the base in the run's own types, so the whole command peaks at training's).
#   bash bench/eval_rss.sh [FTC_BIN ...]     (default build/ftc; several binaries: one row each, alternated)
# Runs: the README's assistant command cut to --max-steps 2 ("readme"), and the same run as bench/RESULTS.md's
# "auto" section measured it (all linear layers, batch 4, max-len 160, --grad-checkpoint: a light training phase).
# VmHWM is sampled every 0.05 s: "train MB" is the high-water mark when the run prints its last step's line
# (training done), "compare MB" the highest VmRSS after the trained model is freed (VmRSS below half that mark); "whole MB" is /usr/bin/time's maximum resident set size.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
[ $# -gt 0 ] || set -- "$root/build/ftc"
G=${FTC_SMOLLM2_GGUF:-$(sh "$root/scripts/find-smollm2.sh")}
[ -f "$G" ] || { echo "SmolLM2 GGUF not found (scripts/find-smollm2.sh)" >&2; exit 2; }
tmp=$(mktemp -d /tmp/eval_rss.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export FTC_CACHE_DIR=${FTC_CACHE_DIR:-$tmp/cache}
"$1" inspect "$G" >/dev/null 2>&1 # the GGUF's conversion, cached outside the measured runs

# watch OUT cmd...: runs cmd (stdout OUT.out, stderr OUT.err, samples OUT.samples: "trained VmRSS VmHWM" in kB);
# sets W_TRAIN (VmHWM when training is done), W_CMP (highest VmRSS after the trained model is freed), W_WHOLE
# (time's maximum RSS)
watch() {
  local o=$1; shift
  /usr/bin/time -f "%M" -o "$o.time" "$@" >"$o.out" 2>"$o.err" &
  local tpid=$! pid="" done
  : >"$o.samples"
  while kill -0 $tpid 2>/dev/null; do
    [ -n "$pid" ] || pid=$(pgrep -P $tpid | head -1)
    if [ -n "$pid" ]; then
      done=0 # the last step's line (stderr, unbuffered) ends "took MM:SS": training is done
      grep -q ' took [0-9]' "$o.err" 2>/dev/null && done=1
      awk -v d=$done '/^VmRSS/ { r = $2 } /^VmHWM/ { h = $2 } END { if (r) print d, r, h }' /proc/$pid/status \
        >>"$o.samples" 2>/dev/null
    fi
    sleep 0.05
  done
  wait $tpid
  W_WHOLE=$(tail -1 "$o.time")
  W_TRAIN=$(awk '$1 == 1 { print $3; exit }' "$o.samples")
  # after training: the trained model is freed (VmRSS falls below half the high-water mark), then the comparison
  W_CMP=$(awk '$1 == 1 && !h { h = $3 } $1 == 1 && $2 < h / 2 { freed = 1 } freed && $2 > m { m = $2 }
               END { print m + 0 }' "$o.samples")
}
mb() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1000 }'; }
loss() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.4f / %.4f" % (d["base"]["loss"], d["tuned"]["loss"]))' "$1"; }

echo "load $(cut -d' ' -f1-3 /proc/loadavg); $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
echo "| binary | run | train MB | end-of-run compare MB | whole command MB | eval --compare MB | base / tuned loss |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for run in readme light; do
  for b in "$@"; do
    case $run in
      readme) args=(--data "$root/examples/assistant/train.jsonl" --val-split 0.1 --method lora --max-len 512 --max-steps 2) ;;
      light) args=(--data "$root/examples/smollm2/train.jsonl" --task causal-lm --method lora --lora-targets all-linear
                   --val-split 0.1 --max-steps 2 --batch 4 --max-len 160 --grad-checkpoint --seed 1) ;;
    esac
    out=$tmp/run-$run-$(basename "$b")
    watch "$tmp/w" "$b" train --model "$G" "${args[@]}" --out "$out"
    tr=$W_TRAIN cm=$W_CMP wh=$W_WHOLE
    l=$(loss "$out/eval.json") # the end-of-run comparison (validation split)
    watch "$tmp/e" "$b" eval "$out" --data "$root/examples/assistant/val.jsonl" --compare
    echo "| $b | $run | $(mb "${tr:-0}") | $(mb "$cm") | $(mb "$wh") | $(mb "$W_WHOLE") | $l |"
  done
done
echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
