#!/usr/bin/env python3
"""NF4 fixtures for tests/test_quant.c (blocks of 64, per-block absmax, no double quantization):

  tests/fixtures/quant/nf4.gguf   for each case k: "NF4.k.src" (F32 input [rows, n]), "NF4.k" (I8: the blocks
                                  in ftc's layout, f32 absmax + 32 bytes of nibbles, high nibble first as
                                  bitsandbytes packs them) and "NF4.k.deq" (F32: bitsandbytes' dequantization)

References (bitsandbytes 0.50.2, the PyPI wheel, no torch needed here):
  quantization    bitsandbytes quantizes NF4 on the CPU with torch ops (backends/default/ops.py, quantize_4bit:
                  absmax per block, x * (1 / max(absmax, 1e-38)) clamped to [-1, 1], bucketize against the
                  midpoints of the NF4 table); its CPU library has no NF4 quantizer. This script does those f32
                  operations in numpy (bucketize == searchsorted side='left').
  dequantization  libbitsandbytes_cpu.so's cdequantize_blockwise_cpu_nf4_fp32, called with ctypes on the
                  packed bytes and absmax: the expected f32 values

  /usr/bin/python3 -m pip download --no-deps bitsandbytes==0.50.2 && unzip bitsandbytes-*.whl 'bitsandbytes/*cpu.so'
  /usr/bin/python3 tools/gen_nf4_fixtures.py --bnb-lib bitsandbytes/libbitsandbytes_cpu.so
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


def quantize(x):
    """bitsandbytes' quantize_4bit (nf4, blocksize 64) in f32 numpy: packed [n/2] uint8, absmax [n/64] f32"""
    blocks = x.reshape(-1, BS).astype(np.float32)
    absmax = np.abs(blocks).max(axis=-1)
    inv = np.float32(1.0) / np.maximum(absmax, np.float32(1e-38))
    scaled = np.clip(blocks * inv[:, None], np.float32(-1), np.float32(1)).reshape(-1)
    bounds = ((NF4[:-1] + NF4[1:]) / np.float32(2)).astype(np.float32)
    q = np.searchsorted(bounds, scaled, side="left").astype(np.uint8)
    return (q[0::2] << 4) | q[1::2], absmax.astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bnb-lib", required=True, help="libbitsandbytes_cpu.so from the bitsandbytes wheel")
    args = ap.parse_args()
    lib = ct.CDLL(os.path.abspath(args.bnb_lib))
    f = lib.cdequantize_blockwise_cpu_nf4_fp32
    f.argtypes = [ct.c_void_p, ct.c_void_p, ct.c_void_p, ct.c_longlong, ct.c_longlong, ct.c_longlong]
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
                 "libbitsandbytes_cpu.so cdequantize_blockwise_cpu_nf4_fp32")
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
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print("NF4 blocks:", nblocks)


if __name__ == "__main__":
    main()
