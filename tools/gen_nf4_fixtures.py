#!/usr/bin/env python3
"""NF4 fixtures for tests/test_quant.c (blocks of 64; NF4 with f32 absmax, NF4DQ with the absmax double-quantized):

  tests/fixtures/quant/nf4.gguf   for each case k: "NF4.k.src" (F32 input [rows, n]), "NF4.k" (I8: the blocks
                                  in ftc's layout, f32 absmax + 32 bytes of nibbles, high nibble first as
                                  bitsandbytes packs them) and "NF4.k.deq" (F32: bitsandbytes' dequantization);
                                  "NF4DQ.code" (F32 [256]: the 8-bit dynamic map) and for each case k "NF4DQ.k.src",
                                  "NF4DQ.k" (I8: ftc's NF4DQ weight, quant.h: [qabsmax, 32 nibble bytes] per block,
                                  zero padding to 64 bytes, f32 offset, f32 scale2 per 256 blocks; the bytes are
                                  bitsandbytes' packed nibbles, 8-bit absmax codes, state2.absmax and offset),
                                  "NF4DQ.k.deq" (F32: bitsandbytes' dequantize_4bit of that state)

References (bitsandbytes 0.50.2, the PyPI wheel, no torch needed here):
  quantization    bitsandbytes quantizes NF4 on the CPU with torch ops (backends/default/ops.py, quantize_4bit:
                  absmax per block, x * (1 / max(absmax, 1e-38)) clamped to [-1, 1], bucketize against the
                  midpoints of the NF4 table); its CPU library has no NF4 quantizer. This script does those f32
                  operations in numpy (bucketize == searchsorted side='left').
  dequantization  libbitsandbytes_cpu.so's cdequantize_blockwise_cpu_nf4_fp32, called with ctypes on the
                  packed bytes and absmax: the expected f32 values

NF4DQ (quantize_4bit(..., compress_statistics=True)): offset = absmax.mean() (torch, f32), then
  quantize_blockwise(absmax - offset, blocksize=256) with the dynamic map:
  dynamic map     create_dynamic_map() is torch f32 arithmetic whose last bits depend on torch's CPU kernels (its
                  linspace: 42 of 256 entries differ by an ulp between the scalar and the AVX2 kernels): DYN_HEX
                  below is torch 2.15's on an AVX2 CPU; --check-torch compares it
  mean            torch's CPU cascade sum (aten SumKernel.cpp) in one thread's order, 8-lane vectors (AVX2), then
                  / count in f32: torch_sum_avx2 below. Torch splits a sum over more than 32768 values (blocks, here:
                  tensors over 2M weights) between its threads, which changes the last bit with the thread count
  8-bit codes     libbitsandbytes_cpu.so's cquantize_blockwise_cpu_fp32 itself (the expected bytes and scale2)
  dequantization  cdequantize_blockwise_cpu_fp32 (absmax codes), + offset in f32 (torch), then
                  cdequantize_blockwise_cpu_nf4_fp32

  /usr/bin/python3 -m pip download --no-deps bitsandbytes==0.50.2 && unzip bitsandbytes-*.whl 'bitsandbytes/*'
  python3 tools/gen_nf4_fixtures.py --bnb-lib bitsandbytes/libbitsandbytes_cpu.so
  # optional: with torch importable (and bitsandbytes' Python package on the path), run the real
  # bitsandbytes.functional.quantize_4bit / dequantize_4bit (one torch thread) on every NF4DQ case and compare
  python3 tools/gen_nf4_fixtures.py --bnb-lib bitsandbytes/libbitsandbytes_cpu.so --check-torch
"""
import argparse
import ctypes as ct
import os

