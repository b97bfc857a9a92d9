#!/usr/bin/env python3
"""Writes two small synthetic run directories for the report tests and tools/screenshot_report.sh:
  tests/fixtures/report_run_classify/  metrics.jsonl + eval.json (28 FAQ intents, with "base")
  tests/fixtures/report_run_lm/        metrics.jsonl + eval.json + samples.jsonl
The curves are made up (a decaying loss with noise) but shaped like a real run; the eval.json
numbers are computed here from the confusion matrix the same way src/eval/metrics.c does.
Standard library only; deterministic (fixed seed). Usage: python3 tools/make_report_fixtures.py"""
import json
import math
import os
import random

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
rng = random.Random(7)


def lr_at(step, total, peak=5e-5, warmup=30):
    return peak * step / warmup if step < warmup else peak * max(0.0, (total - step) / (total - warmup))


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def classify_metrics(labels, confusion):
    K = len(labels)
    support = [sum(confusion[t]) for t in range(K)]
    predicted = [sum(confusion[t][p] for t in range(K)) for p in range(K)]
    n = sum(support)
    per = []
    for c in range(K):
        tp = confusion[c][c]
        prec = tp / predicted[c] if predicted[c] else 0.0
        rec = tp / support[c] if support[c] else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per.append({"label": labels[c], "precision": prec, "recall": rec, "f1": f1,
                    "support": support[c], "predicted": predicted[c]})
    acc = sum(confusion[c][c] for c in range(K)) / n
    return {"task": "classify", "n_examples": n, "accuracy": acc,
            "macro_f1": sum(p["f1"] for p in per) / K,
            "weighted_f1": sum(p["f1"] * p["support"] for p in per) / n,
            "n_absent_classes": 0, "labels": labels, "per_class": per, "confusion": confusion}


