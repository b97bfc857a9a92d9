#!/usr/bin/python3
"""Checks a model written by `ftc init` against transformers' own random initialisation (developer tool;
CI does not run it: it needs torch + transformers, i.e. Debian's /usr/bin/python3).

    /usr/bin/python3 tools/check_init.py DIR [DIR ...]

For each DIR (config.json + model.safetensors from `ftc init`):
  1. transformers loads it with the architecture from config.json: no missing and no unexpected tensors;
  2. it builds the same config with transformers' initialisation (from_config, fixed seed) and compares,
     per tensor type (the name with layer numbers replaced by *), the mean and std of the values:
     std within 5 % (relative; 4/sqrt(2n) for small tensors) for random tensors, the constants (zero biases, unit norms) equal.
Prints a table per model and exits 1 if anything differs.
"""
import json
import math
import os
import re
import sys

import torch


def kind(name):
    return re.sub(r"\.\d+\.", ".*.", name)


def stats(state):
    groups = {}
    for name, t in state.items():
        if not torch.is_floating_point(t):
            continue
        groups.setdefault(kind(name), []).append(t.detach().float().reshape(-1))
    out = {}
    for k, ts in groups.items():
        v = torch.cat(ts).double()
        out[k] = (v.numel(), float(v.mean()), float(v.std()) if v.numel() > 1 else 0.0, float(v.min()), float(v.max()))
    return out


def check(dir_):
    import transformers
    from transformers import AutoConfig
    transformers.logging.set_verbosity_error()
    cfg = AutoConfig.from_pretrained(dir_)
    arch = (cfg.architectures or ["AutoModel"])[0]
    cls = getattr(transformers, arch)
    ours, info = cls.from_pretrained(dir_, output_loading_info=True, torch_dtype=torch.float32)
    problems = []
    # Buffers that transformers recomputes (rotary inv_freq, position_ids, GPT-2's causal mask) are not weights.
    ignore = re.compile(r"(inv_freq|position_ids|attn\.bias|attn\.masked_bias)$")
    missing = [k for k in info["missing_keys"] if not ignore.search(k)]
    if missing:
        problems.append(f"transformers found no tensor for: {missing}")
    if info["unexpected_keys"]:
        problems.append(f"tensors transformers does not expect: {info['unexpected_keys']}")
    torch.manual_seed(0)
    ref = cls._from_config(cfg, torch_dtype=torch.float32)
    with open(os.path.join(dir_, "config.json")) as f:
        stored = json.load(f).get("torch_dtype", "float32")
    # bf16 keeps 8 bits of mantissa: its statistics differ from f32 by far less than the 5 % tolerance.
    s_ours, s_ref = stats(ours.state_dict()), stats(ref.state_dict())
    print(f"\n{dir_}: {arch}, stored as {stored}")
    print(f"{'tensor type':58s} {'n':>10s} {'ftc mean':>10s} {'ftc std':>10s} {'hf std':>10s} {'ratio':>7s}")
    for k in sorted(s_ref):
        n, m_r, sd_r, lo_r, hi_r = s_ref[k]
        if k not in s_ours:
            continue
        _, m_o, sd_o, lo_o, hi_o = s_ours[k]
        if sd_r == 0.0:  # a constant: zero bias, unit norm, zeroed row
            ok = sd_o == 0.0 and abs(m_o - m_r) < 1e-6
            ratio = float("nan")
        else:
            ratio = sd_o / sd_r
            # n draws estimate a std to about 1/sqrt(2n) relative; the mean is within a few s/sqrt(n) of 0
            ok = abs(ratio - 1) < max(0.05, 4 / math.sqrt(2 * n)) and abs(m_o - m_r) < 6 * sd_r / math.sqrt(n) + 1e-4
        flag = "" if ok else "   <-- differs"
        print(f"{k:58s} {n:10d} {m_o:10.5f} {sd_o:10.5f} {sd_r:10.5f} {ratio:7.3f}{flag}")
        if not ok:
            problems.append(f"{k}: ftc mean {m_o:.5g} std {sd_o:.5g}, transformers mean {m_r:.5g} std {sd_r:.5g}")
    # transformers zeroes the embedding row of padding_idx; check that row on its own
    for name, mod in ref.named_modules():
        if isinstance(mod, torch.nn.Embedding) and mod.padding_idx is not None:
            w = dict(ours.named_modules())[name].weight
            if float(w[mod.padding_idx].abs().max()) != 0.0:
                problems.append(f"{name}.weight row {mod.padding_idx} (padding_idx) is not zero as transformers makes it")
    for p in problems:
        print("PROBLEM:", p)
    return not problems


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 1
    ok = all([check(d) for d in sys.argv[1:]])
    print("\nall match transformers' initialisation" if ok else "\nsome tensors differ (see PROBLEM lines)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
