#!/usr/bin/env bash
# ftc inspect on real checkpoints, and the promised exit codes on bad input.
set -u
fail() { echo "FAIL: $*"; exit 1; }
FTC=${FTC_BIN:?}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

if [ -n "${FTC_MINILM_DIR:-}" ]; then
  out=$("$FTC" inspect --json "$FTC_MINILM_DIR") || fail "inspect MiniLM exited $?"
  for kv in '"model_type": "bert"' '"n_layers": 6' '"hidden_size": 384' '"n_heads": 12' '"vocab_size": 30522' \
            '"n_params": 22713216'; do
    grep -qF "$kv" <<<"$out" || fail "MiniLM inspect lacks $kv: $out"
  done
  # the count asserted above is the sum of MiniLM's float tensor sizes; the model card says about 22.7M
  n=$(sed -n 's/.*"n_params": \([0-9]*\).*/\1/p' <<<"$out")
  [ "$n" -ge 22500000 ] && [ "$n" -le 22900000 ] || fail "MiniLM n_params $n outside 22.5M..22.9M"
  grep -qF '"safetensors_files": [' <<<"$out" && grep -qF '"vocab.txt"' <<<"$out" || fail "MiniLM files: $out"
  "$FTC" inspect "$FTC_MINILM_DIR" | grep -q "parameters      22713216 (22.7M)" || fail "MiniLM text output"
else
  echo "note: MiniLM not installed (scripts/install-deps.sh installs it); skipping that part"
fi
out=$("$FTC" inspect --json "$FTC_SHARED_DATA/models/stories260K-hf") || fail "inspect stories260K exited $?"
grep -qF '"n_kv_heads": 4' <<<"$out" || fail "stories260K kv heads: $out"
grep -qF '"n_params": 260032' <<<"$out" || fail "stories260K params: $out"

"$FTC" inspect >/dev/null 2>&1; [ $? -eq 1 ] || fail "no argument should be a usage error (1)"
"$FTC" inspect --help | grep -q "Usage: ftc inspect" || fail "--help"
printf 'x' > "$tmp/model.safetensors"
echo '{"model_type":"bert","num_hidden_layers":1,"hidden_size":8,"num_attention_heads":2,"intermediate_size":8,"vocab_size":4}' > "$tmp/config.json"
err=$("$FTC" inspect "$tmp" 2>&1); rc=$?
[ $rc -eq 2 ] || fail "truncated safetensors should exit 2, got $rc"
grep -q "model.safetensors: truncated: 1 bytes" <<<"$err" || fail "message: $err"
echo '{"model_type":"t5"}' > "$tmp/config.json"
err=$("$FTC" inspect "$tmp" 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q 'unsupported model_type "t5"' <<<"$err" || fail "t5: $rc $err"
"$FTC" inspect --bogus "$tmp" >/dev/null 2>&1; [ $? -eq 1 ] || fail "unknown option should exit 1"
"$FTC" inspect "$tmp" "$tmp" >/dev/null 2>&1; [ $? -eq 1 ] || fail "two directories should exit 1"
err=$("$FTC" inspect "$tmp/nope" 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "nope: cannot open" <<<"$err" || fail "missing dir: $rc $err"
# a header whose tensors overlap: exit 2 naming the file and both tensors
echo '{"model_type":"bert","num_hidden_layers":1,"hidden_size":8,"num_attention_heads":2,"intermediate_size":8,"vocab_size":4}' > "$tmp/config.json"
hdr='{"a.weight":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b.weight":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}'
{ printf "\\x$(printf %02x ${#hdr})\\x00\\x00\\x00\\x00\\x00\\x00\\x00"; printf '%s' "$hdr"; head -c 12 /dev/zero; } > "$tmp/model.safetensors"
err=$("$FTC" inspect --json "$tmp" 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "model.safetensors: tensor 'b.weight' overlaps tensor 'a.weight'" <<<"$err" || fail "overlap: $rc $err"
echo "cli_inspect: all checks passed"
