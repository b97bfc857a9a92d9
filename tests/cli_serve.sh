#!/usr/bin/env bash
# ftc serve on loopback with stories260K: the official openai Python client (tests/serve_client.py: models,
# completions equal to ftc generate greedy and seeded, stop strings, chat with the template, streaming (shared
# id, role first, finish_reason last, one usage chunk, stop strings never streamed), n, logprobs equal to the
# log-softmax of ftc logits, 400/401 errors), curl for what a client library hides (401 with /health open, 404,
# 405, 413, malformed JSON, wrong types), then SIGTERM: the server exits 0 promptly. With MiniLM: /v1/classify
# equals ftc classify on a head run, /v1/embeddings equals mean-pooled ftc logits --task encode.
set -u
FTC=${FTC_BIN:?}
SRC=${FTC_SOURCE_DIR:?}
M=${FTC_SHARED_DATA:?}/models/stories260K-hf
[ -f "$M/model.safetensors" ] || { echo "SKIP: $M not present"; exit 0; }
command -v curl >/dev/null || { echo "SKIP: curl not installed"; exit 0; }
T=$(mktemp -d)
pid=
P1= P4=
# every server this script started dies with it: a server left running keeps ctest's output pipe open (ctest then
# waits until its timeout)
trap 'for p in "$pid" "$P1" "$P4"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done; rm -rf "$T"' EXIT
. "$SRC/tests/lib/expect.sh"

printf 'sk-test-123\n' > "$T/key"
# --kv-type f32 here and in the ftc generate runs it is compared with: the client checks logprobs against ftc
# logits (a full forward in f32) to 1e-4, and completions byte for byte; the CLI's default f16 cache differs from
# f32 by about 1e-2 in the logits (its own check: "the KV cache" below)
"$FTC" serve --model "$M" --port 0 --api-key-file "$T/key" --ctx 128 --kv-type f32 2> "$T/log" &
pid=$!
for _ in $(seq 600); do grep -q 'on http://' "$T/log" && break; sleep 0.1; done
URL=$(grep -o 'http://127.0.0.1:[0-9]*' "$T/log" | head -1)
[ -n "$URL" ] || { cat "$T/log"; fail "the server did not start"; }
echo "server at $URL"
AUTH="Authorization: Bearer sk-test-123"

# req METHOD PATH [curl args]: body in $T/body, status echoed
req() { local m=$1 p=$2; shift 2; curl -s -o "$T/body" -w '%{http_code}' -X "$m" "$@" "$URL$p"; }
want() { # want STATUS TYPE METHOD PATH [curl args]: the status and, for errors, OpenAI's error shape with TYPE
  local st=$1 ty=$2; shift 2
  local got; got=$(req "$@")
  [ "$got" = "$st" ] || fail "$*: status $got, want $st: $(head -c 300 "$T/body")"
  if [ -n "$ty" ]; then
    python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["error"]; assert e["type"]==sys.argv[2] and e["message"], e' \
      "$T/body" "$ty" || fail "$*: body $(cat "$T/body")"
  fi
  echo "ok: $* -> $st $(head -c 160 "$T/body")"
}
want 200 "" GET /health
grep -q '"status":"ok"' "$T/body" || fail "/health body"
want 401 authentication_error GET /v1/models
want 401 authentication_error GET /v1/models -H "Authorization: Bearer nope"
want 200 "" GET /v1/models -H "$AUTH"
want 200 "" GET /v1/models/stories260K-hf -H "$AUTH"
want 404 not_found_error GET /v1/models/other -H "$AUTH"
want 404 not_found_error GET /v1/nothing -H "$AUTH"
want 404 not_found_error GET /elsewhere
want 405 invalid_request_error GET /v1/completions -H "$AUTH"
want 400 invalid_request_error POST /v1/completions -H "$AUTH" -d '{"prompt": "Once", '
want 400 invalid_request_error POST /v1/completions -H "$AUTH" -d '["prompt"]'
want 400 invalid_request_error POST /v1/completions -H "$AUTH" -d '{"prompt": 3}'
want 400 invalid_request_error POST /v1/completions -H "$AUTH" -d '{"prompt": "a", "max_tokens": "9"}'
want 400 invalid_request_error POST /v1/completions -H "$AUTH" -d '{"prompt": "a", "stop": [1]}'
want 400 invalid_request_error POST /v1/completions -H "$AUTH" -d '{"prompt": "a", "model": "gpt-4"}'
want 400 invalid_request_error POST /v1/chat/completions -H "$AUTH" -d '{"messages": [{"role": "wizard", "content": "x"}]}'
want 400 invalid_request_error POST /v1/chat/completions -H "$AUTH" -d '{"messages": "hello"}'
python3 -c 'import sys; sys.stdout.write("{\"prompt\": \"" + "a" * (2 << 20) + "\"}")' > "$T/big.json"
want 413 invalid_request_error POST /v1/completions -H "$AUTH" -H 'Content-Type: application/json' --data-binary @"$T/big.json"
# a body sent without Content-Length (chunked) is limited as it is read
want 413 invalid_request_error POST /v1/completions -H "$AUTH" -H 'Transfer-Encoding: chunked' --data-binary @"$T/big.json"
want 200 "" POST /v1/completions -H "$AUTH" -d '{"prompt": "Once upon a time", "max_tokens": 0}'
grep -q '"completion_tokens":0' "$T/body" || fail "max_tokens 0: $(cat "$T/body")"

