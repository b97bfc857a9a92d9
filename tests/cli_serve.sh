#!/usr/bin/env bash
# ftc serve on loopback with stories260K: the official openai Python client (tests/serve_client.py: models,
# completions equal to ftc generate greedy and seeded, stop strings, chat with the template, 400/401 errors),
# curl for what a client library hides (401 with /health open, 404, 405, 413, malformed JSON, wrong types),
# then SIGTERM: the server exits 0 promptly.
set -u
FTC=${FTC_BIN:?}
SRC=${FTC_SOURCE_DIR:?}
M=${FTC_SHARED_DATA:?}/models/stories260K-hf
[ -f "$M/model.safetensors" ] || { echo "SKIP: $M not present"; exit 0; }
command -v curl >/dev/null || { echo "SKIP: curl not installed"; exit 0; }
T=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$T"' EXIT
. "$SRC/tests/lib/expect.sh"

printf 'sk-test-123\n' > "$T/key"
"$FTC" serve --model "$M" --port 0 --api-key-file "$T/key" --ctx 128 2> "$T/log" &
pid=$!
for _ in $(seq 100); do grep -q 'on http://' "$T/log" && break; sleep 0.1; done
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
"$FTC" generate --model "$M" --prompt "Once upon a time" --max-tokens 40 --temperature 0 > "$T/greedy.txt" || fail "generate"
"$FTC" generate --model "$M" --prompt "Once upon a time" --max-tokens 40 --temperature 0.8 --top-k 20 --seed 7 \
  > "$T/sampled.txt" || fail "generate sampled"
PY=
for p in python3 /usr/bin/python3; do "$p" -c 'import openai' 2>/dev/null && { PY=$p; break; }; done
if [ -n "$PY" ]; then
  "$PY" "$SRC/tests/serve_client.py" "$URL/v1" sk-test-123 stories260K-hf "$T" || fail "openai client"
else
  echo "SKIP (client part): the openai Python package is not installed (scripts/install-deps.sh installs it)"
fi

kill -TERM "$pid"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "the server still runs 10 s after SIGTERM"
wait "$pid"; rc=$?
pid=
[ "$rc" = 0 ] || { cat "$T/log"; fail "the server exited $rc after SIGTERM"; }
grep -q 'stopped' "$T/log" || fail "no 'stopped' in the log: $(cat "$T/log")"
echo "PASS"
