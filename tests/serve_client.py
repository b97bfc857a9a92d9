"""ftc serve through the official openai Python client (tests/cli_serve.sh runs it against a live server).

argv: BASE_URL API_KEY MODEL_ID EXPECT_DIR. EXPECT_DIR holds what `ftc generate` printed for the same prompts
(greedy.txt: "Once upon a time" 40 tokens at temperature 0; sampled.txt: temperature 0.8, top-k 20, seed 7).
Every check prints one line; any failure raises.
"""
import sys

import openai

base, key, model, expect = sys.argv[1:5]
greedy = open(f"{expect}/greedy.txt", encoding="utf-8").read()
sampled = open(f"{expect}/sampled.txt", encoding="utf-8").read()
client = openai.OpenAI(base_url=base, api_key=key, max_retries=0, timeout=60)


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAIL: {what}")
    print(f"ok: {what}")


ids = [m.id for m in client.models.list()]
check(ids == [model], f"models.list() = {ids}")

r = client.completions.create(model=model, prompt="Once upon a time", max_tokens=40, temperature=0)
check(r.choices[0].text == greedy, f"greedy completion equals ftc generate: {r.choices[0].text!r}")
check(r.choices[0].finish_reason == "length", "finish_reason length at max_tokens")
check(r.usage.completion_tokens == 40 and r.usage.prompt_tokens == 5 and r.usage.total_tokens == 45,
      f"usage {r.usage}")
check(r.object == "text_completion" and r.id.startswith("cmpl-"), "completion object and id")

r = client.completions.create(model=model, prompt="Once upon a time", max_tokens=40, temperature=0.8, seed=7,
                              extra_body={"top_k": 20})
check(r.choices[0].text == sampled, f"seeded sample equals ftc generate --seed 7 --top-k 20: {r.choices[0].text!r}")

# stop: the text ends right before the first occurrence, never contains it, finish_reason stop
stop = "Lily"
cut = greedy.index(stop)
r = client.completions.create(model=model, prompt="Once upon a time", max_tokens=40, temperature=0, stop=[stop, "zzz"])
check(r.choices[0].text == greedy[:cut] and r.choices[0].finish_reason == "stop",
      f"stop={stop!r}: {r.choices[0].text!r}, {r.choices[0].finish_reason}")
r = client.completions.create(model=model, prompt="Once upon a time", max_tokens=40, temperature=0, stop="park")
check(r.choices[0].text == greedy[:greedy.index("park")] and "park" not in r.choices[0].text, "stop as a string")

c = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Tell me a story."}],
                                   max_tokens=24, temperature=0)
ch = c.choices[0]
check(c.object == "chat.completion" and ch.message.role == "assistant" and len(ch.message.content) > 0,
      f"chat completion: {ch.message.content!r}")
check(ch.finish_reason in ("stop", "length") and c.usage.completion_tokens <= 24 and c.usage.prompt_tokens > 5,
      f"chat usage {c.usage}, finish {ch.finish_reason}")
c2 = client.chat.completions.create(model=model, messages=[{"role": "system", "content": "Be brief."},
                                                           {"role": "user", "content": [{"type": "text", "text": "Tell me a story."}]}],
                                    max_tokens=24, temperature=0)
check(c2.usage.prompt_tokens > c.usage.prompt_tokens, "a system message and content parts render")

for bad, what in [(lambda: client.completions.create(model="gpt-4", prompt="x"), "unknown model"),
                  (lambda: client.completions.create(model=model, prompt="x", temperature=5), "temperature 5"),
                  (lambda: client.chat.completions.create(model=model, messages=[]), "no messages"),
                  (lambda: client.completions.create(model=model, prompt="x " * 400), "prompt over the context")]:
    try:
        bad()
        check(False, f"{what} refused")
    except openai.BadRequestError as e:
        check(e.status_code == 400 and e.body and e.body.get("message"), f"{what}: 400 {e.body.get('message')!r}")

try:
    openai.OpenAI(base_url=base, api_key="wrong", max_retries=0).models.list()
    check(False, "a wrong key is refused")
except openai.AuthenticationError as e:
    check(e.status_code == 401 and e.body.get("type") == "authentication_error", "wrong key: 401 authentication_error")
