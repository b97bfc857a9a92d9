"""A soak of a running ftc serve (loopback only; bounded in time). Standard library only.

python3 bench/serve_soak.py URL PID [--minutes 10] [--clients 8] [--sample 30]

C client threads send requests back to back for the given time, a mix of what users do: streamed and whole
completions and chat completions, n=2, stop strings, logprobs, max_tokens from 1 to 200, and every 10th client
walking away (a streamed one after its first chunk, a whole one after 0.2 s) so the cancel path runs too. Every
--sample seconds it prints the server's RSS (VmRSS of PID) with the requests and errors so far. An error is any
answer that is not 200 with a well-formed body (a finish_reason per choice; streamed: [DONE] after it), or a
connection failure; a client that walked away is counted apart, not as an error.
Ends with the RSS first/last/max after the first sample and exits 1 on any error.
"""
import argparse
import http.client
import json
import random
import socket
import threading
import time
import urllib.parse

PROMPTS = ["Once upon a time", "The little dog", "Lily and Ben went to the park", "One day, a bird",
           "Tom had a red ball", "The sun was hot and", ""]


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def one(host, port, rnd):
    chat = rnd.random() < 0.3
    stream = rnd.random() < 0.5
    body = {"max_tokens": rnd.randint(1, 200), "temperature": rnd.choice([0, 0.7, 1.0]), "seed": rnd.randint(0, 1 << 30),
            "stream": stream}
    if chat:
        body["messages"] = [{"role": "user", "content": rnd.choice(PROMPTS) or "Hi"}]
    else:
        body["prompt"] = rnd.choice(PROMPTS)
    if rnd.random() < 0.2:
        body["n"] = 2
    if rnd.random() < 0.2:
        body["stop"] = rnd.choice([".", ["\n", " the "], "Lily"])
    if rnd.random() < 0.1:
        body.update({"logprobs": True, "top_logprobs": 3} if chat else {"logprobs": 3})
    if stream and rnd.random() < 0.3:
        body["stream_options"] = {"include_usage": True}
    leave = rnd.random() < 0.1
    path = "/v1/chat/completions" if chat else "/v1/completions"
    c = http.client.HTTPConnection(host, port, timeout=300)
    try:
        c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        if leave and not stream:
            time.sleep(0.2)
            c.sock.shutdown(socket.SHUT_RDWR)
            return "left", 0
        r = c.getresponse()
        if r.status != 200:
            r.read()
            return "error", f"status {r.status}"
        if not stream:
            d = json.loads(r.read())
            ok = len(d["choices"]) == body.get("n", 1) and all(ch["finish_reason"] in ("stop", "length")
                                                                for ch in d["choices"])
            return ("ok", d["usage"]["completion_tokens"]) if ok else ("error", f"body {d}")
        fins, done, tokens = 0, False, 0
        for line in r:
            if not line.startswith(b"data: "):
                continue
            data = line[6:].strip()
            if leave:
                return "left", 0
            if data == b"[DONE]":
                done = True
                break
            ch = json.loads(data)
            fins += sum(1 for x in ch["choices"] if x.get("finish_reason"))
            if ch.get("usage"):
                tokens = ch["usage"]["completion_tokens"]
        ok = done and fins == body.get("n", 1)
        return ("ok", tokens) if ok else ("error", f"stream done={done} finishes={fins}")
    except (OSError, http.client.HTTPException, ValueError) as e:
        return "error", repr(e)
    finally:
        c.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("pid", type=int)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--sample", type=float, default=30)
    a = ap.parse_args()
    u = urllib.parse.urlparse(a.url)
    assert u.hostname in ("127.0.0.1", "localhost", "::1"), "load only against loopback"
    end = time.time() + a.minutes * 60
    counts = {"ok": 0, "error": 0, "left": 0}
    tokens = [0]
    errors = []
    lock = threading.Lock()

    def worker(k):
        rnd = random.Random(k)
        while time.time() < end:
            kind, info = one(u.hostname, u.port, rnd)
            with lock:
                counts[kind] += 1
                if kind == "ok":
                    tokens[0] += info
                elif kind == "error" and len(errors) < 10:
                    errors.append(info)

    t0 = time.time()
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(a.clients)]
    for t in ts:
        t.start()
    print("| t s | requests ok | walked away | errors | output tokens | server RSS MB |")
    print("| --- | --- | --- | --- | --- | --- |")
    samples = []

    def sample():
        r = rss_kb(a.pid)
        with lock:
            row = (time.time() - t0, counts["ok"], counts["left"], counts["error"], tokens[0], r / 1024)
        samples.append(row)
        print("| %.0f | %d | %d | %d | %d | %.1f |" % row, flush=True)

    while time.time() < end:
        time.sleep(max(0, min(a.sample, end - time.time())))
        sample()
    for t in ts:
        t.join()
    sample()
    rss = [s[5] for s in samples]
    print(f"\n{counts['ok']} requests ok, {counts['left']} walked away, {counts['error']} errors in "
          f"{time.time() - t0:.0f} s; RSS first {rss[0]:.1f} MB, last {rss[-1]:.1f} MB, max {max(rss):.1f} MB")
    for e in errors:
        print("error:", e)
    raise SystemExit(1 if counts["error"] else 0)


if __name__ == "__main__":
    main()
