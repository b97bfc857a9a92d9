#!/usr/bin/env python3
"""What re-quantizing a quantized GGUF costs (docs/quant.md, "A GGUF that is already 4-bit"): for each Q4_1 / Q4_0 /
Q8_0 tensor of the file, its values (gguf.quants.dequantize: what ftc's f32 base holds) quantized again to its own
type (bytes that differ from the file's) and to q8_0, q4_0, q4_1, nf4 and bf16 (relative RMS error against the
file's values, over all tensors of the file's 4-bit type). ftc's quantizers are bit-identical to gguf.quants (and
nf4 to bitsandbytes: absmax per 64 values, the nearest of the 16 levels), so these are the values each
--base-dtype holds.

  /usr/bin/python3 tools/check_gguf_requant.py $(sh scripts/find-smollm2.sh)
"""
import sys

import gguf
import numpy as np

T = gguf.GGMLQuantizationType
NF4 = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                0.24611230790615082, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                0.7229568362236023, 1.0], dtype=np.float32)


def nf4(w):
    b = w.reshape(-1, 64)
    a = np.abs(b).max(1, keepdims=True)
    a[a == 0] = 1
    return (NF4[np.abs((b / a)[..., None] - NF4).argmin(-1)] * a).reshape(w.shape)


def bf16(w):
    u = w.view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000).astype(np.uint32).view(np.float32)


def main():
    r = gguf.GGUFReader(sys.argv[1])
    own = {}
    kinds = [t.tensor_type for t in r.tensors if t.tensor_type in (T.Q4_0, T.Q4_1)]
    four = max(set(kinds), key=kinds.count) if kinds else None
    err = dict.fromkeys(("q8_0", "q4_0", "q4_1", "nf4", "bf16"), 0.0)
    total = 0.0
    for t in r.tensors:
        if t.tensor_type not in (T.Q4_0, T.Q4_1, T.Q8_0):
            continue
        raw = np.asarray(t.data)
        w = gguf.quants.dequantize(raw, t.tensor_type).astype(np.float32)
        back = gguf.quants.quantize(w, t.tensor_type).reshape(raw.shape)
        n, same = own.get(t.tensor_type.name, (0, 0))
        own[t.tensor_type.name] = (n + raw.size, same + int((back == raw).sum()))
        if t.tensor_type != four:
            continue
        total += float((w.astype(np.float64) ** 2).sum())
        for k, q in (("q8_0", T.Q8_0), ("q4_0", T.Q4_0), ("q4_1", T.Q4_1)):
            err[k] += float(((gguf.quants.dequantize(gguf.quants.quantize(w, q), q) - w).astype(np.float64) ** 2).sum())
        if w.shape[-1] % 64 == 0:
            err["nf4"] += float(((nf4(w) - w).astype(np.float64) ** 2).sum())
        err["bf16"] += float(((bf16(w) - w).astype(np.float64) ** 2).sum())
    for k, (n, same) in own.items():
        print(f"{k} tensors re-quantized to {k}: {same} of {n} bytes identical")
    if four is not None:
        for k, v in err.items():
            print(f"{four.name} values as {k}: relative RMS error {100 * (v / total) ** 0.5:.4f}%")


if __name__ == "__main__":
    main()