import numpy as np
import gguf

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "quant")
NF4 = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                0.7229568362236023, 1.0], dtype=np.float32)
BS = 64
DQ_BS = 256
DYN_HEX = """
-0x1.fc66660000000p-1 -0x1.f533340000000p-1 -0x1.ee00000000000p-1 -0x1.e6cccc0000000p-1 -0x1.df999a0000000p-1 -0x1.d866660000000p-1 -0x1.d133340000000p-1 -0x1.ca00000000000p-1
-0x1.c2cccc0000000p-1 -0x1.bb999a0000000p-1 -0x1.b466660000000p-1 -0x1.ad33340000000p-1 -0x1.a600000000000p-1 -0x1.9ecccc0000000p-1 -0x1.97999a0000000p-1 -0x1.9066660000000p-1
-0x1.8933340000000p-1 -0x1.8200000000000p-1 -0x1.7acccc0000000p-1 -0x1.73999a0000000p-1 -0x1.6c66680000000p-1 -0x1.6533340000000p-1 -0x1.5e00000000000p-1 -0x1.56cccc0000000p-1
-0x1.4f999a0000000p-1 -0x1.4866680000000p-1 -0x1.4133340000000p-1 -0x1.3a00000000000p-1 -0x1.32cccc0000000p-1 -0x1.2b999a0000000p-1 -0x1.2466680000000p-1 -0x1.1d33340000000p-1
-0x1.1600000000000p-1 -0x1.0ecccc0000000p-1 -0x1.0799980000000p-1 -0x1.0066660000000p-1 -0x1.f266640000000p-2 -0x1.e400000000000p-2 -0x1.d599980000000p-2 -0x1.c733340000000p-2
-0x1.b8cccc0000000p-2 -0x1.aa66660000000p-2 -0x1.9c00000000000p-2 -0x1.8d99980000000p-2 -0x1.7f33340000000p-2 -0x1.70cccc0000000p-2 -0x1.6266660000000p-2 -0x1.5400000000000p-2
-0x1.4599980000000p-2 -0x1.3733340000000p-2 -0x1.28cccc0000000p-2 -0x1.1a66680000000p-2 -0x1.0c00000000000p-2 -0x1.fb33320000000p-3 -0x1.de66660000000p-3 -0x1.c1999a0000000p-3
-0x1.a4cccc0000000p-3 -0x1.8800000000000p-3 -0x1.6b33340000000p-3 -0x1.4e66660000000p-3 -0x1.31999a0000000p-3 -0x1.14cccc0000000p-3 -0x1.f000000000000p-4 -0x1.b666680000000p-4
-0x1.93d70a0000000p-4 -0x1.8851ee0000000p-4 -0x1.7cccce0000000p-4 -0x1.7147ae0000000p-4 -0x1.65c2900000000p-4 -0x1.5a3d700000000p-4 -0x1.4eb8540000000p-4 -0x1.4333340000000p-4
-0x1.37ae140000000p-4 -0x1.2c28f60000000p-4 -0x1.20a3d60000000p-4 -0x1.151eba0000000p-4 -0x1.09999a0000000p-4 -0x1.fc28f60000000p-5 -0x1.e51eba0000000p-5 -0x1.ce147a0000000p-5
-0x1.b70a3e0000000p-5 -0x1.a000000000000p-5 -0x1.88f5c20000000p-5 -0x1.71eb860000000p-5 -0x1.5ae1460000000p-5 -0x1.43d70a0000000p-5 -0x1.2cccce0000000p-5 -0x1.15c2900000000p-5
-0x1.fd70a40000000p-6 -0x1.cf5c2a0000000p-6 -0x1.a147ae0000000p-6 -0x1.7333340000000p-6 -0x1.451eba0000000p-6 -0x1.170a3e0000000p-6 -0x1.d1eb860000000p-7 -0x1.75c2900000000p-7
-0x1.3e76c80000000p-7 -0x1.2c08300000000p-7 -0x1.19999a0000000p-7 -0x1.072b020000000p-7 -0x1.e978d40000000p-8 -0x1.c49ba60000000p-8 -0x1.9fbe760000000p-8 -0x1.7ae1480000000p-8
-0x1.56041a0000000p-8 -0x1.3126e80000000p-8 -0x1.0c49ba0000000p-8 -0x1.ced9140000000p-9 -0x1.851eb80000000p-9 -0x1.3b645a0000000p-9 -0x1.e353f80000000p-10 -0x1.4fdf3a0000000p-10
-0x1.eecbfe0000000p-11 -0x1.b3d07c0000000p-11 -0x1.78d5000000000p-11 -0x1.3dd9820000000p-11 -0x1.02de020000000p-11 -0x1.8fc5060000000p-12 -0x1.19ce0a0000000p-12 -0x1.47ae160000000p-13
-0x1.743e960000000p-14 -0x1.15df660000000p-14 -0x1.6f00680000000p-15 -0x1.64840c0000000p-16 -0x1.040bfe0000000p-17 -0x1.b435280000000p-19 -0x1.27476e0000000p-21 0x0.0p+0
0x1.27476e0000000p-21 0x1.b435280000000p-19 0x1.040bfe0000000p-17 0x1.64840c0000000p-16 0x1.6f00680000000p-15 0x1.15df660000000p-14 0x1.743e960000000p-14 0x1.47ae160000000p-13
0x1.19ce0a0000000p-12 0x1.8fc5060000000p-12 0x1.02de020000000p-11 0x1.3dd9820000000p-11 0x1.78d5000000000p-11 0x1.b3d07c0000000p-11 0x1.eecbfe0000000p-11 0x1.4fdf3a0000000p-10
0x1.e353f80000000p-10 0x1.3b645a0000000p-9 0x1.851eb80000000p-9 0x1.ced9140000000p-9 0x1.0c49ba0000000p-8 0x1.3126e80000000p-8 0x1.56041a0000000p-8 0x1.7ae1480000000p-8
0x1.9fbe760000000p-8 0x1.c49ba60000000p-8 0x1.e978d40000000p-8 0x1.072b020000000p-7 0x1.19999a0000000p-7 0x1.2c08300000000p-7 0x1.3e76c80000000p-7 0x1.75c2900000000p-7
0x1.d1eb860000000p-7 0x1.170a3e0000000p-6 0x1.451eba0000000p-6 0x1.7333340000000p-6 0x1.a147ae0000000p-6 0x1.cf5c2a0000000p-6 0x1.fd70a40000000p-6 0x1.15c2900000000p-5
0x1.2cccce0000000p-5 0x1.43d70a0000000p-5 0x1.5ae1460000000p-5 0x1.71eb860000000p-5 0x1.88f5c20000000p-5 0x1.a000000000000p-5 0x1.b70a3e0000000p-5 0x1.ce147a0000000p-5
0x1.e51eba0000000p-5 0x1.fc28f60000000p-5 0x1.09999a0000000p-4 0x1.151eba0000000p-4 0x1.20a3d60000000p-4 0x1.2c28f60000000p-4 0x1.37ae140000000p-4 0x1.4333340000000p-4
0x1.4eb8540000000p-4 0x1.5a3d700000000p-4 0x1.65c2900000000p-4 0x1.7147ae0000000p-4 0x1.7cccce0000000p-4 0x1.8851ee0000000p-4 0x1.93d70a0000000p-4 0x1.b666680000000p-4
0x1.f000000000000p-4 0x1.14cccc0000000p-3 0x1.31999a0000000p-3 0x1.4e66660000000p-3 0x1.6b33340000000p-3 0x1.8800000000000p-3 0x1.a4cccc0000000p-3 0x1.c1999a0000000p-3
0x1.de66660000000p-3 0x1.fb33320000000p-3 0x1.0c00000000000p-2 0x1.1a66680000000p-2 0x1.28cccc0000000p-2 0x1.3733340000000p-2 0x1.4599980000000p-2 0x1.5400000000000p-2
0x1.6266660000000p-2 0x1.70cccc0000000p-2 0x1.7f33340000000p-2 0x1.8d99980000000p-2 0x1.9c00000000000p-2 0x1.aa66660000000p-2 0x1.b8cccc0000000p-2 0x1.c733340000000p-2
0x1.d599980000000p-2 0x1.e400000000000p-2 0x1.f266640000000p-2 0x1.0066660000000p-1 0x1.0799980000000p-1 0x1.0ecccc0000000p-1 0x1.1600000000000p-1 0x1.1d33340000000p-1
0x1.2466680000000p-1 0x1.2b999a0000000p-1 0x1.32cccc0000000p-1 0x1.3a00000000000p-1 0x1.4133340000000p-1 0x1.4866680000000p-1 0x1.4f999a0000000p-1 0x1.56cccc0000000p-1
0x1.5e00000000000p-1 0x1.6533340000000p-1 0x1.6c66680000000p-1 0x1.73999a0000000p-1 0x1.7acccc0000000p-1 0x1.8200000000000p-1 0x1.8933340000000p-1 0x1.9066660000000p-1
0x1.97999a0000000p-1 0x1.9ecccc0000000p-1 0x1.a600000000000p-1 0x1.ad33340000000p-1 0x1.b466660000000p-1 0x1.bb999a0000000p-1 0x1.c2cccc0000000p-1 0x1.ca00000000000p-1
0x1.d133340000000p-1 0x1.d866660000000p-1 0x1.df999a0000000p-1 0x1.e6cccc0000000p-1 0x1.ee00000000000p-1 0x1.f533340000000p-1 0x1.fc66660000000p-1 0x1.0000000000000p+0
"""
DYN = np.array([float.fromhex(h) for h in DYN_HEX.split()], dtype=np.float32)


