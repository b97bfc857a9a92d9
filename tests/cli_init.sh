#!/bin/bash
# ftc init driven as a user would: usage errors, bad configs, determinism by seed, --force, bf16 storage.
# The weights' statistics and ftc_model_load round trip are in tests/test_init.c.
set -u
ftc=${FTC_BIN:?FTC_BIN not set}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
expect() { # expect CODE DESCRIPTION CMD...: runs CMD, checks its exit code
  want=$1 what=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"
  got=$?
  if [ "$got" != "$want" ]; then
    echo "FAIL: $what: exit $got, want $want"; cat "$tmp/err"; fails=$((fails + 1))
  fi
}
stderr_has() {
  if ! grep -q -- "$1" "$tmp/err"; then echo "FAIL: stderr lacks '$1':"; cat "$tmp/err"; fails=$((fails + 1)); fi
}

cat >"$tmp/gpt2.json" <<'EOF'
{"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": 97, "n_positions": 32, "n_embd": 16,
 "n_layer": 2, "n_head": 2, "initializer_range": 0.02, "resid_pdrop": 0.0, "my_extra_key": "kept"}
EOF
cat >"$tmp/bert_nolabels.json" <<'EOF'
{"model_type": "bert", "vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
 "intermediate_size": 32, "max_position_embeddings": 16, "type_vocab_size": 2}
EOF
echo '{"model_type": "t5", "d_model": 8}' >"$tmp/t5.json"
echo '{"model_type": "gpt2", "n_embd": ' >"$tmp/broken.json"

expect 0 "--help" "$ftc" init --help
grep -q "Usage: ftc init" "$tmp/out" || { echo "FAIL: --help text"; fails=$((fails + 1)); }
expect 1 "no --config" "$ftc" init --out "$tmp/m"
stderr_has "--config CONFIG_JSON is required"
expect 1 "no --out" "$ftc" init --config "$tmp/gpt2.json"
expect 1 "bad --dtype" "$ftc" init --config "$tmp/gpt2.json" --out "$tmp/m" --dtype f16
stderr_has "f32 or bf16"
expect 1 "bad --seed" "$ftc" init --config "$tmp/gpt2.json" --out "$tmp/m" --seed -3
expect 1 "bad --task" "$ftc" init --config "$tmp/gpt2.json" --out "$tmp/m" --task translate
expect 1 "unknown flag" "$ftc" init --config "$tmp/gpt2.json" --out "$tmp/m" --layers 3
expect 2 "missing config file" "$ftc" init --config "$tmp/nope.json" --out "$tmp/m"
stderr_has "nope.json"
expect 2 "broken JSON" "$ftc" init --config "$tmp/broken.json" --out "$tmp/m"
stderr_has "broken.json"
expect 2 "unsupported model_type" "$ftc" init --config "$tmp/t5.json" --out "$tmp/m"
stderr_has "t5"
expect 2 "classify without id2label" "$ftc" init --config "$tmp/bert_nolabels.json" --out "$tmp/m" --task classify
stderr_has "id2label"
[ -e "$tmp/m/model.safetensors" ] && { echo "FAIL: a failed init left a model behind"; fails=$((fails + 1)); }

# Same seed, same bytes; another seed, other weights; no silent overwrite.
expect 0 "init seed 7" "$ftc" init --config "$tmp/gpt2.json" --out "$tmp/a" --seed 7
expect 0 "init seed 7 again" "$ftc" init --config "$tmp/gpt2.json" --out "$tmp/b" --seed 7
expect 0 "init seed 8" "$ftc" init --config "$tmp/gpt2.json" --out "$tmp/c" --seed 8
cmp -s "$tmp/a/model.safetensors" "$tmp/b/model.safetensors" || { echo "FAIL: seed 7 twice differs"; fails=$((fails + 1)); }
cmp -s "$tmp/a/model.safetensors" "$tmp/c/model.safetensors" && { echo "FAIL: seeds 7 and 8 give the same weights"; fails=$((fails + 1)); }
expect 2 "existing model without --force" "$ftc" init --config "$tmp/gpt2.json" --out "$tmp/a" --seed 8
stderr_has "--force"
cmp -s "$tmp/a/model.safetensors" "$tmp/b/model.safetensors" || { echo "FAIL: refused init changed the model"; fails=$((fails + 1)); }
expect 0 "--force" "$ftc" init --config "$tmp/gpt2.json" --out "$tmp/a" --seed 8 --force
cmp -s "$tmp/a/model.safetensors" "$tmp/c/model.safetensors" || { echo "FAIL: --force did not rewrite"; fails=$((fails + 1)); }

# config.json keeps the user's keys (transformers needs them to build the same model) and names the dtype.
grep -q '"my_extra_key": "kept"' "$tmp/a/config.json" || { echo "FAIL: config.json lost a key"; fails=$((fails + 1)); }
grep -q '"torch_dtype": "float32"' "$tmp/a/config.json" || { echo "FAIL: torch_dtype float32"; fails=$((fails + 1)); }

# bf16: every tensor stored as BF16, about half the bytes, config says bfloat16.
expect 0 "init bf16" "$ftc" init --config "$tmp/gpt2.json" --out "$tmp/h" --seed 7 --dtype bf16
grep -q '"torch_dtype": "bfloat16"' "$tmp/h/config.json" || { echo "FAIL: torch_dtype bfloat16"; fails=$((fails + 1)); }
header=$(head -c 4096 "$tmp/h/model.safetensors" | tr -c '[:print:]' ' ')
echo "$header" | grep -q '"F32"' && { echo "FAIL: bf16 file still has F32 tensors"; fails=$((fails + 1)); }
echo "$header" | grep -q '"BF16"' || { echo "FAIL: bf16 file has no BF16 tensor"; fails=$((fails + 1)); }
s32=$(stat -c %s "$tmp/b/model.safetensors") s16=$(stat -c %s "$tmp/h/model.safetensors")
[ $((s16 * 2)) -lt $((s32 + 8192)) ] && [ $((s16 * 2)) -gt $((s32 - 8192)) ] ||
  { echo "FAIL: bf16 file $s16 bytes, f32 $s32"; fails=$((fails + 1)); }

[ "$fails" = 0 ] && echo "cli_init: all passed"
exit $((fails > 0))
