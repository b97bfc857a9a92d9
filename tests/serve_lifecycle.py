"""A request's life in ftc serve's scheduler, made deterministic (tests/cli_serve.sh runs it; standard library
only). Each step waits for the state it needs in GET /health ({slots, slots_busy, queued}) instead of sleeping,
and the request that holds the slot asks for far more tokens than the steps take (a counting prompt that SmolLM2
continues to its max_tokens, minutes of decoding): nothing here depends on how fast the machine is.

  serve_lifecycle.py queue URL        server: --slots 1 --queue 3 --ctx >= 1600
    - requests beyond the slot wait in the queue; one beyond the queue gets 503 server_busy at once;
    - a client waiting in the middle of the queue that leaves gives its place back at once (queued drops while
      the slot still decodes) and the place can be taken again;
    - a NON-streamed client that closes its connection frees its slot: the waiting requests are then served;
  serve_lifecycle.py sigterm URL PID  server: --slots 2 --queue 1 --ctx >= 1600
    - SIGTERM with a streamed and a non-streamed request decoding and one waiting, and a second SIGTERM while it
      stops: both end with finish_reason "length" (streamed: the usage chunk and [DONE] follow), the waiting
      one gets 503 server_shutting_down. (cli_serve.sh then checks the exit status 0.)
Prints the ids of the requests whose client went away (ABANDONED id) for cli_serve.sh to find in the log.
"""
import http.client
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.parse

LONG = {"prompt": "1, 2, 3, 4, 5,", "max_tokens": 1500, "temperature": 0}


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAIL: {what}")
    print(f"ok: {what}", flush=True)


def health(host, port):
    c = http.client.HTTPConnection(host, port, timeout=60)
    c.request("GET", "/health")
    r = c.getresponse()
    d = json.loads(r.read())
    c.close()
    return d


def wait_for(host, port, what, pred):
    """Polls /health until pred(h); the bound only keeps a broken server from hanging the test."""
    deadline = time.time() + 600
    while True:
        h = health(host, port)
        if pred(h):
            print(f"ok: /health {json.dumps(h)} ({what})", flush=True)
            return h
        if time.time() > deadline:
            raise SystemExit(f"FAIL: /health never showed {what}: {h}")
        time.sleep(0.02)


def post(host, port, body):
    c = http.client.HTTPConnection(host, port, timeout=600)
    c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    d = json.loads(r.read())
    c.close()
    return r.status, d


def open_raw(host, port, body):
    """Sends a request and leaves the answer unread: the caller closes the socket to go away."""
    s = socket.create_connection((host, port))
    b = json.dumps(body).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(b) + b)
    return s


class Background(threading.Thread):
    def __init__(self, host, port, body):
        super().__init__()
        self.args, self.result = (host, port, body), None

    def run(self):
        self.result = post(*self.args)


def queue_case(host, port):
    h = health(host, port)
    check(h["slots"] == 1 and h["slots_busy"] == 0 and h["queued"] == 0, f"idle 1-slot server: {h}")
    holder = open_raw(host, port, LONG)
    wait_for(host, port, "the long request decodes in the slot", lambda h: h["slots_busy"] == 1 and h["queued"] == 0)

    short = dict(LONG, max_tokens=4)
    first = Background(host, port, short)
    first.start()
    wait_for(host, port, "a request beyond the slot waits in the queue", lambda h: h["queued"] == 1)
    leaver = open_raw(host, port, short)
    wait_for(host, port, "a second one waits behind it", lambda h: h["queued"] == 2)
    last = Background(host, port, short)
    last.start()
    wait_for(host, port, "a third one: the queue is full", lambda h: h["queued"] == 3)
    st, d = post(host, port, short)
    check(st == 503 and d["error"]["code"] == "server_busy" and d["error"]["type"] == "server_error",
          f"a request beyond slot + queue: {st} {d['error']['code']}: {d['error']['message']!r}")

    # the client in the middle of the queue leaves: its place is given back at once, the slot still decodes
    leaver.close()
    wait_for(host, port, "the waiting client in the middle left", lambda h: h["queued"] == 2 and h["slots_busy"] == 1)
    again = Background(host, port, short)
    again.start()
    wait_for(host, port, "its place is taken again", lambda h: h["queued"] == 3)
    check(first.result is None and last.result is None and again.result is None, "the waiting requests still wait")

    # the slot's client goes away without reading (not streamed: nothing was written to it yet)
    t0 = time.time()
    holder.close()
    for w in (first, last, again):
        w.join()
        st, d = w.result
        check(st == 200 and d["usage"]["completion_tokens"] == 4 and d["choices"][0]["finish_reason"] == "length",
              f"the slot's client closed; a waiting request was served: {d['choices'][0]['text']!r} "
              f"({time.time() - t0:.2f} s after the close, prefills included; not asserted)")
    wait_for(host, port, "every slot free again", lambda h: h["slots_busy"] == 0 and h["queued"] == 0)