# what ftc generate prints for the prompts the client sends
"$FTC" generate --model "$M" --prompt "Once upon a time" --max-tokens 40 --temperature 0 --kv-type f32 > "$T/greedy.txt" ||
  fail "generate"
"$FTC" generate --model "$M" --prompt "Once upon a time" --max-tokens 40 --temperature 0.8 --top-k 20 --seed 7 --kv-type f32 \
  > "$T/sampled.txt" || fail "generate sampled"
for s in 8 9; do
  "$FTC" generate --model "$M" --prompt "Once upon a time" --max-tokens 40 --temperature 0.8 --top-k 20 --seed $s --kv-type f32 \
    > "$T/sampled_$((s - 7)).txt" || fail "generate seed $s"
done
# log-softmax of ftc logits after the prompt and each of the first 6 greedy tokens: [logprob of the greedy
# token, then the 5 largest] per position
python3 - "$FTC" "$M" "$T" <<'PYEOF' || fail "logprobs expectations"
import json, math, subprocess, sys
ftc, m, t = sys.argv[1:4]
ids = [int(x) for x in subprocess.check_output([ftc, "tokenize", "--model", m, "Once upon a time"]).split()]
out = []
for _ in range(6):
    open(f"{t}/ids.jsonl", "w").write(json.dumps({"input_ids": ids}) + "\n")
    z = json.loads(subprocess.check_output([ftc, "logits", "--model", m, "--ids", f"{t}/ids.jsonl"]))[-1]
    mx = max(z)
    lse = mx + math.log(sum(math.exp(v - mx) for v in z))
    lp = sorted((v - lse for v in z), reverse=True)
    out.append(lp[:5])
    ids.append(max(range(len(z)), key=lambda i: (z[i], -i)))
json.dump(out, open(f"{t}/logprobs.json", "w"))
PYEOF
PY=
for p in python3 /usr/bin/python3; do "$p" -c 'import openai' 2>/dev/null && { PY=$p; break; }; done
if [ -n "$PY" ]; then
  "$PY" "$SRC/tests/serve_client.py" lm "$URL/v1" sk-test-123 stories260K-hf "$T" || fail "openai client"
else
  echo "SKIP (client part): the openai Python package is not installed (scripts/install-deps.sh installs it)"
fi

