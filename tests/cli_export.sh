#!/usr/bin/env bash
# ftc export as a user runs it: a LoRA run (causal-lm on stories260K, classify on the tiny BERT fixture),
# --format hf and --format peft, and both loaded back by ftc: `ftc logits`, `ftc generate` and `ftc eval` give
# the run's results from the HF export and from base + --adapter. Then the refusals and their exit codes.
# (transformers/PEFT themselves: tools/check_export.py, figures in docs/export.md.)
set -u
fail() { echo "FAIL: $*"; exit 1; }
FTC=${FTC_BIN:?}
SRC=${FTC_SOURCE_DIR:?}
FIX=$SRC/tests/fixtures
T=$(mktemp -d /tmp/ftc_cli_export.XXXXXX); trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT

. "$(dirname "$0")/lib/maxdiff.sh"
same_logits() { # same_logits LABEL FILE_A FILE_B [LIMIT]
  local d; d=$(maxdiff "$2" "$3")
  awk -v d="$d" -v lim="${4:-1e-5}" 'BEGIN { exit !(d + 0 == d && d <= lim) }' || fail "$1: max |diff| $d"
  echo "$1: max |diff| $d"
}
expect() { # expect RC MESSAGE args...
  local rc=$1 msg=$2; shift 2
  "$FTC" "$@" >"$T/out" 2>"$T/err"; local got=$?
  [ "$got" = "$rc" ] || { cat "$T/err"; fail "ftc $* exited $got, want $rc"; }
  [ -z "$msg" ] || grep -qF -- "$msg" "$T/err" || { cat "$T/err"; fail "ftc $*: stderr lacks '$msg'"; }
}

expect 0 "" export --help
grep -qF -- "--format hf|peft" "$T/out" || fail "export --help lacks --format"
expect 1 "missing --out" export --model x --format hf
expect 1 "unknown --format 'onnx'" export --model x --format onnx --out "$T/o"

# ---- classify: tiny BERT (pooler + classifier), LoRA on query,value + the head ----
awk 'BEGIN { srand(3); for (i = 0; i < 24; i++) { c = i % 3; s = "2";
  for (t = 0; t < 7; t++) s = s ", " (rand() < 0.5 ? 10 + c : 20 + int(rand() * 40));
  printf "{\"input_ids\": [%s, 3], \"label\": \"c%d\"}\n", s, c } }' >"$T/cls.jsonl"
expect 0 "" train --model "$FIX/models/bert_cls" --data "$T/cls.jsonl" --out "$T/run_cls" --task classify \
  --method lora --lora-r 4 --lora-alpha 8 --lr 0.02 --batch 8 --max-steps 4 --quiet
expect 0 "" export --model "$T/run_cls" --format hf --out "$T/cls_hf"
expect 0 "" export --model "$T/run_cls" --format peft --out "$T/cls_peft"
# a LoRA run keeps its adapter: RUNDIR/adapter is what export --format peft writes, byte for byte
for f in adapter_config.json adapter_model.safetensors; do
  cmp -s "$T/run_cls/adapter/$f" "$T/cls_peft/$f" || fail "run_cls/adapter/$f differs from export --format peft's"
done
for kv in '"BertForSequenceClassification"' '"problem_type": "single_label_classification"' '"num_labels": 3' \
          '"c1": 1' '"2": "c2"'; do
  grep -qF "$kv" "$T/cls_hf/config.json" || fail "hf config.json lacks $kv"
done
for kv in '"peft_type": "LORA"' '"task_type": "SEQ_CLS"' '"r": 4' '"lora_alpha": 8' '"bias": "none"' \
          '"fan_in_fan_out": false' '"classifier"' '"query"' '"value"'; do
  grep -qF "$kv" "$T/cls_peft/adapter_config.json" || fail "adapter_config.json lacks $kv"
done
head -c 20000 "$T/cls_peft/adapter_model.safetensors" | grep -qF "base_model.model.bert.encoder.layer.1.attention.self.value.lora_B.weight" ||
  fail "adapter lacks PEFT's name for layer 1's value lora_B"
