#!/usr/bin/python3
"""Checks ftc's exports against transformers and PEFT (developer tool; CI runs the C round trip instead).

For each case: a short LoRA run with `ftc train` on random pre-tokenized data (a large learning rate so the
adapters move far from zero), then `ftc export --format hf` and `--format peft`, then logits on fixed ids:
  ftc  : `ftc logits --model RUNDIR` (the run's merged model)
  hf   : transformers AutoModelFor*.from_pretrained(HF export)
  peft : PeftModel.from_pretrained(base, PEFT export)
  ftc-hf / ftc-adapter : ftc loading its own exports back (--model HFDIR, --model BASE --adapter PEFTDIR)
and prints the max |difference| of each against ftc.

Needs /usr/bin/python3 with torch 1.13 (Debian) + transformers 4.38.2 + peft 0.10.0:
  /usr/bin/python3 -m pip install --break-system-packages --no-deps peft==0.10.0 accelerate==0.28.0
(--no-deps: without it pip replaces Debian's torch with a PyPI torch 2.x.)
Usage: /usr/bin/python3 tools/check_export.py [--ftc build/ftc] [--minilm DIR] [--keep DIR]
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures", "models")


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stderr}")
    return p.stdout


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def make_data(task, vocab, n, lo, hi, rng):
    """Random sequences of ids >= 3 (0 is the llama fixtures' pad id, which transformers' last-token pooling
    would mistake for padding); for classify the class decides one often-repeated marker token."""
    rows = []
    for _ in range(n):
        length = rng.randint(lo, hi)
        if task == "classify":
            c = rng.randrange(3)
            ids = [rng.choice([3 + c, rng.randrange(6, vocab)]) for _ in range(length)]
            rows.append({"input_ids": ids, "label": f"class{c}"})
        else:
            rows.append({"input_ids": [rng.randrange(3, vocab) for _ in range(length)]})
    return rows


def ftc_logits(ftc, ids_file, *args):
    out = run([ftc, "logits", "--ids", ids_file, *args])
    return [torch.tensor(json.loads(line)) for line in out.splitlines() if line.strip()]


def torch_logits(model, rows):
    outs = []
    with torch.no_grad():
        for r in rows:
            kw = {"input_ids": torch.tensor([r["input_ids"]])}
            if "token_type_ids" in r:
                kw["token_type_ids"] = torch.tensor([r["token_type_ids"]])
            outs.append(model(**kw).logits[0])
    return outs


def max_diff(a, b):
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


def check(name, base, task, ftc, work, extra_train, seq_len, n_labels=3):
    rng = random.Random(1234)
    cfg = json.load(open(os.path.join(base, "config.json")))
    vocab = cfg["vocab_size"]
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    write_jsonl(os.path.join(d, "train.jsonl"), make_data(task, vocab, 32, seq_len // 2, seq_len, rng))
    probe = make_data(task, vocab, 4, 3, seq_len, rng)
    if cfg["model_type"] == "bert":
        for r in probe:
            r["token_type_ids"] = [0] * (len(r["input_ids"]) // 2) + [1] * (len(r["input_ids"]) - len(r["input_ids"]) // 2)
    for r in probe:
        r.pop("label", None)
    ids_file = os.path.join(d, "probe.jsonl")
    write_jsonl(ids_file, probe)
    rundir, hfdir, peftdir = (os.path.join(d, x) for x in ("run", "hf", "peft"))
    for x in (rundir, hfdir, peftdir):
        shutil.rmtree(x, ignore_errors=True)
    run([ftc, "train", "--model", base, "--data", os.path.join(d, "train.jsonl"), "--out", rundir, "--task", task,
         "--method", "lora", "--lora-r", "4", "--lora-alpha", "8", "--lr", "2e-2", "--batch", "8", "--max-steps", "6",
         "--max-len", str(seq_len), "--quiet", *extra_train])
    run([ftc, "export", "--model", rundir, "--format", "hf", "--out", hfdir])
    run([ftc, "export", "--model", rundir, "--format", "peft", "--out", peftdir])

    ref = ftc_logits(ftc, ids_file, "--model", rundir)
    base_logits = ftc_logits(ftc, ids_file, "--model", base, "--task", task, "--adapter", peftdir)
    back_hf = ftc_logits(ftc, ids_file, "--model", hfdir)
    if task == "classify":
        hf = AutoModelForSequenceClassification.from_pretrained(hfdir).eval()
        b = AutoModelForSequenceClassification.from_pretrained(base, num_labels=n_labels)
    else:
        hf = AutoModelForCausalLM.from_pretrained(hfdir).eval()
        b = AutoModelForCausalLM.from_pretrained(base)
    pm = PeftModel.from_pretrained(b, peftdir).eval()
    # how far the adapter moved the outputs: the differences below must be small against this
    plain = AutoModelForCausalLM.from_pretrained(base) if task != "classify" else None
    res = {
        "transformers(hf export)": max_diff(ref, torch_logits(hf, probe)),
        "peft(base + adapter)": max_diff(ref, torch_logits(pm, probe)),
        "ftc(hf export)": max_diff(ref, back_hf),
        "ftc(base --adapter)": max_diff(ref, base_logits),
    }
    scale = max(float(x.abs().max()) for x in ref)
    moved = max_diff(ref, torch_logits(plain.eval(), probe)) if plain is not None else float("nan")
    arch = json.load(open(os.path.join(hfdir, "config.json")))["architectures"][0]
    ac = json.load(open(os.path.join(peftdir, "adapter_config.json")))
    print(f"{name}: {arch}, PEFT {ac['task_type']} targets {ac['target_modules']}; |logits| max {scale:.3g}"
          + (f", adapter moved logits by {moved:.3g}" if plain is not None else ""))
    for k, v in res.items():
        print(f"  max |diff| vs ftc  {k:26s} {v:.3g}")
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ftc", default=os.path.join(ROOT, "build", "ftc"))
    ap.add_argument("--minilm", default=None, help="MiniLM directory (sh scripts/find-minilm.sh)")
    ap.add_argument("--keep", default=None, help="work directory to keep (default: a temporary one)")
    a = ap.parse_args()
    torch.manual_seed(0)
    work = a.keep or tempfile.mkdtemp(prefix="ftc_check_export.")
    worst = 0.0
    cases = [
        ("gpt2-lm", os.path.join(FIX, "gpt2"), "causal-lm", ["--lora-targets", "c_attn,c_fc"], 12),
        ("llama-lm", os.path.join(FIX, "llama_gqa"), "causal-lm", ["--lora-targets", "all-linear"], 12),
        ("bert-cls", os.path.join(FIX, "bert_cls"), "classify", [], 12),
        ("llama-cls", os.path.join(FIX, "llama_cls"), "classify", [], 12),
    ]
    stories = os.path.join(ROOT, "..", "shared", "data", "models", "stories260K-hf")
    if os.environ.get("FTC_SHARED_DATA"):
        stories = os.path.join(os.environ["FTC_SHARED_DATA"], "models", "stories260K-hf")
    if os.path.exists(os.path.join(stories, "config.json")):
        cases.append(("stories260K-lm", stories, "causal-lm", ["--lora-targets", "q_proj,v_proj"], 16))
    if a.minilm:
        cases.append(("minilm-cls", a.minilm, "classify", ["--lora-targets", "query,value"], 16))
    for name, base, task, extra, seq_len in cases:
        res = check(name, base, task, a.ftc, work, extra, seq_len)
        worst = max(worst, *res.values())
    print(f"worst max |diff| over all cases: {worst:.3g}")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if worst < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