# the chat page at /, in a real browser: it sends a message as typed and streams the answer into the page
want 200 "" GET /
grep -q '<title>ftc serve</title>' "$T/body" || fail "the page"
CHROME=$(command -v chromium chromium-browser 2>/dev/null | head -1)
if [ -n "$CHROME" ]; then
  curl -s "$URL/v1/chat/completions" -H "$AUTH" -d '{"messages": [{"role": "user", "content": "Tell me a story."}],
    "temperature": 0, "max_tokens": 256}' > "$T/chat.json"
  # the key as the page keeps it (localStorage) is not there in a fresh profile: this server needs one, so the
  # page is checked against a second server without a key
  "$FTC" serve --model "$M" --port 0 --ctx 128 --kv-type f32 2> "$T/page.log" & # the first server's cache
  ppid=$!
  for _ in $(seq 600); do grep -qs "on http://" "$T/page.log" && break; sleep 0.1; done
  PURL=$(grep -o 'http://127.0.0.1:[0-9]*' "$T/page.log" | head -1)
  # the page shows the finished answer in its title too: read it from DevTools' page list while the browser runs
  "$CHROME" --headless --no-sandbox --disable-gpu --user-data-dir="$T/chrome" --remote-debugging-port=0 \
    "$PURL/?temperature=0&ask=Tell%20me%20a%20story." > /dev/null 2> "$T/chrome.err" &
  cpid=$!
  for _ in $(seq 600); do
    port=$(head -1 "$T/chrome/DevToolsActivePort" 2>/dev/null)
    [ -n "$port" ] && curl -s "http://127.0.0.1:$port/json/list" > "$T/pages.json" 2>/dev/null &&
      grep -q '"title": "answer: ' "$T/pages.json" && break
    sleep 0.2
  done
  kill "$cpid" 2>/dev/null; wait "$cpid" 2>/dev/null
  kill -TERM "$ppid"; wait "$ppid"
  python3 - "$T/pages.json" "$T/chat.json" <<'PYEOF' || fail "the page's answer: $(cat "$T/pages.json" "$T/chrome.err" | tail -5)"
import html, json, sys
pages = json.load(open(sys.argv[1]))
want = json.load(open(sys.argv[2]))["choices"][0]["message"]["content"]
title = [p["title"] for p in pages if p.get("type") == "page"][0]
assert title.startswith("answer: "), title
got = html.unescape(title[len("answer: "):])  # DevTools lists titles escaped, whitespace collapsed
assert got.split() == want.split() and len(want) > 40, f"page {got!r} != API {want!r}"
print(f"ok: headless Chromium typed 'Tell me a story.' and the page streamed {got[:50]!r}... = the API's answer")
PYEOF
else
  echo "SKIP (page in a browser): no chromium (scripts/install-deps.sh --report-check installs it)"
fi

kill -TERM "$pid"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "the server still runs 10 s after SIGTERM"
wait "$pid"; rc=$?
pid=
[ "$rc" = 0 ] || { cat "$T/log"; fail "the server exited $rc after SIGTERM"; }
grep -q 'stopped' "$T/log" || fail "no 'stopped' in the log: $(cat "$T/log")"

start() { # start NAME ARGS...: a server on a free port, its URL in $URL
  local name=$1; shift
  "$FTC" serve --port 0 "$@" 2> "$T/$name.log" &
  pid=$!
  for _ in $(seq 600); do grep -qs "on http://" "$T/$name.log" && break; sleep 0.1; done
  URL=$(grep -o 'http://127.0.0.1:[0-9]*' "$T/$name.log" | head -1)
  [ -n "$URL" ] || { cat "$T/$name.log"; fail "the $name server did not start"; }
}
stop() { kill -TERM "$pid"; wait "$pid" || fail "server exit $?"; pid=; }
# ---- slots: decoding together, the queue's bound, disconnects ----
start s1 --model "$M" --ctx 512
U1=$URL; P1=$pid
start s4 --model "$M" --ctx 512 --slots 4
U4=$URL; P4=$pid
start sq --model "$M" --ctx 512 --slots 1 --queue 1
python3 "$SRC/tests/serve_concurrency.py" "$U1" "$U4" "$URL" || { tail -5 "$T/sq.log"; fail "concurrency"; }
sleep 0.3
grep -q 'went away' "$T/sq.log" || fail "the disconnect is not in the log: $(tail -3 "$T/sq.log")"
gen=$(grep 'went away' -A0 "$T/sq.log" | head -1 | grep -o 'cmpl-[0-9a-f]*')
got=$(grep "$gen, prompt" "$T/sq.log" | grep -o '[0-9]* generated' | cut -d' ' -f1)
[ -n "$got" ] && [ "$got" -lt 500 ] || fail "the disconnected stream generated '$got' tokens: $(grep "$gen" "$T/sq.log")"
echo "ok: the disconnected stream stopped after $got of 500 tokens"
stop
kill -TERM "$P1" "$P4"; wait "$P1" || fail "s1 exit"; wait "$P4" || fail "s4 exit"

