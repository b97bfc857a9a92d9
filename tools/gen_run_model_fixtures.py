#!/usr/bin/python3
"""Writes tests/fixtures/run_model/: what transformers computes from the model/ directory that `ftc train` leaves
in a run directory, so tests/cli_run_model.sh can check, without Python, that RUNDIR/model is exactly what
transformers loads with the same outputs.

For each case (tiny fixture models of tests/fixtures/models, pre-tokenized data written here with a fixed seed):
  ftc train --model BASE --data CASE/train.jsonl --out RUN  ARGS (from cases.tsv, a few steps)
then RUN/model is loaded the way a transformers user would, from its config.json "architectures":
  *ForSequenceClassification / *ForCausalLM / *LMHeadModel: AutoModelFor...from_pretrained(RUN/model)
  a bare encoder with "ftc_classifier_head" (a head no transformers class computes, e.g. mean pooling):
      AutoModel.from_pretrained(RUN/model), the documented head applied to its last_hidden_state
      (mean over the tokens, or [CLS]), and classifier.weight/bias read from model.safetensors
and its logits on CASE/probe.jsonl are written to CASE/logits.jsonl (one JSON list per probe line; causal-lm:
every position's logits, flattened), with CASE/expected.json = {"architectures", "ftc_classifier_head"}.
The shell test trains the same run, compares config.json's architectures and `ftc logits --model RUN/model`
with these (max |diff| 1e-4: training on another CPU rounds differently), and checks that RUN/model is
byte-identical to `ftc export RUN --format hf`.

Needs /usr/bin/python3 with torch 1.13 (Debian) + transformers 4.38.2 and a built ftc.
Usage: /usr/bin/python3 tools/gen_run_model_fixtures.py [--ftc build/ftc] [--keep DIR]
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
import transformers.utils.import_utils as _iu

# an accelerate newer than Debian's torch 1.13 (from torch.amp import GradScaler) breaks transformers' model imports;
# nothing here needs accelerate
_iu._accelerate_available = False
from safetensors.torch import load_file  # noqa: E402
from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "tests", "fixtures", "models")
OUT = os.path.join(ROOT, "tests", "fixtures", "run_model")

# name, base fixture, task, ftc train arguments (besides --model, --data, --out)
CASES = [
    # the known gap: mean pooling (a sentence-transformers encoder such as all-MiniLM-L6-v2) that
    # BertForSequenceClassification would not apply
    ("bert_mean_full", "bert_mean", "classify",
     "--task classify --method full --pooling mean --no-lp-ft --lr 5e-3 --batch 8 --max-steps 4 --seed 3"),
    ("bert_cls_head", "bert_cls", "classify",
     "--task classify --method head --pooling cls --lr 5e-2 --batch 8 --max-steps 4 --seed 3"),
    ("llama_cls_lora_merged", "llama_cls", "classify",
     "--task classify --method lora --lora-r 4 --lora-alpha 8 --save-merged --lr 2e-2 --batch 8 --max-steps 4 --seed 3"),
    ("gpt2_lm_full", "gpt2", "causal-lm",
     "--task causal-lm --method full --lr 5e-3 --batch 8 --max-steps 4 --seed 3"),
]


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stderr}")
    return p.stdout


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def make_rows(task, vocab, n, rng, labelled):
    """ids >= 3 (0 is the llama fixtures' pad id, which last-token pooling would take for padding); for classify
    the class decides one often-repeated marker token."""
    rows = []
    for _ in range(n):
        length = rng.randint(5, 12)
        c = rng.randrange(3)
        ids = [rng.choice([3 + c, rng.randrange(6, vocab)]) for _ in range(length)]
        row = {"input_ids": ids}
        if labelled and task == "classify":
            row["label"] = f"c{c}"
        rows.append(row)
    return rows


def transformers_logits(model_dir, probe):
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    arch = cfg["architectures"][0]
    head = cfg.get("ftc_classifier_head")
    outs = []
    with torch.no_grad():
        if head:
            enc = AutoModel.from_pretrained(model_dir).eval()
            w = load_file(os.path.join(model_dir, "model.safetensors"))
            prefix = head["weights"].rstrip("*").rstrip(".")
            W, b = w[prefix + ".weight"], w.get(prefix + ".bias")
            for r in probe:
                h = enc(input_ids=torch.tensor([r["input_ids"]])).last_hidden_state[0]
                if head["pooling"] == "mean":
                    x = h.mean(0)
                elif head["pooling"] == "cls":
                    x = h[0]
                else:
                    x = h[-1]
                y = W @ x + (b if b is not None else 0)
                outs.append(y.tolist())
        else:
            if "ForSequenceClassification" in arch:
                m = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
            else:
                m = AutoModelForCausalLM.from_pretrained(model_dir).eval()
            for r in probe:
                outs.append(m(input_ids=torch.tensor([r["input_ids"]])).logits[0].reshape(-1).tolist())
    return arch, head, outs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ftc", default=os.path.join(ROOT, "build", "ftc"))
    ap.add_argument("--keep", default=None, help="work directory to keep (default: a temporary one)")
    a = ap.parse_args()
    work = a.keep or tempfile.mkdtemp(prefix="ftc_run_model.")
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "cases.tsv"), "w") as f:
        for name, base, task, args in CASES:
            f.write(f"{name}\t{base}\t{args}\n")
    worst = 0.0
    for name, base, task, args in CASES:
        rng = random.Random(1234)
        base_dir = os.path.join(MODELS, base)
        vocab = json.load(open(os.path.join(base_dir, "config.json")))["vocab_size"]
        case = os.path.join(OUT, name)
        os.makedirs(case, exist_ok=True)
        write_jsonl(os.path.join(case, "train.jsonl"), make_rows(task, vocab, 32, rng, True))
        probe = make_rows(task, vocab, 4, rng, False)
        write_jsonl(os.path.join(case, "probe.jsonl"), probe)
        rundir = os.path.join(work, name)
        shutil.rmtree(rundir, ignore_errors=True)
        run([a.ftc, "train", "--model", base_dir, "--data", os.path.join(case, "train.jsonl"), "--out", rundir,
             "--quiet", *args.split()])
        model_dir = os.path.join(rundir, "model")
        arch, head, ref = transformers_logits(model_dir, probe)
        with open(os.path.join(case, "logits.jsonl"), "w") as f:
            for row in ref:
                f.write(json.dumps([float(f"{v:.8g}") for v in row]) + "\n")
        json.dump({"architectures": arch, "ftc_classifier_head": head}, open(os.path.join(case, "expected.json"), "w"),
                  indent=1, sort_keys=True)
        got = [json.loads(line) for line in run([a.ftc, "logits", "--model", model_dir, "--ids",
                                                 os.path.join(case, "probe.jsonl")]).splitlines() if line.strip()]
        flat = lambda v: [x for e in v for x in flat(e)] if isinstance(v, list) else [v]  # noqa: E731
        d = max(abs(x - y) for g, r in zip(got, ref) for x, y in zip(flat(g), r))
        worst = max(worst, d)
        print(f"{name}: {arch}{' + ftc_classifier_head ' + head['pooling'] if head else ''}; "
              f"max |ftc - transformers| {d:.3g} (|logits| max {max(abs(v) for r in ref for v in r):.3g})")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(f"worst {worst:.3g}")
    return 0 if worst < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
