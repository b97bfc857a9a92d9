"""ftc serve through the official openai Python client (tests/cli_serve.sh runs it against live servers).

argv: MODE BASE_URL API_KEY MODEL_ID EXPECT_DIR. MODE lm (stories260K): EXPECT_DIR holds what `ftc generate`
printed for the same prompts (greedy.txt: "Once upon a time" 40 tokens at temperature 0; sampled.txt:
temperature 0.8, top-k 20, seed 7; sampled_N.txt: seeds 8, 9) and logprobs.json (log-softmax of `ftc logits`
after the prompt and the first greedy tokens). MODE classify: classify.jsonl (`ftc classify --jsonl` of
texts.txt). MODE embed: embed.json (mean-pooled, normalised `ftc logits --task encode` states of texts.txt).
Every check prints one line; any failure raises.
"""
import base64
import json
import math
import struct
import sys

import openai

mode, base, key, model, expect = sys.argv[1:6]
client = openai.OpenAI(base_url=base, api_key=key, max_retries=0, timeout=60)


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAIL: {what}")
    print(f"ok: {what}")


if mode == "classify":
    texts = open(f"{expect}/texts.txt", encoding="utf-8").read().splitlines()
    want = [json.loads(l) for l in open(f"{expect}/classify.jsonl", encoding="utf-8")]
    r = client.post("/classify", body={"model": model, "input": texts}, cast_to=object)
    check(len(r["data"]) == len(texts) and r["usage"]["prompt_tokens"] > len(texts), f"classify: {len(texts)} results, usage {r['usage']}")
    for got, w in zip(r["data"], want):
        probs = {x["label"]: x["score"] for x in got["labels"]}
        check(got["label"] == w["label"] and abs(got["score"] - w["probability"]) < 2e-6 and
              all(abs(probs[t["label"]] - t["probability"]) < 2e-6 for t in w["top"]) and
              abs(sum(probs.values()) - 1) < 1e-5,
              f"{w['text']!r}: {got['label']} {got['score']:.6f} = ftc classify ({w['label']} {w['probability']})")
    r = client.post("/classify", body={"input": "How do I sign up?", "top": 1}, cast_to=object)
    check(len(r["data"][0]["labels"]) == 1, "top 1")
    try:
        client.completions.create(model=model, prompt="x")
        check(False, "completions on a classifier refused")
    except openai.BadRequestError as e:
        check("/v1/classify" in e.body["message"], f"completions on a classifier: 400 {e.body['message']!r}")
    raise SystemExit(0)

if mode == "embed":
    texts = open(f"{expect}/texts.txt", encoding="utf-8").read().splitlines()
    want = json.load(open(f"{expect}/embed.json"))
    for fmt in ("float", "base64", None):  # None: the client asks for base64 itself and decodes it
        kw = {"encoding_format": fmt} if fmt else {}
        r = client.embeddings.create(model=model, input=texts, **kw)
        for i, (d, w) in enumerate(zip(r.data, want)):
            if fmt == "base64":  # little-endian float32
                raw = base64.b64decode(d.embedding)
                d.embedding = list(struct.unpack(f"<{len(raw) // 4}f", raw))
            diff = max(abs(a - b) for a, b in zip(d.embedding, w))
            check(d.index == i and len(d.embedding) == len(w) == 384 and diff < 1e-5 and
                  abs(math.sqrt(sum(x * x for x in d.embedding)) - 1) < 1e-5,
                  f"{fmt} embedding {i} of {texts[i]!r}: unit length, max diff {diff:.1e} to mean-pooled ftc logits")
    check(r.usage.prompt_tokens > len(texts), f"embeddings usage {r.usage}")
    one = client.embeddings.create(model=model, input=texts[0]).data[0].embedding
    check(max(abs(a - b) for a, b in zip(one, want[0])) < 1e-5, "a single string input")
    raise SystemExit(0)

greedy = open(f"{expect}/greedy.txt", encoding="utf-8").read()
sampled = open(f"{expect}/sampled.txt", encoding="utf-8").read()

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

# ---- streaming ----
def stream_completion(**kw):
    chunks = list(client.completions.create(model=model, stream=True, **kw))
    check(len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1,
          f"{len(chunks)} completion chunks share id and created")
    return chunks

chunks = stream_completion(prompt="Once upon a time", max_tokens=40, temperature=0,
                           stream_options={"include_usage": True})
body = [c for c in chunks if c.choices]
text = "".join(c.choices[0].text for c in body)
check(text == greedy, f"streamed text = the non-streamed greedy text ({len(body)} chunks)")
check(all(c.choices[0].finish_reason is None for c in body[:-1]) and body[-1].choices[0].finish_reason == "length",
      "finish_reason only in the last chunk: length")