def classify_run():
    d = os.path.join(ROOT, "report_run_classify")
    os.makedirs(d, exist_ok=True)
    faq = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "faq", "answers.json")
    labels = list(json.load(open(faq)))
    K, total, rows = len(labels), 300, []
    for step in range(1, total + 1):
        if step % 5 == 0 or step == 1:
            loss = 3.3 * math.exp(-step / 60) + 0.08 + rng.uniform(-0.08, 0.08)
            rows.append({"step": step, "epoch": round(step / 100, 3), "loss": round(loss, 4),
                         "lr": lr_at(step, total), "tok_s": 4100 + rng.randint(-200, 200),
                         "grad_norm": round(4.0 * math.exp(-step / 90) + 0.5 + 0.3 * math.sin(step), 4),
                         "elapsed_s": round(step * 0.42, 1)})
        if step % 50 == 0:
            q = 1 - math.exp(-step / 70)
            rows.append({"step": step, "val_loss": round(3.4 * math.exp(-step / 70) + 0.3, 4),
                         "accuracy": round(0.05 + 0.87 * q, 4), "macro_f1": round(0.03 + 0.86 * q, 4)})
    rows.append({"step": total, "finished": True, "stopped_early": False, "elapsed_s": 131.5})
    write_jsonl(os.path.join(d, "metrics.jsonl"), rows)
    # the settings as ftc train writes them: a full run with its own learning rate and eval_every; LoRA's at defaults
    cfg = {"model": "models/all-MiniLM-L6-v2", "data": "examples/faq/train.jsonl", "out": "runs/faq",
           "val": "examples/faq/test.jsonl", "task": "classify", "method": "full", "val_split": 0.0, "epochs": 3,
           "max_steps": 300, "lr": 2.99999992e-5, "head_lr": 0.00999999978, "lp_ft": True, "batch": 32, "grad_accum": 1,
           "max_len": 128, "warmup": 0.1, "schedule": "linear", "weight_decay": 0.00999999978, "clip": 1.0,
           "beta1": 0.899999976, "beta2": 0.999000013, "adam_eps": 9.99999994e-9, "seed": "42", "eval_every": 50,
           "save_every": 0, "log_every": 5, "patience": 0, "metric": "val_loss", "unfreeze_last": 0, "lora_r": 8,
           "lora_alpha": 16.0, "lora_dropout": 0.0, "lora_targets": "", "pooling": "auto", "feature_cache": True,
           "grad_checkpoint": False, "precision": "fp32", "base_dtype": "auto", "format": "", "chat_template": "",
           "text_col": "", "label_col": "", "pack": False, "train_on_inputs": False, "trainable_params": 22724000,
           "total_params": 22724000, "total_steps": 300, "warmup_steps": 30, "steps_per_epoch": 20,
           "train_examples": 616, "val_examples": 252}
    with open(os.path.join(d, "config.resolved.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    # 9 test questions per intent, a few mistakes between neighbouring intents, one class never predicted
    confusion = [[0] * K for _ in range(K)]
    for t in range(K):
        confusion[t][t] = 9
    mistakes = [("bike_wont_unlock", "unlock_bike", 2), ("dock_full", "end_ride", 3), ("refund_request", "payment_failed", 1),
                ("cancel_membership", "membership_plans", 2), ("stolen_bike", "lost_item", 1), ("pricing", "membership_plans", 1)]
    for a, b, n in mistakes:
        ia, ib = labels.index(a), labels.index(b)
        confusion[ia][ia] -= n
        confusion[ia][ib] += n
    never = labels.index("reserve_bike")  # never predicted: all its questions go elsewhere
    confusion[never][never] = 0
    confusion[never][labels.index("unlock_bike")] = 5
    confusion[never][labels.index("find_station")] = 4
    ev = classify_metrics(labels, confusion)
    ev["loss"] = 0.4213
    # the most confident mistakes (ftc eval's "worst"), most confident first
    ev["worst"] = [
        {"text": "my bike won't come out of the dock", "label": "bike_wont_unlock", "predicted": "unlock_bike",
         "prob": 0.9412},
        {"text": "can I book a bike for <8am> & pick it up later?", "label": "reserve_bike", "predicted": "unlock_bike",
         "prob": 0.8127},
        {"text": "station is packed, where do I leave it", "label": "dock_full", "predicted": "end_ride", "prob": 0.6634},
    ]
    ev["base"] = {"task": "classify", "n_examples": ev["n_examples"], "accuracy": 0.0397, "macro_f1": 0.0121,
                  "weighted_f1": 0.0121, "loss": 3.3391}
    with open(os.path.join(d, "eval.json"), "w") as f:
        json.dump(ev, f, indent=1)
        f.write("\n")


def lm_run():
    d = os.path.join(ROOT, "report_run_lm")
    os.makedirs(d, exist_ok=True)
    total, rows = 200, []
    for step in range(1, total + 1):
        loss = 2.2 * math.exp(-step / 50) + 1.6 + rng.uniform(-0.1, 0.1)
        row = {"step": step, "loss": round(loss, 4), "lr": lr_at(step, total, 2e-4, 20)}
        if step % 40 == 0:
            vl = 2.0 * math.exp(-step / 60) + 1.75
            row.update({"val_loss": round(vl, 4), "val_perplexity": round(math.exp(vl), 3),
                        "token_accuracy": round(0.30 + 0.15 * (1 - math.exp(-step / 60)), 4)})
        rows.append(row)
    write_jsonl(os.path.join(d, "metrics.jsonl"), rows)
    ev = {"task": "causal-lm", "n_examples": 64, "n_tokens": 5120, "loss": 1.8023,
          "perplexity": math.exp(1.8023), "token_accuracy": 0.4388,
          "base": {"task": "causal-lm", "n_examples": 64, "n_tokens": 5120, "loss": 3.1172,
                   "perplexity": math.exp(3.1172), "token_accuracy": 0.2841}}
    with open(os.path.join(d, "eval.json"), "w") as f:
        json.dump(ev, f, indent=1)
        f.write("\n")
    write_jsonl(os.path.join(d, "samples.jsonl"), [
        {"prompt": "Once upon a time, Lily", "base": "Once upon a time, Lily the the the",
         "tuned": "Lily found a big red ball in the park. She was very happy."},
        {"prompt": "How do I end my ride?", "base": "How do I end my ride? How do I",
         "tuned": "Push the bike into a free dock until the light turns green."},
        {"prompt": "Escape <b>&</b> \"quotes\"", "base": "a < b && c > d", "tuned": "'single' & <tags>"},
    ])


classify_run()
lm_run()
