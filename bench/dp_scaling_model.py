#!/usr/bin/env python3
"""The scaling model of docs/distributed.md, on paper: the step time of data-parallel training on N nodes,

    step(N) = compute / N + allreduce(bytes, N)          (no overlap: ftc today)
    allreduce(S, N) = 2 (N - 1) / N * S / bandwidth + 2 (N - 1) * latency     (ring: reduce-scatter + all-gather)

with compute = the one-node step time for the global batch (tokens_per_step / node_tok_s) and S = 4 bytes per
trainable weight (f32 gradients). With the all-reduce overlapped with the backward (buckets, as DDP does), all
but the last bucket hides behind the backward's 2/3 of the compute:

    step_overlap(N) = compute / N + max(allreduce * (1 - 1/buckets) - (2/3) compute / N, 0) + allreduce / buckets

ZeRO-1 (the optimizer state sharded) moves the same bytes (a ring all-reduce is a reduce-scatter + all-gather);
it divides the AdamW moments' memory (8 bytes per weight) and the optimizer step by N, which this model leaves
out (the update is ~1% of a step).

usage: dp_scaling_model.py NODE_TOK_S_GPT2 [--tokens-per-step 524288] [--latency-us 30] [--buckets 25]
NODE_TOK_S_GPT2: training tokens/s of one node on gpt2-small (bench/dp_bench.sh's 1-process figure, scaled to the
node you have in mind); the 1B model's is that times 124.4/1100 (compute ~ 6 x weights per token).
Prints markdown tables: step seconds and parallel efficiency (step(1) / (N step(N))) per N and link speed."""
import sys

MODELS = [("gpt2-small", 124.4e6), ("1B (Llama-3.2-1B-like)", 1100e6)]
NODES = [1, 2, 4, 8, 16, 32, 64]
LINKS = [10, 25, 100]  # Gbit/s


def allreduce(nbytes, n, gbit, latency):
    if n == 1:
        return 0.0
    return 2 * (n - 1) / n * nbytes / (gbit * 1e9 / 8) + 2 * (n - 1) * latency


def main():
    a = sys.argv[1:]
    if not a:
        print(__doc__)
        return 1
    tok_s_gpt2 = float(a[0])
    opt = {"--tokens-per-step": 524288, "--latency-us": 30.0, "--buckets": 25}
    for k in opt:
        if k in a:
            opt[k] = type(opt[k])(a[a.index(k) + 1])
    tokens, latency, buckets = opt["--tokens-per-step"], opt["--latency-us"] * 1e-6, opt["--buckets"]
    print("Global batch %d tokens per step; one node: %.0f tokens/s on gpt2-small; ring all-reduce, latency %g us per"
          " hop; f32 gradients.\n" % (tokens, tok_s_gpt2, opt["--latency-us"]))
    for name, weights in MODELS:
        tok_s = tok_s_gpt2 * 124.4e6 / weights
        compute = tokens / tok_s
        nbytes = 4 * weights
        print("**%s** (%.0fM weights, %.2f GB of gradients; one node: %.1f s per step)\n" % (name, weights / 1e6,
                                                                                               nbytes / 1e9, compute))
        head = "| nodes | " + " | ".join("%d Gbit/s: step (efficiency) | overlapped" % g for g in LINKS) + " |"
        print(head)
        print("|---" * (1 + 2 * len(LINKS)) + "|")
        for n in NODES:
            cells = []
            for g in LINKS:
                ar = allreduce(nbytes, n, g, latency)
                step = compute / n + ar
                hidden = max(ar * (1 - 1 / buckets) - (2 / 3) * compute / n, 0) + ar / buckets if n > 1 else 0
                step_ov = compute / n + hidden
                cells.append("%.2f s (%.0f%%) | %.2f s (%.0f%%)" % (step, 100 * compute / (n * step), step_ov,
                                                                  100 * compute / (n * step_ov)))
            print("| %d | %s |" % (n, " | ".join(cells)))
        print()
    return 0


sys.exit(main())
