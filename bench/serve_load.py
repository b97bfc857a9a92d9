"""Load on a running ftc serve (loopback only; bounded in requests and time). Standard library only.

python3 bench/serve_load.py URL [--requests N] [--max-tokens T] [--levels 1,4,16] [--no-stream]

For each concurrency level C, C client threads send N streamed /v1/completions requests between them
(temperature 0.8, a seed per request, prompts cycling over a few story openings), and the table gets:
requests/s, output tokens/s (completion_tokens from the usage chunk over the wall time of the level),
p50/p99 latency and p50/p99 time to first token (first chunk with text), and errors. Prints a Markdown table.
"""
import argparse
import http.client
import json
import statistics
import threading
import time
import urllib.parse

PROMPTS = ["Once upon a time", "The little dog", "Lily and Ben went to the park", "One day, a bird",
           "Tom had a red ball", "The sun was hot and"]


def one(host, port, body):
    t0 = time.perf_counter()
    c = http.client.HTTPConnection(host, port, timeout=300)
    c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        r.read()
        c.close()
        return None
    if not body["stream"]:
        d = json.loads(r.read())
        c.close()
        return time.perf_counter() - t0, float("nan"), d["usage"]["completion_tokens"]
    ttft, tokens = None, 0
    for line in r:
        if not line.startswith(b"data: "):
            continue
        data = line[6:].strip()
        if data == b"[DONE]":
            break
        ch = json.loads(data)
        if ch.get("usage"):
            tokens = ch["usage"]["completion_tokens"]
        if ttft is None and ch["choices"] and ch["choices"][0]["text"]:
            ttft = time.perf_counter() - t0
    c.close()
    return time.perf_counter() - t0, ttft if ttft is not None else float("nan"), tokens


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def level(host, port, conc, n, max_tokens, stream):
    results, errors, lock, next_i = [], [0], threading.Lock(), [0]

    def worker():
        while True:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= n:
                return
            body = {"prompt": PROMPTS[i % len(PROMPTS)], "max_tokens": max_tokens, "temperature": 0.8, "seed": i,
                    "stream": stream}
            if stream:
                body["stream_options"] = {"include_usage": True}
            r = one(host, port, body)
            with lock:
                if r is None:
                    errors[0] += 1
                else:
                    results.append(r)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker) for _ in range(conc)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    lat = [r[0] for r in results]
    ttft = [r[1] for r in results]
    toks = sum(r[2] for r in results)
    return {"conc": conc, "n": len(results), "errors": errors[0], "wall": wall, "rps": len(results) / wall,
            "tps": toks / wall, "tokens": toks, "p50": pct(lat, 50), "p99": pct(lat, 99), "ttft50": pct(ttft, 50),
            "ttft99": pct(ttft, 99)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--levels", default="1,4,16")
    ap.add_argument("--no-stream", action="store_true", help="whole responses (no TTFT)")
    a = ap.parse_args()
    u = urllib.parse.urlparse(a.url)
    assert u.hostname in ("127.0.0.1", "localhost", "::1"), "load only against loopback"
    print("| concurrency | requests | errors | wall s | requests/s | output tokens/s | p50 latency ms | "
          "p99 latency ms | p50 TTFT ms | p99 TTFT ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    rows = []
    for c in [int(x) for x in a.levels.split(",")]:
        r = level(u.hostname, u.port, c, a.requests, a.max_tokens, not a.no_stream)
        rows.append(r)
        print(f"| {c} | {r['n']} | {r['errors']} | {r['wall']:.2f} | {r['rps']:.1f} | {r['tps']:.0f} | "
              f"{r['p50'] * 1000:.0f} | {r['p99'] * 1000:.0f} | {r['ttft50'] * 1000:.1f} | {r['ttft99'] * 1000:.1f} |",
              flush=True)
    base = rows[0]["tps"]
    print("\naggregate output tokens/s relative to concurrency %d: %s" % (
        rows[0]["conc"], ", ".join(f"{r['conc']}: {r['tps'] / base:.2f}x" for r in rows)))


if __name__ == "__main__":
    main()
