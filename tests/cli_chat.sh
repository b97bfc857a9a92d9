#!/usr/bin/env bash
# ftc chat driven through a pipe: the first answer equals ftc generate on the template's rendering, the
# conversation is kept (the second turn's prompt holds the first, reused from the KV cache), /reset and /exit,
# the template chosen from a run directory, errors and exit codes.
set -u
fail() { echo "FAIL: $*"; exit 1; }
FTC=${FTC_BIN:?}
M=${FTC_SHARED_DATA:?}/models/stories260K-hf
[ -f "$M/config.json" ] || { echo "SKIP: $M not present"; exit 0; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# plain template (stories260K has no chat template): "### Question:\n...\n\n### Answer:\n", BOS from the tokenizer
a=$(printf 'Hi\n' | "$FTC" chat --model "$M" --max-tokens 30 2> "$tmp/e") || fail "chat exited $?: $(cat "$tmp/e")"
grep -q "using 'plain'" "$tmp/e" || fail "no note about the plain template: $(cat "$tmp/e")"
b=$("$FTC" generate --model "$M" --prompt $'### Question:\nHi\n\n### Answer:\n' --max-tokens 30) || fail "generate"
[ -n "$a" ] && [ "$a" = "$b" ] || fail "chat answer '$a' differs from generate on the rendering '$b'"

# --precision bf16 and --base-dtype q8_0 reach chat as they do generate: the same answer on the same rendering
for w in "--precision bf16" "--base-dtype q8_0"; do
  wa=$(printf 'Hi\n' | "$FTC" chat --model "$M" --max-tokens 12 $w 2> "$tmp/e") || fail "chat $w exited $?: $(cat "$tmp/e")"
  wb=$("$FTC" generate --model "$M" --prompt $'### Question:\nHi\n\n### Answer:\n' --max-tokens 12 $w) || fail "generate $w"
  [ -n "$wa" ] && [ "$wa" = "$wb" ] || fail "chat $w answer '$wa' differs from generate '$wb'"
done

# conversation kept, /reset, /exit (lines after it are not read)
printf 'Hi\nWhat did you say?\n/reset\nHi\n/exit\nHi again\n' |
  "$FTC" chat --model "$M" --max-tokens 30 --stats > "$tmp/out" 2> "$tmp/err" || fail "multi-turn: $(cat "$tmp/err")"
[ "$(grep -c '^ftc chat: prompt' "$tmp/err")" -eq 3 ] || fail "expected 3 answers: $(cat "$tmp/err")"
grep -q "conversation cleared" "$tmp/err" || fail "/reset not acknowledged"
read -r p1 r1 < <(sed -n 's/^ftc chat: prompt \([0-9]*\) tokens (\([0-9]*\) reused.*/\1 \2/p' "$tmp/err" | sed -n 1p)
read -r p2 r2 < <(sed -n 's/^ftc chat: prompt \([0-9]*\) tokens (\([0-9]*\) reused.*/\1 \2/p' "$tmp/err" | sed -n 2p)
read -r p3 r3 < <(sed -n 's/^ftc chat: prompt \([0-9]*\) tokens (\([0-9]*\) reused.*/\1 \2/p' "$tmp/err" | sed -n 3p)
[ "$r1" -eq 0 ] && [ "$p2" -gt $((p1 + 10)) ] && [ "$r2" -ge "$p1" ] ||
  fail "turn 2 should hold turn 1 and reuse its cache: turn 1 $p1/$r1, turn 2 $p2/$r2"
[ "$p3" -eq "$p1" ] && [ "$r3" -eq 0 ] || fail "after /reset the prompt should be turn 1's again: $p3/$r3 vs $p1"
# answers: turn 1 and turn 3 (after /reset) are the same text
python3 - "$tmp/out" "$a" <<'PY' || fail "answers after /reset differ"
import sys
out = open(sys.argv[1], encoding="utf-8").read()
first = sys.argv[2]
assert out.startswith(first + "\n"), "turn 1"
assert out.endswith("\n" + first + "\n"), "turn 3"
PY

# a system message and another template change the prompt
printf 'Hi\n' | "$FTC" chat --model "$M" --max-tokens 5 --chat-template chatml --system "Be brief." --stats \
  > /dev/null 2> "$tmp/e2" || fail "chatml"
grep -q "ftc chat: prompt" "$tmp/e2" || fail "chatml stats: $(cat "$tmp/e2")"

# a run directory: its model/ and the template it was trained with (chat_template.json); the tokenizer comes
# from the base model the run names
R="$tmp/run"; mkdir -p "$R/model"
cp "$M/config.json" "$M/model.safetensors" "$R/model/"
printf '{"task": "causal-lm", "model": "%s", "template": "chatml"}\n' "$M" > "$R/config.resolved.json"
printf '{"name": "zephyr"}\n' > "$R/chat_template.json"
r=$(printf 'Hi\n' | "$FTC" chat --model "$R" --max-tokens 20 2> "$tmp/e3") || fail "run dir: $(cat "$tmp/e3")"
z=$(printf 'Hi\n' | "$FTC" chat --model "$M" --max-tokens 20 --chat-template zephyr 2> /dev/null) || fail "zephyr"
[ "$r" = "$z" ] || fail "run dir should chat with its zephyr template: '$r' vs '$z'"
g=$("$FTC" generate --model "$R" --prompt "Once upon a time" --max-tokens 10) || fail "generate on a run dir"
h=$("$FTC" generate --model "$M" --prompt "Once upon a time" --max-tokens 10) || fail "generate"
[ "$g" = "$h" ] || fail "run dir generate '$g' vs '$h'"
printf '{"task": "classify", "model": "%s"}\n' "$M" > "$R/config.resolved.json"
printf 'Hi\n' | "$FTC" chat --model "$R" > /dev/null 2> "$tmp/e4"; [ $? -eq 1 ] || fail "classify run should exit 1"
grep -q "trained for classify" "$tmp/e4" || fail "classify run message: $(cat "$tmp/e4")"

# errors
"$FTC" chat --help | grep -q "^Usage: ftc chat" || fail "--help"
"$FTC" chat < /dev/null > /dev/null 2>&1; [ $? -eq 1 ] || fail "missing --model should exit 1"
"$FTC" chat --model "$M" --chat-template nope < /dev/null > /dev/null 2> "$tmp/e5"; [ $? -eq 1 ] || fail "bad template"
grep -q "unknown chat template 'nope'" "$tmp/e5" || fail "bad template message: $(cat "$tmp/e5")"
out=$("$FTC" chat --model "$M" < /dev/null) || fail "empty input should exit 0"
[ -z "$out" ] || fail "empty input printed '$out'"
echo "cli_chat: ok"