def read_sse(r):
    """The chunks of a streamed answer up to [DONE] (None marks [DONE])."""
    out = []
    while True:
        line = r.fp.readline()
        if not line:
            return out
        if line.startswith(b"data: "):
            data = line[6:].strip()
            out.append(None if data == b"[DONE]" else json.loads(data))
            if data == b"[DONE]":
                return out


def sigterm_case(host, port, pid):
    h = health(host, port)
    check(h["slots"] == 2 and h["slots_busy"] == 0, f"idle 2-slot server: {h}")
    sc = http.client.HTTPConnection(host, port, timeout=600)
    sc.request("POST", "/v1/completions", json.dumps(dict(LONG, stream=True, stream_options={"include_usage": True})),
               {"Content-Type": "application/json"})
    sr = sc.getresponse()
    check(sr.status == 200, "a streamed request runs")
    whole = Background(host, port, LONG)
    whole.start()
    wait_for(host, port, "both slots decode", lambda h: h["slots_busy"] == 2 and h["queued"] == 0)
    waiting = Background(host, port, dict(LONG, max_tokens=4))
    waiting.start()
    wait_for(host, port, "a third request waits", lambda h: h["queued"] == 1)
    os.kill(pid, signal.SIGTERM)
    # a second SIGTERM while it stops (an impatient process manager) changes nothing: it used to land on an
    # OpenBLAS thread, where the default action killed the server (exit 143) before the answers were out
    try:
        wait_for(host, port, "stopping", lambda h: h["status"] == "stopping")
    except (OSError, http.client.HTTPException):
        pass  # already stopped listening
    os.kill(pid, signal.SIGTERM)
    chunks = read_sse(sr)
    sc.close()
    whole.join()
    waiting.join()
    check(chunks and chunks[-1] is None, f"the stream ends with [DONE] ({len(chunks)} chunks)")
    fins = [c["choices"][0]["finish_reason"] for c in chunks[:-1] if c["choices"]]
    usage = [c["usage"] for c in chunks[:-1] if c.get("usage")]
    check(fins[-1] == "length" and fins.count("length") == 1 and len(usage) == 1 and chunks[-2]["choices"] == []
          and usage[0]["completion_tokens"] < LONG["max_tokens"],
          f"streamed: finish_reason 'length' after {usage[0]['completion_tokens']} of {LONG['max_tokens']} tokens, "
          f"then the usage chunk")
    st, d = whole.result
    check(st == 200 and d["choices"][0]["finish_reason"] == "length"
          and d["usage"]["completion_tokens"] < LONG["max_tokens"],
          f"not streamed: 200, finish_reason 'length' after {d['usage']['completion_tokens']} tokens")
    st, d = waiting.result
    check(st == 503 and d["error"]["code"] == "server_shutting_down",
          f"the waiting request: {st} {d['error']['code']}")


def main():
    case, url = sys.argv[1:3]
    u = urllib.parse.urlparse(url)
    if case == "queue":
        queue_case(u.hostname, u.port)
    elif case == "sigterm":
        sigterm_case(u.hostname, u.port, int(sys.argv[3]))
    else:
        raise SystemExit(f"unknown case {case}")


if __name__ == "__main__":
    main()
