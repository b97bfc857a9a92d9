"""ftc serve with several slots (tests/cli_serve.sh runs it; standard library only).

argv: URL1 URL4 URLQ: servers with --slots 1, --slots 4, and --slots 1 --queue 1, all stories260K --ctx 512.
1. The same requests (greedy, and sampled with a seed) give identical texts sent one by one to the 1-slot
   server and all at once to the 4-slot one, where they decode together.
2. Beyond one busy slot and one waiting request, the server answers 503 server_busy; the rest complete.
3. A streaming client that disconnects frees its slot: the next request is served at once.
"""
import http.client
import json
import sys
import threading
import time
import urllib.parse

url1, url4, urlq = sys.argv[1:4]


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAIL: {what}")
    print(f"ok: {what}")


def post(url, body):
    u = urllib.parse.urlparse(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    data = json.loads(r.read())
    c.close()
    return r.status, data


def all_at_once(url, bodies):
    out = [None] * len(bodies)
    go = threading.Barrier(len(bodies))

    def run(i):
        go.wait()
        out[i] = post(url, bodies[i])

    ts = [threading.Thread(target=run, args=(i,)) for i in range(len(bodies))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


prompts = ["Once upon a time", "The little dog", "Lily and Ben went", "One day, a bird"]
bodies = [{"prompt": p, "max_tokens": 60, "temperature": t, "seed": 11, "top_k": 40}
          for p in prompts for t in (0, 0.9)]
one = [post(url1, b) for b in bodies]
t0 = time.time()
four = all_at_once(url4, bodies)
check(all(s == 200 for s, _ in one + four), "every request 200")
same = [a["choices"][0]["text"] == b["choices"][0]["text"] for (_, a), (_, b) in zip(one, four)]
check(all(same), f"{len(bodies)} requests (greedy and seeded): identical text with 1 slot one by one and 4 slots "
      f"all at once ({time.time() - t0:.2f} s)")
n = all_at_once(url4, [dict(bodies[1], n=3)] * 2)
check(all(d["choices"][0]["text"] == one[1][1]["choices"][0]["text"] for _, d in n), "n=3 at once: choice 0 as alone")

long = {"prompt": "Once upon a time", "max_tokens": 500, "temperature": 0}
res = all_at_once(urlq, [long] * 16)
busy = [d for s, d in res if s == 503]
done = [d for s, d in res if s == 200]
# 16 at once race each other and the engine (a request counts as waiting until the engine gives it a slot, so
# under load all 15 others once found the queue full): only the bound is asserted here; the waiting request's
# fate is tested step by step, with /health, in tests/serve_lifecycle.py
check(len(busy) + len(done) == 16 and len(busy) >= 1 and len(done) >= 1,
      f"1 slot, queue 1, 16 at once: {len(done)} served, {len(busy)} got 503")
check(all(d["error"]["type"] == "server_error" and d["error"]["code"] == "server_busy" for d in busy),
      f"503 in OpenAI's shape: {busy[0]['error']['message']!r}")
check(all(d["usage"]["completion_tokens"] == 500 for d in done), "the served ones complete")

# a streaming client that goes away after the first chunk
u = urllib.parse.urlparse(urlq)
c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
c.request("POST", "/v1/completions", json.dumps(dict(long, stream=True)), {"Content-Type": "application/json"})
r = c.getresponse()
first = r.fp.readline()
check(first.startswith(b"data: {"), "stream started")
r.close()
c.close()
t0 = time.time()
s, d = post(urlq, dict(long, max_tokens=5))
check(s == 200 and d["usage"]["completion_tokens"] == 5, f"after a disconnect the slot serves the next request ({time.time() - t0:.3f} s)")
