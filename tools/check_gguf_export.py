"""Checks of ftc's GGUF export against llama.cpp's own tools (scripts/check-llamacpp.sh runs it; not CI).

  compare A.gguf B.gguf        the PyPI gguf reader parses both; tensor set, shapes, types, bytes, metadata keys,
                               types and values of A (ftc) against B (llama.cpp's convert_hf_to_gguf.py)
  tokenize LLAMA_TOKENIZE GGUF FIXTURE [CORPUS] [N]
                               llama.cpp's llama-tokenize on every len/N-th line (default N 300): ids equal to
                               HF's? FIXTURE lines are [ids, text] (or [ids, decoded] with the texts in CORPUS)
  modelfile FILE.Modelfile HF_DIR
                               renders the Modelfile's TEMPLATE/SYSTEM as Ollama would (a small interpreter of
                               the Go template constructs ftc writes) and the model's Jinja chat template (jinja2,
                               as transformers does) on a few conversations: the texts must be equal
  logits STEPS.txt LOGITS.bin FTC GGUF [TOL]
                               llama.cpp's logits along its greedy path (tools/llamacpp_logits.c) against
                               `ftc logits` on the same ids: the largest difference; with TOL, fails above it
"""
import json
import re
import sys


def cmd_compare(a_path, b_path):
    import gguf
    a, b = gguf.GGUFReader(a_path), gguf.GGUFReader(b_path)
    ta, tb = {t.name: t for t in a.tensors}, {t.name: t for t in b.tensors}
    bad = 0
    only_a, only_b = sorted(set(ta) - set(tb)), sorted(set(tb) - set(ta))
    same_bytes = 0
    for n in sorted(set(ta) & set(tb)):
        x, y = ta[n], tb[n]
        if list(x.shape) != list(y.shape) or x.tensor_type != y.tensor_type:
            print(f"  tensor {n}: {x.tensor_type.name}{list(map(int, x.shape))} vs {y.tensor_type.name}{list(map(int, y.shape))}")
            bad += 1
        elif x.data.tobytes() == y.data.tobytes():
            same_bytes += 1
    print(f"tensors: ftc {len(ta)}, llama.cpp {len(tb)}; only ftc {only_a[:5]}, only llama.cpp {only_b[:5]}; "
          f"names/shapes/types equal {len(set(ta) & set(tb)) - bad}, bytes equal {same_bytes}")
    ka = [k for k in a.fields if not k.startswith("GGUF.")]
    kb = [k for k in b.fields if not k.startswith("GGUF.")]
    print(f"metadata keys: ftc {len(ka)}, llama.cpp {len(kb)}; only ftc {sorted(set(ka) - set(kb))}, "
          f"only llama.cpp {sorted(set(kb) - set(ka))}")
    for k in ka:
        if k not in b.fields:
            continue
        fa, fb = a.fields[k], b.fields[k]
        if [t.name for t in fa.types] != [t.name for t in fb.types]:
            print(f"  key {k}: type {[t.name for t in fa.types]} vs {[t.name for t in fb.types]}")
            bad += 1
        elif fa.contents() != fb.contents():
            print(f"  key {k}: value {str(fa.contents())[:60]!r} vs {str(fb.contents())[:60]!r}")
    return bad + len(only_a) + len(only_b)


# ---- Ollama's Go template, the constructs ftc writes: if/range/end, ne/eq, .Field, {{- / -}} trimming ----
def go_render(tmpl, data):
    parts = re.split(r"(\{\{-?\s*.*?\s*-?\}\})", tmpl, flags=re.S)
    toks = []
    for p in parts:
        if p.startswith("{{"):
            ltrim, rtrim = p.startswith("{{-"), p.endswith("-}}")
            body = p[3 if ltrim else 2:-3 if rtrim else -2].strip()
            toks.append(("act", body, ltrim, rtrim))
        elif p:
            toks.append(("text", p))
    # apply trimming to neighbouring text
    for i, t in enumerate(toks):
        if t[0] == "act":
            if t[2] and i > 0 and toks[i - 1][0] == "text":
                toks[i - 1] = ("text", toks[i - 1][1].rstrip())
            if t[3] and i + 1 < len(toks) and toks[i + 1][0] == "text":
                toks[i + 1] = ("text", toks[i + 1][1].lstrip())

    def parse(i):
        nodes = []
        while i < len(toks):
            t = toks[i]
            if t[0] == "text":
                nodes.append(("text", t[1])); i += 1; continue
            body = t[1]
            if body == "end" or body == "else":
                return nodes, i
            if body.startswith("if ") or body.startswith("range "):
                kind, expr = body.split(" ", 1)
                inner, j = parse(i + 1)
                other = []
                if toks[j][1] == "else":
                    other, j = parse(j + 1)
                nodes.append((kind, expr, inner, other)); i = j + 1; continue
            nodes.append(("expr", body)); i += 1
        return nodes, i

    def value(expr, ctx):
        expr = expr.strip()
        m = re.fullmatch(r'(ne|eq) (\.\w+) "(.*)"', expr)
        if m:
            v = value(m.group(2), ctx)
            return (v != m.group(3)) if m.group(1) == "ne" else (v == m.group(3))
        if expr.startswith("."):
            return ctx.get(expr[1:], "")
        raise ValueError(f"unsupported Go template expression {expr!r}")

    def run(nodes, ctx):
        out = ""
        for n in nodes:
            if n[0] == "text":
                out += n[1]
            elif n[0] == "expr":
                out += str(value(n[1], ctx))
            elif n[0] == "if":
                out += run(n[2] if value(n[1], ctx) else n[3], ctx)
            elif n[0] == "range":
                for item in value(n[1], ctx):
                    out += run(n[2], {**ctx, **item})
        return out

    nodes, _ = parse(0)
    return run(nodes, data)


