#!/bin/bash
# ftc template as a user runs it: the model's own chat template (here SmolLM2's, from its GGUF, with GPT-2's
# tokenizer) renders a conversation as text and as tokens with trained flags; --chat-template picks a preset
# or a file; template errors name the template, line and column and exit 2; usage errors exit 1.
set -u
FTC=${FTC_BIN:-build/ftc}
src=${FTC_SOURCE_DIR:-.}
shared=${FTC_SHARED_DATA:-../shared/data}
T=$(mktemp -d /tmp/ftc_cli_template_XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$src/tests/lib/expect.sh"
[ -d "$shared/tokenizers/gpt2" ] || { echo "SKIP: no $shared/tokenizers/gpt2"; exit 0; }

M=$T/model
mkdir -p "$M"
cp "$shared/tokenizers/gpt2/tokenizer.json" "$M/"
tpl=$(cat "$src/tests/fixtures/jinja/templates/HuggingFaceTB-SmolLM2-135M-Instruct.jinja")
python3 -c 'import json,sys; json.dump({"chat_template": sys.argv[1], "eos_token": "<|endoftext|>"}, open(sys.argv[2], "w"))' \
  "$tpl" "$M/tokenizer_config.json" || fail "writing tokenizer_config.json"
cat > "$T/msgs.json" <<'JSON'
[{"role": "user", "content": "What is the capital of France?"},
 {"role": "assistant", "content": "Paris."},
 {"role": "user", "content": "Et du Japon ? 日本"},
 {"role": "assistant", "content": "Tokyo.", "weight": 0}]
JSON

"$FTC" template --help | grep -q "Usage: ftc template render --model DIR|RUNDIR --messages FILE" || fail "--help"
expect_rc 1 "unknown subcommand" "$FTC" template nope
expect_rc 1 "--messages FILE is required" "$FTC" template render --model "$M"
expect_rc 1 "unknown chat template 'nope'" "$FTC" template render --model "$M" --messages "$T/msgs.json" --chat-template nope

# the text: the model's own template (its default system prompt), exactly
expect_rc 0 "" "$FTC" template render --model "$M" --messages "$T/msgs.json" --add-generation-prompt
printf '%s' "<|im_start|>system
You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
<|im_start|>user
What is the capital of France?<|im_end|>
<|im_start|>assistant
Paris.<|im_end|>
<|im_start|>user
Et du Japon ? 日本<|im_end|>
<|im_start|>assistant
Tokyo.<|im_end|>
<|im_start|>assistant
" > "$T/want"
cmp -s "$T/out" "$T/want" || { diff "$T/out" "$T/want"; fail "rendered text"; }

# tokens: only the answer with weight 1 and its <|im_end|> are trained
expect_rc 0 "" "$FTC" template render --model "$M" --messages "$T/msgs.json" --tokens
trained=$(awk -F'\t' '$3 == "T" { printf "%s", $4 }' "$T/out")
# (GPT-2's tokenizer does not know <|im_end|>: it is bytes here, ".<" one token)
[ "$trained" = '"Paris"".<""|""im""_""end""|"">"' ] || fail "trained tokens: $trained"
awk -F'\t' 'NF != 4 || $1 != NR - 1 { bad = 1 } END { exit bad }' "$T/out" || fail "token lines: index id flag text"

# a preset and a file
expect_rc 0 "" "$FTC" template render --model "$M" --messages "$T/msgs.json" --chat-template zephyr
head -c 8 "$T/out" | grep -q "<|user|>" || fail "zephyr preset"
printf '{%% for m in messages %%}{{ m.role[0] }}:{{ m.content|length }};{%% endfor %%}\n' > "$T/t.jinja"
expect_rc 0 "" "$FTC" template render --model "$M" --messages "$T/msgs.json" --chat-template "$T/t.jinja"
[ "$(cat "$T/out")" = "u:30;a:6;u:16;a:6;" ] || fail "file template: $(cat "$T/out")"
# an object with more variables
printf '{"messages": [{"role": "user", "content": "hi"}], "tools": [{"name": "f"}]}' > "$T/obj.json"
printf '{{ tools|tojson }}|{{ messages[0].content }}' > "$T/t2.jinja"
expect_rc 0 "" "$FTC" template render --model "$M" --messages "$T/obj.json" --chat-template "$T/t2.jinja"
[ "$(cat "$T/out")" = '[{"name": "f"}]|hi' ] || fail "variables: $(cat "$T/out")"

# errors name the template, line and column
printf 'line one\n{{ messages[0].role.nope.x }}\n' > "$T/bad.jinja"
expect_rc 2 "$T/bad.jinja:2:25: 'str object' has no attribute 'nope'" \
  "$FTC" template render --model "$M" --messages "$T/msgs.json" --chat-template "$T/bad.jinja"
printf '{%% if messages %%}\n{{ raise_exception("Only user and assistant roles are supported!") }}\n{%% endif %%}' > "$T/raise.jinja"
expect_rc 2 "raise.jinja:2:4: Only user and assistant roles are supported!" \
  "$FTC" template render --model "$M" --messages "$T/msgs.json" --chat-template "$T/raise.jinja"
printf '{%% for m in messages %%}' > "$T/open.jinja"
expect_rc 2 "open.jinja:1:24: Unexpected end of template" \
  "$FTC" template render --model "$M" --messages "$T/msgs.json" --chat-template "$T/open.jinja"
printf '[{"role": "user"' > "$T/broken.json"
expect_rc 2 "broken.json:1:" "$FTC" template render --model "$M" --messages "$T/broken.json"

# show: the end of turn found by rendering
expect_rc 0 "" "$FTC" template show --model "$M"
grep -q '^end of turn: "<|im_end|>"$' "$T/out" || fail "show: $(head -3 "$T/out")"
echo "ok"
