#!/bin/sh
# Long sequences before/after (issue 22): SmolLM2-135M LoRA (all-linear, r 8, fp32, batch 1) training steps at
# T = 256, 1024, 2048 with and without gradient checkpointing, ftc eval at context 8192 (and with
# LONGSEQ_8192=1 one checkpointed LoRA step at T = 8192), for an old and a new build, alternating in one run. Peak RSS: train_bench's
# getrusage; eval's from /usr/bin/time. cpu_s/step: CPU seconds of the median step (all threads), a steadier
# measure of the work than wall time when the machine is shared.
#   sh bench/longseq_bench.sh OLD_BUILD_DIR NEW_BUILD_DIR SMOLLM2_HF_DIR SMOLLM2_GGUF LONG_TEXT
set -eu
old=$1 new=$2 model=$3 gguf=$4 text=$5
# timed steps: the median over steps 3..N
# (T = 2048: one step, the median of the one; the machine this first ran on was too loaded for more)
steps_for() { case $1 in 256) echo 4 ;; 1024) echo 3 ;; *) echo 1 ;; esac; }
export OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2
echo "# $(date -u '+%Y-%m-%d %H:%M UTC') $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores"
field() { sed -n "s/.*\"$1\": *\([-0-9.e+]*\).*/\1/p"; }
for T in 256 1024 2048; do
  for ck in 0 1; do
    for side in old new; do
      b=$old; [ $side = new ] && b=$new
      load=$(cut -d' ' -f1 /proc/loadavg)
      out=$("$b/train_bench" --model "$model" --batch 1 --seq $T --steps $(steps_for $T) --method lora --grad-checkpoint $ck 2>/dev/null) \
        || out='{"tokens_per_s": -1, "peak_rss_mb": -1}'
      echo "train T=$T ckpt=$ck $side: tokens/s $(echo "$out" | field tokens_per_s) cpu_s/step $(echo "$out" | field cpu_s_median) peak_rss_mb $(echo "$out" | field peak_rss_mb) activation_mb $(echo "$out" | field activation_mb) load $load"
    done
  done
done
for side in old new; do
  b=$old; [ $side = new ] && b=$new
  load=$(cut -d' ' -f1 /proc/loadavg)
  /usr/bin/time -f "%e %M" -o /tmp/longseq_time.$$ "$b/ftc" eval --model "$gguf" --data "$text" --context 8192 --json \
    >/tmp/longseq_eval.$$ 2>/tmp/longseq_err.$$ || true
  echo "eval ctx=8192 $side: $(cat /tmp/longseq_eval.$$) $(head -c 200 /tmp/longseq_err.$$ | tr '\n' ' ') time_s,maxrss_kb $(tail -1 /tmp/longseq_time.$$) load $load"
done
[ "${LONGSEQ_8192:-0}" = 1 ] && for side in old new; do
  b=$old; [ $side = new ] && b=$new
  load=$(cut -d' ' -f1 /proc/loadavg)
  out=$("$b/train_bench" --model "$model" --batch 1 --seq 8192 --steps 1 --method lora --grad-checkpoint 1 2>/tmp/longseq_err.$$) \
    || out="failed: $(tail -1 /tmp/longseq_err.$$)"
  echo "train T=8192 ckpt=1 $side: $out load $load"
done
rm -f /tmp/longseq_time.$$ /tmp/longseq_eval.$$ /tmp/longseq_err.$$