printf '{"input_ids": [2, 10, 33, 10, 3]}\n{"input_ids": [2, 21, 12, 12, 40, 55, 3], "token_type_ids": [0, 0, 0, 1, 1, 1, 1]}\n' >"$T/probe_cls.jsonl"
"$FTC" logits --model "$T/run_cls" --ids "$T/probe_cls.jsonl" >"$T/l_run" || fail "logits run"
"$FTC" logits --model "$T/cls_hf" --ids "$T/probe_cls.jsonl" >"$T/l_hf" || fail "logits hf export"
"$FTC" logits --model "$FIX/models/bert_cls" --adapter "$T/cls_peft" --ids "$T/probe_cls.jsonl" >"$T/l_ad" || fail "logits adapter"
"$FTC" logits --model "$FIX/models/bert_cls" --ids "$T/probe_cls.jsonl" >"$T/l_base" || fail "logits base"
same_logits "classify: hf export vs run" "$T/l_run" "$T/l_hf"
same_logits "classify: base + --adapter vs run" "$T/l_run" "$T/l_ad"
d=$(maxdiff "$T/l_run" "$T/l_base"); awk -v d="$d" 'BEGIN { exit !(d > 1e-3) }' || fail "the run did not move the logits ($d)"
# merging a PEFT adapter into its base gives the same model as the run's
expect 0 "" export --model "$FIX/models/bert_cls" --adapter "$T/cls_peft" --format hf --out "$T/cls_merged"
"$FTC" logits --model "$T/cls_merged" --ids "$T/probe_cls.jsonl" >"$T/l_m" || fail "logits merged"
same_logits "classify: base + adapter merged by export vs run" "$T/l_run" "$T/l_m"
grep -qF '"c2"' "$T/cls_merged/config.json" || fail "merged export lost the adapter's label names"
# ftc eval on the HF export (a plain classifier directory): the run's accuracy and loss on the same data
num() { sed -n "s/.*\"$1\": *\([-0-9.e+]*\).*/\1/p" "$2" | head -1; }
near() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && d <= 1e-6) }'; }
"$FTC" eval --model "$T/run_cls" --data "$T/cls.jsonl" --json >"$T/e_run" || fail "eval run"
"$FTC" eval --model "$T/cls_hf" --data "$T/cls.jsonl" --json >"$T/e_hf" || fail "eval hf export"
for k in accuracy loss macro_f1 n_examples; do
  near "$(num $k "$T/e_run")" "$(num $k "$T/e_hf")" || fail "eval $k: run $(num $k "$T/e_run"), hf export $(num $k "$T/e_hf")"
done
grep -qF '"confusion"' "$T/e_hf" && grep -qF '"labels": ["c0", "c1", "c2"]' "$T/e_hf" || fail "eval hf json: $(cat "$T/e_hf")"
echo "classify: eval of hf export = eval of run (accuracy $(num accuracy "$T/e_hf"), loss $(num loss "$T/e_hf"))"
# --compare: the base column is the base encoder with the export's head, as for the run
"$FTC" eval --model "$T/run_cls" --data "$T/cls.jsonl" --compare "$FIX/models/bert_cls" --json | sed 's/.*"base": //' >"$T/c_run" || fail "compare run"
"$FTC" eval --model "$T/cls_hf" --data "$T/cls.jsonl" --compare "$FIX/models/bert_cls" --json >"$T/c_hf0" || fail "compare hf"
sed 's/.*"base": //' "$T/c_hf0" >"$T/c_hf"
near "$(num loss "$T/c_run")" "$(num loss "$T/c_hf")" || fail "compare base loss: run $(num loss "$T/c_run"), hf $(num loss "$T/c_hf")"
grep -qF "backbone with $T/cls_hf's classification head" "$T/c_hf0" || fail "compare note: $(cat "$T/c_hf0")"
# an unknown label names file, line and label; the label of a class index works
sed '5s/"c1"/"zz"/' "$T/cls.jsonl" >"$T/bad_label.jsonl"
expect 2 "bad_label.jsonl: line 5: label \"zz\" is not one of the labels of $T/cls_hf" eval --model "$T/cls_hf" --data "$T/bad_label.jsonl"
sed 's/"c\([0-9]\)"/\1/' "$T/cls.jsonl" >"$T/int_label.jsonl"
expect 0 "" eval --model "$T/cls_hf" --data "$T/int_label.jsonl" --json
[ "$(num loss "$T/out")" = "$(num loss "$T/e_hf")" ] || fail "integer labels as class indices: $(cat "$T/out")"
expect 1 "--max-len are for a plain model directory" eval --model "$T/run_cls" --data "$T/cls.jsonl" --max-len 8
expect 0 "" eval --model "$T/cls_hf" --data "$T/cls.jsonl" --max-len 4 --json
[ "$(num loss "$T/out")" != "$(num loss "$T/e_hf")" ] || fail "--max-len 4 did not cut the examples"

# ---- causal-lm: stories260K (has a tokenizer), LoRA on q_proj,v_proj ----
S=${FTC_SHARED_DATA:-}/models/stories260K-hf
if [ ! -f "$S/config.json" ]; then
  echo "SKIP causal-lm part: $S absent"