# ---- --precision bf16 / --base-dtype q8_0: the weights as ftc generate keeps them, so the same greedy text (200
# tokens, where the three differ from each other: the options must take effect); the options refused as generate
# refuses them, and for a model that is not causal-lm ----
greedy200() { curl -s "$URL/v1/completions" -d '{"prompt": "Once upon a time", "max_tokens": 200, "temperature": 0}' |
  python3 -c 'import json, sys; sys.stdout.write(json.load(sys.stdin)["choices"][0]["text"])'; }
"$FTC" generate --model "$M" --prompt "Once upon a time" --max-tokens 200 > "$T/g32" || fail "generate fp32"
for w in "--precision bf16" "--base-dtype q8_0"; do
  # shellcheck disable=SC2086
  "$FTC" generate --model "$M" --prompt "Once upon a time" --max-tokens 200 $w > "$T/gw" || fail "generate $w"
  cmp -s "$T/g32" "$T/gw" && fail "generate $w gives the fp32 text: the comparison below would not tell"
  # shellcheck disable=SC2086
  start prec --model "$M" --ctx 256 $w
  greedy200 > "$T/sw" || fail "serve $w: no completion"
  stop
  cmp -s "$T/gw" "$T/sw" || fail "serve $w greedy != ftc generate $w: $(head -c 200 "$T/sw") | $(head -c 200 "$T/gw")"
  grep -q "weights: ${w#--* }" "$T/prec.log" || fail "serve $w: the start line does not say the weights: $(cat "$T/prec.log")"
  echo "ok: ftc serve $w: 200 greedy tokens = ftc generate $w ($(wc -c < "$T/sw") bytes, differs from fp32)"
done
"$FTC" serve --model "$M" --port 0 --precision fp16 2> "$T/e"; [ $? = 1 ] && grep -q "fp32 or bf16" "$T/e" ||
  fail "--precision fp16: $(cat "$T/e")"
"$FTC" serve --model "$M" --port 0 --base-dtype q9 2> "$T/e"; [ $? = 1 ] && grep -q "q8_0, q4_0" "$T/e" ||
  fail "--base-dtype q9: $(cat "$T/e")"
"$FTC" serve --model "$M" --port 0 --task encode --precision bf16 2> "$T/e"; [ $? = 1 ] && grep -q "causal-lm" "$T/e" ||
  fail "--task encode --precision bf16: $(cat "$T/e")"
echo "ok: --precision fp16, --base-dtype q9 and bf16 for an encoder are usage errors"

# ---- the KV cache: f16 by default (as ftc generate's), f32 with --kv-type f32, q8_0 with --kv-type q8_0; each as
# ftc generate's, on a prompt whose 200 greedy tokens differ between the caches (the option must take effect) ----
kvgreedy() { curl -s "$URL/v1/completions" -d '{"prompt": "One day", "max_tokens": 200, "temperature": 0}' |
  python3 -c 'import json, sys; sys.stdout.write(json.load(sys.stdin)["choices"][0]["text"])'; }