def quantize(x):
    """bitsandbytes' quantize_4bit (nf4, blocksize 64) in f32 numpy: packed [n/2] uint8, absmax [n/64] f32"""
    blocks = x.reshape(-1, BS).astype(np.float32)
    absmax = np.abs(blocks).max(axis=-1)
    inv = np.float32(1.0) / np.maximum(absmax, np.float32(1e-38))
    scaled = np.clip(blocks * inv[:, None], np.float32(-1), np.float32(1)).reshape(-1)
    bounds = ((NF4[:-1] + NF4[1:]) / np.float32(2)).astype(np.float32)
    q = np.searchsorted(bounds, scaled, side="left").astype(np.uint8)
    return (q[0::2] << 4) | q[1::2], absmax.astype(np.float32)


def ceil_log2(x):
    return 1 if x <= 2 else int(x - 1).bit_length()


def torch_sum_avx2(x):
    """torch's CPU sum of a contiguous f32 vector (SumKernel.cpp cascade_sum, vectorized_inner_sum), in one
    thread's order with 8-lane vectors: row_sum over 4 interleaved vectors (ilp) through a 4-level cascade"""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, V = x.size, 8
    nv = n // V
    vecs = x[:nv * V].reshape(nv, V)
    nilp = nv // 4
    lp = max(4, ceil_log2(nilp) // 4)
    step, mask = 1 << lp, (1 << lp) - 1
    acc = np.zeros((4, 4, V), np.float32)
    i = 0
    while i + step <= nilp:
        for _ in range(step):
            acc[0] += vecs[4 * i:4 * i + 4]
            i += 1
        for j in range(1, 4):
            acc[j] += acc[j - 1]
            acc[j - 1] = 0
            if i & (mask << (j * lp)):
                break
    while i < nilp:
        acc[0] += vecs[4 * i:4 * i + 4]
        i += 1
    for j in range(1, 4):
        acc[0] += acc[j]
    part = acc[0]
    for r in range(nilp * 4, nv):
        part[0] += vecs[r]
    for k in range(1, 4):
        part[0] += part[k]
    s = np.float32(0)
    for r in range(nv * V, n):
        s = np.float32(s + x[r])
    for l in range(V):
        s = np.float32(s + part[0][l])
    return s


def nf4dq(lib, x):
    """bitsandbytes' quantize_4bit(x, nf4, 64, compress_statistics=True) and dequantize_4bit of it:
    packed nibbles, qabsmax (uint8 per block), scale2 (f32 per 256 blocks), offset, dequantized values"""
    rows, n = x.shape
    packed, absmax = quantize(x)
    nb = absmax.size
    offset = np.float32(torch_sum_avx2(absmax) / np.float32(nb))
    v = np.ascontiguousarray(absmax - offset, dtype=np.float32)
    code = DYN.copy()
    q8 = np.zeros(nb, np.uint8)
    scale2 = np.zeros((nb + DQ_BS - 1) // DQ_BS, np.float32)
    lib.cquantize_blockwise_cpu_fp32(code.ctypes.data, v.ctypes.data, scale2.ctypes.data, q8.ctypes.data,
                                     DQ_BS, nb)
    assert (code == DYN).all()
    am = np.zeros(nb, np.float32)
    lib.cdequantize_blockwise_cpu_fp32(code.ctypes.data, q8.ctypes.data, scale2.ctypes.data, am.ctypes.data,
                                       DQ_BS, nb)
    am = (am + offset).astype(np.float32)
    out = np.empty(x.size, dtype=np.float32)
    lib.cdequantize_blockwise_cpu_nf4_fp32(packed.ctypes.data, am.ctypes.data, out.ctypes.data, BS, rows, n)
    return packed, q8, scale2, offset, out.reshape(rows, n)


def ftc_layout(packed, q8, scale2, offset):
    """ftc's NF4DQ weight (include/ftc/quant.h): [qabsmax, 32 nibble bytes] per block, zero padding to a multiple of
    64 bytes, then f32 offset and f32 scale2[]"""
    blocks = np.concatenate([q8.reshape(-1, 1), packed.reshape(-1, BS // 2)], axis=1).reshape(-1)
    pad = np.zeros((-blocks.size) % 64, np.uint8)
    tail = np.concatenate([np.array([offset], np.float32), scale2]).view(np.uint8)
    return np.concatenate([blocks, pad, tail])


def check_torch(cases, results):
    """the real bitsandbytes (torch, CPU, one thread) on every case: counts of differing bytes / values"""
    import torch
    import bitsandbytes.functional as F
    torch.set_num_threads(1)
    code = F.create_dynamic_map().numpy()
    print("dynamic map entries differing from DYN_HEX:", int((code != DYN).sum()))
    diff = {"nibbles": 0, "qabsmax": 0, "scale2": 0, "offset": 0, "deq": 0}
    for x, (packed, q8, scale2, offset, deq) in zip(cases, results):
        q, st = F.quantize_4bit(torch.from_numpy(x), blocksize=64, compress_statistics=True, quant_type="nf4")
        diff["nibbles"] += int((q.numpy().reshape(-1) != packed).sum())
        diff["qabsmax"] += int((st.absmax.numpy() != q8).sum())
        diff["scale2"] += int((st.state2.absmax.numpy() != scale2).sum())
        diff["offset"] += int(np.float32(st.offset.item()) != offset)
        diff["deq"] += int((F.dequantize_4bit(q, st).numpy() != deq).sum())
    print("real bitsandbytes vs this script (differing counts):", diff)
    assert not any(diff.values())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bnb-lib", required=True, help="libbitsandbytes_cpu.so from the bitsandbytes wheel")
    ap.add_argument("--check-torch", action="store_true", help="compare NF4DQ with the real bitsandbytes (needs torch)")
    args = ap.parse_args()
    lib = ct.CDLL(os.path.abspath(args.bnb_lib))
    f = lib.cdequantize_blockwise_cpu_nf4_fp32
    f.argtypes = [ct.c_void_p, ct.c_void_p, ct.c_void_p, ct.c_longlong, ct.c_longlong, ct.c_longlong]
    for name in ("cquantize_blockwise_cpu_fp32", "cdequantize_blockwise_cpu_fp32"):
        getattr(lib, name).argtypes = [ct.c_void_p, ct.c_void_p, ct.c_void_p, ct.c_void_p, ct.c_longlong,
                                       ct.c_longlong]
    rng = np.random.default_rng(44)
    cases = [rng.standard_normal((8, 256)), rng.standard_t(3, (16, 512)) * 0.03, rng.uniform(-2, 5, (4, 128)),
             rng.standard_normal((2, 128)) * 1e-30]
    z = rng.standard_normal((4, 128))
    z[0, :64] = 0
    z[1, :64] = -0.5
    z[2, 64:] = np.tile(NF4, 4) * 3           # exactly on the code points
    z[3, :15] = (NF4[:-1] + NF4[1:]) / 2       # exactly on the midpoints (ties), scaled by absmax 1
    z[3, 15] = 1.0
    cases.append(z)
    w = gguf.GGUFWriter(os.path.join(OUT, "nf4.gguf"), "test")
    w.add_string("ftc.nf4.reference", "bitsandbytes 0.50.2: quantize_4bit (default backend) in numpy; "
                 "libbitsandbytes_cpu.so cdequantize_blockwise_cpu_nf4_fp32; NF4DQ: torch's f32 mean (AVX2 order, "
                 "one thread), cquantize_blockwise_cpu_fp32 / cdequantize_blockwise_cpu_fp32 with torch 2.15's "
                 "dynamic map")
    nblocks = 0
    for k, x in enumerate(cases):
        x = np.ascontiguousarray(x, dtype=np.float32)
        rows, n = x.shape
        packed, absmax = quantize(x)
        out = np.empty(x.size, dtype=np.float32)
        f(packed.ctypes.data, absmax.ctypes.data, out.ctypes.data, BS, rows, n)
        blocks = np.concatenate([absmax.view(np.uint8).reshape(-1, 4), packed.reshape(-1, BS // 2)], axis=1)
        w.add_tensor("NF4.%d.src" % k, x)
        w.add_tensor("NF4.%d" % k, blocks.reshape(rows, -1).view(np.int8))
        w.add_tensor("NF4.%d.deq" % k, out.reshape(rows, n))
        nblocks += x.size // BS
    # NF4DQ: 256-block groups whole and cut short, one group, widely varying absmax, zero and constant tensors
    drng = np.random.default_rng(18)
    heavy = drng.standard_t(3, (32, 1024)).astype(np.float32) * 0.02
    rowscale = drng.standard_normal((48, 640)) * np.exp(drng.uniform(-6, 2, (48, 1)))
    const = np.full((8, 128), 0.25)
    const[::2] = -0.25
    mixed = drng.standard_normal((40, 192))
    mixed[:5] = 0                                            # all-zero blocks below the mean
    mixed[5, :64] = 1e-30
    dq_cases = [np.ascontiguousarray(c, dtype=np.float32) for c in
                (drng.standard_normal((64, 256)) * 0.02,      # 256 blocks: one whole group
                 heavy,                                       # 512 blocks: 2 groups
                 rowscale,                                    # 480 blocks: 1 group + 224
                 drng.standard_normal((150, 128)),            # 300 blocks: 1 group + 44
                 mixed,                                       # 120 blocks: one short group
                 const,                                       # all absmax equal: scale2 = 0
                 np.zeros((2, 64)))]                          # a single zero block
    results = [nf4dq(lib, x) for x in dq_cases]
    w.add_tensor("NF4DQ.code", DYN.copy())
    dq_blocks = 0
    for k, (x, r) in enumerate(zip(dq_cases, results)):
        packed, q8, scale2, offset, deq = r
        w.add_tensor("NF4DQ.%d.src" % k, x)
        w.add_tensor("NF4DQ.%d" % k, ftc_layout(packed, q8, scale2, offset).view(np.int8))
        w.add_tensor("NF4DQ.%d.deq" % k, deq)
        dq_blocks += q8.size
    if args.check_torch:
        check_torch(dq_cases, results)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print("NF4 blocks:", nblocks, "NF4DQ cases:", len(dq_cases), "blocks:", dq_blocks, "256-groups:",
          sum(r[2].size for r in results))


if __name__ == "__main__":
    main()
