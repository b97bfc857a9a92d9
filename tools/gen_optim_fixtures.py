#!/usr/bin/python3
"""Reference values for the trainer's optimizer pieces (tests/test_train_optim.c):
AdamW steps (torch.optim.AdamW, decoupled weight decay on some params only), global-norm clipping
(torch.nn.utils.clip_grad_norm_) and the learning-rate schedules (transformers'
get_{linear,cosine,constant}_schedule_with_warmup). Run with /usr/bin/python3 (torch 1.13).
Writes tests/fixtures/train_optim.json."""
import json, os, torch
from transformers import (get_linear_schedule_with_warmup, get_cosine_schedule_with_warmup,
                          get_constant_schedule_with_warmup)

torch.manual_seed(1234)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "train_optim.json")
f32 = lambda t: [float(x) for x in t.detach().reshape(-1).tolist()]

def schedule_factors(kind, warmup, total):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    make = {"linear": lambda: get_linear_schedule_with_warmup(opt, warmup, total),
            "cosine": lambda: get_cosine_schedule_with_warmup(opt, warmup, total),
            "constant": lambda: get_constant_schedule_with_warmup(opt, warmup)}[kind]
    sched, out = make(), []
    for _ in range(total + 2):
        out.append(opt.param_groups[0]["lr"])
        opt.step(); sched.step()
    return out

def adamw_case(name, max_norm, steps, weight_decay, lr, warmup, total):
    shapes = [("w1", (4, 3), True), ("b1", (4,), False), ("w2", (2, 4), True), ("norm", (2,), False)]
    params = [torch.nn.Parameter(torch.randn(s)) for _, s, _ in shapes]
    init = [f32(p) for p in params]
    decay = [p for p, (_, _, d) in zip(params, shapes) if d]
    no_decay = [p for p, (_, _, d) in zip(params, shapes) if not d]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.999), eps=1e-8)
    sched = get_linear_schedule_with_warmup(opt, warmup, total)
    grads, norms, lrs, after = [], [], [], []
    for _ in range(steps):
        g = [torch.randn(p.shape) * 3 for p in params]
        grads.append([f32(x) for x in g])
        for p, x in zip(params, g): p.grad = x.clone()
        lrs.append(opt.param_groups[0]["lr"])
        norms.append(float(torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))))
        opt.step(); sched.step()
        after.append([f32(p) for p in params])
    return {"name": name, "max_norm": max_norm, "weight_decay": weight_decay, "lr": lr, "warmup": warmup,
            "total": total, "params": [{"name": n, "shape": list(s), "decay": d} for n, s, d in shapes],
            "init": init, "grads": grads, "norms": norms, "lrs": lrs, "after": after}

fixture = {
    "schedules": [{"kind": k, "warmup": w, "total": t, "factors": schedule_factors(k, w, t)}
                  for k in ("linear", "cosine", "constant") for (w, t) in ((0, 7), (3, 10), (4, 4))],
    "adamw": [adamw_case("clipped", 1.0, 4, 0.1, 1e-2, 1, 5),
              adamw_case("unclipped", 0.0, 3, 0.01, 3e-3, 0, 3),
              adamw_case("wide_clip", 1e3, 2, 0.5, 1e-1, 0, 2)],
}
with open(OUT, "w") as f:
    json.dump(fixture, f, indent=None)
print("wrote", OUT, os.path.getsize(OUT), "bytes")