usage = [c for c in chunks if not c.choices]
check(len(usage) == 1 and chunks[-1] is usage[0] and usage[0].usage.completion_tokens == 40,
      f"one usage chunk with choices [] last: {usage[0].usage if usage else None}")
chunks = stream_completion(prompt="Once upon a time", max_tokens=40, temperature=0)
check(all(c.usage is None for c in chunks), "no usage chunk unless asked")

# a stop string is never streamed, nor a part of it held back and then shown
for stop in ["Lily", "park. One", "little girl named Lily"]:
    chunks = stream_completion(prompt="Once upon a time", max_tokens=40, temperature=0, stop=stop)
    pieces = [c.choices[0].text for c in chunks]
    text = "".join(pieces)
    check(text == greedy[:greedy.index(stop)] and stop not in text and chunks[-1].choices[0].finish_reason == "stop",
          f"streamed stop={stop!r}: {text!r} in {len(pieces)} chunks")

c_chunks = list(client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Tell me a story."}],
                                               max_tokens=24, temperature=0, stream=True,
                                               stream_options={"include_usage": True}))
full = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Tell me a story."}],
                                      max_tokens=24, temperature=0)
body = [c for c in c_chunks if c.choices]
check(body[0].choices[0].delta.role == "assistant" and all(c.choices[0].delta.role is None for c in body[1:]),
      "chat: role in the first delta only")
check("".join(c.choices[0].delta.content or "" for c in body) == full.choices[0].message.content,
      "chat: streamed content = non-streamed content")
check(body[-1].choices[0].finish_reason == full.choices[0].finish_reason and
      all(c.choices[0].finish_reason is None for c in body[:-1]), f"chat: finish_reason {full.choices[0].finish_reason} last")
check(not c_chunks[-1].choices and c_chunks[-1].usage.total_tokens == full.usage.total_tokens and
      c_chunks[-1].object == "chat.completion.chunk", "chat: the usage chunk")

# ---- n: choice i samples as ftc generate --seed 7+i ----
r = client.completions.create(model=model, prompt="Once upon a time", max_tokens=40, temperature=0.8, seed=7, n=3,
                              extra_body={"top_k": 20})
want = [sampled] + [open(f"{expect}/sampled_{i}.txt", encoding="utf-8").read() for i in (1, 2)]
check([c.index for c in r.choices] == [0, 1, 2] and [c.text for c in r.choices] == want,
      "n=3 with seed 7: choices equal ftc generate --seed 7, 8, 9")
check(0 < r.usage.completion_tokens <= 120 and r.usage.prompt_tokens == 5, f"n=3 usage {r.usage}")
chunks = stream_completion(prompt="Once upon a time", max_tokens=40, temperature=0.8, seed=7, n=3,
                           extra_body={"top_k": 20})
got = ["", "", ""]
for c in chunks:
    for ch in c.choices:
        got[ch.index] += ch.text
check(got == want, "n=3 streamed: each choice's text")

# ---- logprobs = log-softmax of ftc logits ----
lp = json.load(open(f"{expect}/logprobs.json"))
r = client.completions.create(model=model, prompt="Once upon a time", max_tokens=len(lp), temperature=0, logprobs=5)
L = r.choices[0].logprobs
check(len(L.tokens) == len(lp) and "".join(L.tokens) == r.choices[0].text, f"completion logprobs tokens {L.tokens}")
for i, want_pos in enumerate(lp):
    top = sorted(L.top_logprobs[i].values(), reverse=True)
    check(abs(L.token_logprobs[i] - want_pos[0]) < 1e-4 and all(abs(a - b) < 1e-4 for a, b in zip(top, want_pos[:5])),
          f"token {i} {L.tokens[i]!r}: logprob {L.token_logprobs[i]:.5f}, top 5 = log-softmax of ftc logits")
check(L.text_offset == [sum(len(t) for t in L.tokens[:i]) for i in range(len(L.tokens))], "text_offset")
c = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=5,
                                   temperature=0, logprobs=True, top_logprobs=3)
content = c.choices[0].logprobs.content
check(len(content) == c.usage.completion_tokens and all(len(t.top_logprobs) == 3 for t in content) and
      all(t.logprob == t.top_logprobs[0].logprob and bytes(t.bytes).decode() == t.token for t in content) and
      "".join(t.token for t in content) == c.choices[0].message.content,
      "chat logprobs: one entry per token, greedy token = top 1, bytes, tokens join to the content")