"$FTC" generate --model "$M" --prompt "One day" --max-tokens 200 > "$T/gk16" || fail "generate, default cache"
"$FTC" generate --model "$M" --prompt "One day" --max-tokens 200 --kv-type f32 > "$T/gk32" || fail "generate --kv-type f32"
"$FTC" generate --model "$M" --prompt "One day" --max-tokens 200 --kv-type q8_0 > "$T/gk8" || fail "generate --kv-type q8_0"
cmp -s "$T/gk16" "$T/gk32" && fail "the f16 and f32 caches give the same text: the comparisons below would not tell"
cmp -s "$T/gk16" "$T/gk8" && fail "the f16 and q8_0 caches give the same text: the comparisons below would not tell"
start kv16 --model "$M" --ctx 256
kvgreedy > "$T/sk16" || fail "serve, default cache: no completion"
stop
start kv32 --model "$M" --ctx 256 --kv-type f32
kvgreedy > "$T/sk32" || fail "serve --kv-type f32: no completion"
stop
start kv8 --model "$M" --ctx 256 --kv-type q8_0
kvgreedy > "$T/sk8" || fail "serve --kv-type q8_0: no completion"
stop
cmp -s "$T/gk16" "$T/sk16" || fail "serve's default cache != ftc generate's: $(head -c 300 "$T/sk16") | $(head -c 300 "$T/gk16")"
cmp -s "$T/gk32" "$T/sk32" || fail "serve --kv-type f32 != ftc generate --kv-type f32: $(head -c 300 "$T/sk32")"
cmp -s "$T/gk8" "$T/sk8" || fail "serve --kv-type q8_0 != ftc generate --kv-type q8_0: $(head -c 300 "$T/sk8")"
echo "ok: ftc serve's KV cache: f16 by default, f32 and q8_0 with --kv-type, each = ftc generate's (200 greedy tokens)"

# ---- a real instruct model from a GGUF file: SmolLM2-135M-Instruct answers and stops at its end of turn ----
G=$(sh "$SRC/scripts/find-smollm2.sh" 2>/dev/null)
if [ -n "$G" ] && [ -n "$PY" ]; then
  start smollm2 --model "$G" --name smollm2 --ctx 256
  "$PY" - "$URL/v1" <<'PYEOF' || fail "SmolLM2 chat"
import sys, openai
c = openai.OpenAI(base_url=sys.argv[1], api_key="none", max_retries=0, timeout=300)
r = c.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "What is the capital of France?"}],
                              temperature=0, max_tokens=30)
ch = r.choices[0]
assert ch.message.content == "The capital of France is Paris." and ch.finish_reason == "stop", (ch, r.usage)
print(f"ok: SmolLM2 (GGUF) chat: {ch.message.content!r}, finish_reason stop at <|im_end|>, usage {r.usage.total_tokens}")
PYEOF
  stop
else
  echo "SKIP (GGUF): SmolLM2 or the openai package is not installed"
fi

# ---- the scheduler, deterministically (tests/serve_lifecycle.py): SmolLM2 decodes slowly enough that a request
# holds its slot while the test walks through the states that /health reports ----
if [ -n "$G" ]; then
  start life1 --model "$G" --name smollm2 --ctx 1600 --slots 1 --queue 3
  python3 "$SRC/tests/serve_lifecycle.py" queue "$URL" || { tail -5 "$T/life1.log"; fail "queue and disconnects"; }
  stop
  # the two clients that left (one waiting, one decoding, not streamed) end as 499 with fewer tokens than asked
  grep -- '-> 499' "$T/life1.log" > "$T/gone" || true
  [ "$(wc -l < "$T/gone")" = 2 ] || fail "want two requests ended by their clients: $(cat "$T/life1.log")"
  awk '{ for (i = 1; i < NF; i++) if ($(i + 1) == "generated") n = $i; if (n >= 1500) bad = 1 } END { exit bad }' \
    "$T/gone" || fail "a request whose client left ran to its end: $(cat "$T/gone")"
  echo "ok: the log: $(sed 's/.*ftc serve: //' "$T/gone" | tr '\n' ';')"
  start life2 --model "$G" --name smollm2 --ctx 1600 --slots 2 --queue 1
  python3 "$SRC/tests/serve_lifecycle.py" sigterm "$URL" "$pid" || { tail -5 "$T/life2.log"; fail "SIGTERM"; }
  wait "$pid"; rc=$?; pid=
  [ "$rc" = 0 ] || { cat "$T/life2.log"; fail "the server exited $rc after SIGTERM with requests in flight"; }
  grep -q 'stopped' "$T/life2.log" || fail "no 'stopped' in the log: $(cat "$T/life2.log")"
  grep -q 'already stopping' "$T/life2.log" || fail "the second SIGTERM is not in the log: $(cat "$T/life2.log")"
  echo "ok: SIGTERM twice with requests in flight: exit 0"