else
  awk 'BEGIN { srand(5); for (i = 0; i < 16; i++) { s = "1";
    for (t = 0; t < 24; t++) s = s ", " (300 + int(rand() * 100)); printf "{\"input_ids\": [%s]}\n", s } }' >"$T/lm.jsonl"
  expect 0 "" train --model "$S" --data "$T/lm.jsonl" --out "$T/run_lm" --task causal-lm --method lora \
    --lora-r 4 --lora-alpha 8 --lr 0.01 --batch 8 --max-steps 3 --quiet
  expect 0 "" export --model "$T/run_lm" --format hf --out "$T/lm_hf"
  expect 0 "" export --model "$T/run_lm" --format peft --out "$T/lm_peft"
  grep -qF '"LlamaForCausalLM"' "$T/lm_hf/config.json" || fail "lm hf architectures"
  [ -f "$T/lm_hf/tokenizer.json" ] || fail "hf export lacks the base's tokenizer.json"
  grep -qF '"task_type": "CAUSAL_LM"' "$T/lm_peft/adapter_config.json" || fail "lm adapter task_type"
  printf '{"input_ids": [1, 320, 350, 399, 301, 333]}\n' >"$T/probe_lm.jsonl"
  "$FTC" logits --model "$T/run_lm" --ids "$T/probe_lm.jsonl" >"$T/k_run" || fail "logits lm run"
  "$FTC" logits --model "$T/lm_hf" --ids "$T/probe_lm.jsonl" >"$T/k_hf" || fail "logits lm hf"
  "$FTC" logits --model "$S" --adapter "$T/lm_peft" --ids "$T/probe_lm.jsonl" >"$T/k_ad" || fail "logits lm adapter"
  same_logits "causal-lm: hf export vs run" "$T/k_run" "$T/k_hf"
  same_logits "causal-lm: base + --adapter vs run" "$T/k_run" "$T/k_ad" 5e-5 # logits ~10: float32 rounding
  for m in "--model $T/run_lm" "--model $T/lm_hf" "--model $S --adapter $T/lm_peft"; do
    "$FTC" generate $m --prompt "Once upon" --max-tokens 24 --temperature 0 >>"$T/gen" || fail "generate $m"
    echo >>"$T/gen"
  done
  for m in "--model $T/lm_hf" "--model $S --adapter $T/lm_peft"; do
    "$FTC" eval $m --data "$FIX/models/stories260k_story.txt" --json >>"$T/eval" || fail "eval $m"
  done
  [ "$(sort -u "$T/gen" | wc -l)" = 1 ] || { cat "$T/gen"; fail "generate differs between run, hf export and adapter"; }
  [ "$(cut -c1-22 "$T/eval" | sort -u | wc -l)" = 1 ] || { cat "$T/eval"; fail "eval loss differs"; }
  "$FTC" generate --model "$S" --prompt "Once upon" --max-tokens 24 --temperature 0 >"$T/gen_base"
  "$FTC" eval --model "$S" --data "$FIX/models/stories260k_story.txt" --json >"$T/eval_base"
  cmp -s "$T/eval_base" <(head -1 "$T/eval") && fail "the adapter did not change the eval loss"
  cmp -s "$T/gen_base" <(head -1 "$T/gen") && fail "the adapter did not change the generated text"
  printf 'Once upon\n/exit\n' | "$FTC" chat --model "$T/lm_hf" --chat-template plain --max-tokens 16 >"$T/chat1" || fail "chat hf"
  printf 'Once upon\n/exit\n' | "$FTC" chat --model "$S" --adapter "$T/lm_peft" --chat-template plain --max-tokens 16 \
    >"$T/chat2" || fail "chat adapter"
  [ -s "$T/chat1" ] && cmp -s "$T/chat1" "$T/chat2" || { cat "$T/chat1" "$T/chat2"; fail "chat differs between hf export and adapter"; }
  echo "causal-lm: generate, eval and chat agree for run, hf export, base + --adapter"
fi

# ---- refusals ----
expect 1 "not empty" export --model "$T/run_cls" --format hf --out "$T/cls_hf"
expect 0 "" export --model "$T/run_cls" --format hf --out "$T/cls_hf" --force
expect 0 "" train --model "$FIX/models/bert_cls" --data "$T/cls.jsonl" --out "$T/run_head" --task classify \
  --method head --lr 0.02 --batch 8 --max-steps 2 --quiet
expect 1 "trained with method head: it has no adapter" export --model "$T/run_head" --format peft --out "$T/x"
expect 1 "not a run directory" export --model "$FIX/models/bert_cls" --format peft --out "$T/x"
[ -e "$T/x" ] && fail "a failed export left $T/x"
expect 2 "no adapter_config.json" logits --model "$FIX/models/bert_cls" --adapter "$T/cls_hf" --ids "$T/probe_cls.jsonl"
echo "ok"