def cmd_modelfile(mf_path, hf_dir):
    import jinja2
    text = open(mf_path).read()
    tm = re.search(r'^TEMPLATE """(.*?)"""', text, re.S | re.M)
    sm = re.search(r'^SYSTEM """(.*?)"""', text, re.S | re.M)
    if not tm:
        print("Modelfile has no TEMPLATE"); return 1
    cfg = json.load(open(f"{hf_dir}/tokenizer_config.json"))
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)  # as transformers compiles chat templates
    jt = env.from_string(cfg["chat_template"])
    convs = [
        [{"role": "user", "content": "How do I unlock a bike?"}],
        [{"role": "system", "content": "Answer in one line."}, {"role": "user", "content": "Hi"}],
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"}],
    ]
    bad = 0
    for msgs in convs:
        want = jt.render(messages=msgs, add_generation_prompt=True, bos_token=cfg.get("bos_token", ""),
                         eos_token=cfg.get("eos_token", ""))
        system = next((m["content"] for m in msgs if m["role"] == "system"), sm.group(1) if sm else "")
        got = go_render(tm.group(1), {"System": system, "Messages": [{"Role": m["role"], "Content": m["content"]} for m in msgs]})
        ok = got == want
        bad += not ok
        print(f"Modelfile TEMPLATE vs chat_template, {len(msgs)} messages: {'equal' if ok else 'DIFFERENT'}")
        if not ok:
            print("  ollama:", repr(got)); print("  jinja: ", repr(want))
    return bad


def cmd_tokenize(exe, gguf_path, fixture, corpus=None, n=300):
    import subprocess
    import tempfile
    fix = [json.loads(l) for l in open(fixture, encoding="utf-8")]
    texts = [json.loads(l) for l in open(corpus, encoding="utf-8")] if corpus else [f[1] for f in fix]
    bad = lines = tokens = 0
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt") as tf:
        for i in range(0, len(texts), max(1, len(texts) // int(n))):
            t = texts[i]
            if not t.strip() or "\x00" in t:
                continue
            tf.seek(0), tf.truncate(), tf.write(t), tf.flush()
            r = subprocess.run([exe, "-m", gguf_path, "-f", tf.name, "--ids", "--log-disable", "--no-escape"],
                               capture_output=True, text=True)
            try:
                ids = json.loads(r.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                ids = None
            lines += 1
            tokens += len(fix[i][0])
            if ids != fix[i][0]:
                bad += 1
    print(f"llama-tokenize on {gguf_path}: {lines} lines, {tokens} tokens, {bad} lines differ from HF's ids: {bad}")
    return bad


def cmd_logits(steps_path, bin_path, ftc, model, tol=None):
    """llama.cpp's logits along its greedy path (tools/llamacpp_logits.c: steps text + float32 dump) against
    `ftc logits` on the same ids (the prompt and every generated token but the last, one teacher-forced
    sequence): prints the largest |difference| over all steps and the vocabulary, and the smallest margin
    between llama.cpp's top two; with tol, fails when the difference exceeds it or ftc's argmax differs."""
    import array, json, subprocess, tempfile
    lines = open(steps_path).read().split("\n")
    prompt = [int(x) for x in lines[0].split()[1:]]
    steps = [l.split() for l in lines[1:] if l.strip()]
    gen = [int(s[1]) for s in steps]
    raw = array.array("f")
    raw.frombytes(open(bin_path, "rb").read())
    V = len(raw) // len(steps)
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl") as f:
        f.write(json.dumps({"input_ids": prompt + gen[:-1]}) + "\n")
        f.flush()
        z = json.loads(subprocess.check_output([ftc, "logits", "--model", model, "--ids", f.name]))
    worst, argmax_diff = 0.0, []
    for s in range(len(steps)):
        row, ref = z[len(prompt) - 1 + s], raw[s * V:(s + 1) * V]
        worst = max(worst, max(abs(a - b) for a, b in zip(row, ref)))
        if max(range(V), key=lambda i: (row[i], -i)) != gen[s]:
            argmax_diff.append(s)
    margin = min(float(s[5]) for s in steps)
    print(f"{len(steps)} steps: max |ftc - llama.cpp| logit {worst:.2e}; llama.cpp's smallest top-2 margin "
          f"{margin:.4f}; steps where ftc's argmax differs: {argmax_diff or 'none'}")
    return tol is not None and (worst > float(tol) or argmax_diff)


if __name__ == "__main__":
    if sys.argv[1] == "tokenize":
        cmd_tokenize(*sys.argv[2:])
        sys.exit(0)
    if sys.argv[1] == "compare":
        sys.exit(1 if cmd_compare(sys.argv[2], sys.argv[3]) else 0)
    if sys.argv[1] == "logits":
        sys.exit(1 if cmd_logits(*sys.argv[2:]) else 0)
    if sys.argv[1] == "modelfile":
        sys.exit(1 if cmd_modelfile(sys.argv[2], sys.argv[3]) else 0)
    sys.exit(__doc__)