else
  echo "SKIP (queue, disconnects, SIGTERM in flight): SmolLM2 is not installed"
fi

# ---- a classifier and an encoder (MiniLM) ----
MINI=${FTC_MINILM_DIR:-}
if [ -z "$MINI" ] || [ ! -f "$MINI/config.json" ] || [ -z "$PY" ]; then
  echo "SKIP (classify, embeddings): MiniLM or the openai package is not installed"
  echo PASS; exit 0
fi
grep -E '"(create_account|end_ride|unlock_bike)"' "$SRC/examples/faq/train.jsonl" | head -48 > "$T/cls.jsonl"
"$FTC" train --model "$MINI" --data "$T/cls.jsonl" --out "$T/run" --task classify --method head --max-steps 6 \
  --batch 8 --lr 5e-2 --quiet > /dev/null 2> "$T/train.err" || fail "train: $(cat "$T/train.err")"
printf '%s\n' "How do I sign up?" "I want to end my ride" "the bike will not unlock" "" "é ü 日本" > "$T/texts.txt"
"$FTC" classify --model "$T/run" --jsonl --file "$T/texts.txt" > "$T/classify.jsonl" 2>/dev/null || true
[ "$(wc -l < "$T/classify.jsonl")" = 4 ] || fail "ftc classify: $(cat "$T/classify.jsonl")" # (blank lines skipped)
grep -v '^$' "$T/texts.txt" > "$T/t" && mv "$T/t" "$T/texts.txt"
start cls --model "$T/run"
"$PY" "$SRC/tests/serve_client.py" classify "$URL/v1" none run "$T" || fail "classify client"
stop
# embeddings: mean over the tokens of ftc logits' last hidden states, L2-normalised
"$FTC" tokenize --model "$MINI" --file "$T/texts.txt" > "$T/ids.txt" || fail "tokenize"
python3 - "$T" <<'PYEOF' || fail "ids"
import json, sys
t = sys.argv[1]
with open(f"{t}/ids.jsonl", "w") as f:
    for l in open(f"{t}/ids.txt"):
        f.write(json.dumps({"input_ids": [int(x) for x in l.split()]}) + "\n")
PYEOF
"$FTC" logits --model "$MINI" --task encode --ids "$T/ids.jsonl" > "$T/hidden.jsonl" || fail "logits"
python3 - "$T" <<'PYEOF' || fail "embeddings expectations"
import json, math, sys
t = sys.argv[1]
out = []
for l in open(f"{t}/hidden.jsonl"):
    h = json.loads(l)
    e = [sum(r[c] for r in h) / len(h) for c in range(len(h[0]))]
    n = math.sqrt(sum(x * x for x in e))
    out.append([x / n for x in e])
json.dump(out, open(f"{t}/embed.json", "w"))
PYEOF
start enc --model "$MINI" --api-key k2
"$PY" "$SRC/tests/serve_client.py" embed "$URL/v1" k2 "$(basename "$MINI")" "$T" || fail "embeddings client"
stop
echo "PASS"
