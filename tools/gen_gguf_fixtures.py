#!/usr/bin/env python3
"""Fixtures for tests/test_gguf.c, written with the PyPI `gguf` package (the oracle):

  tests/fixtures/gguf/dequant.gguf   tensors "<TYPE>.<k>" of every type ftc dequantizes, several shapes
  tests/fixtures/gguf/dequant.f32    gguf.quants.dequantize of each, f32 little-endian, in file order
  tests/fixtures/gguf/meta.gguf      metadata of every value type (nested arrays too), alignment 64

Quantized data: gguf's own quantizer where it has one (Q4_0..Q8_0, BF16), plus random block bytes
(the scale fields set to finite f16) for every quantized type, so every bit pattern of the
quants is exercised, the k-quants included (gguf has no quantizer for them).

  /usr/bin/python3 -m pip install --break-system-packages gguf numpy
  /usr/bin/python3 tools/gen_gguf_fixtures.py
"""
import os

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "gguf")
rng = np.random.default_rng(17)

# f16 fields (byte offsets inside one block) that are scales: random bytes there could be inf/NaN
SCALE_FIELDS = {T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0], T.Q2_K: [80, 82],
                T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208]}
QUANTIZABLE = {T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0}


def random_blocks(qtype, rows, ne0):
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    nb = rows * ne0 // block
    raw = rng.integers(0, 256, size=(nb, size), dtype=np.uint8)
    for off in SCALE_FIELDS[qtype]:
        scale = (rng.standard_normal(nb) * 0.05).astype(np.float16)
        scale[0] = np.float16(0)  # a zero scale
        raw[:, off:off + 2] = scale.view(np.uint8).reshape(nb, 2)
    return raw.reshape(rows, ne0 // block * size)


def main():
    os.makedirs(OUT, exist_ok=True)
    w = gguf.GGUFWriter(os.path.join(OUT, "dequant.gguf"), "test")
    expected = []

    def add(name, raw, qtype, shape):
        """raw: bytes as uint8 array [rows, row_bytes]; shape: row-major element shape."""
        raw = raw.reshape(list(shape[:-1]) + [raw.size // int(np.prod(shape[:-1], dtype=np.int64))])
        w.add_tensor(name, raw, raw_dtype=qtype)  # uint8 data: gguf takes the shape in bytes
        out = dequantize(raw, qtype)
        assert out.shape == tuple(shape), (name, out.shape, shape)
        expected.append(np.ascontiguousarray(out, dtype=np.float32).reshape(-1))

    # plain float types
    f = rng.standard_normal((3, 40)).astype(np.float32)
    f[0, :4] = [0.0, -0.0, 1e-40, 3.4e38]
    add("F32.0", f.view(np.uint8).reshape(3, 160), T.F32, (3, 40))
    h = rng.integers(0, 0x7c00, size=(2, 3, 16), dtype=np.uint16) | (rng.integers(0, 2, (2, 3, 16), dtype=np.uint16) << 15)
    h.reshape(-1)[:5] = [0x0000, 0x8000, 0x0001, 0x03ff, 0x7c00]  # zeros, subnormals, inf
    add("F16.0", h.view(np.uint8).reshape(6, 32), T.F16, (2, 3, 16))
    b = rng.integers(0, 0x7f80, size=(4, 24), dtype=np.uint16) | (rng.integers(0, 2, (4, 24), dtype=np.uint16) << 15)
    add("BF16.0", b.view(np.uint8).reshape(4, 48), T.BF16, (4, 24))
    bq = quantize(rng.standard_normal((2, 8)).astype(np.float32), T.BF16)
    add("BF16.1", bq.view(np.uint8).reshape(2, 16), T.BF16, (2, 8))

    for qtype in [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]:
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        k = 0
        for shape in ([block * 2], [3, block], [2, 2, block * 2]):
            rows = int(np.prod(shape[:-1]))
            add(f"{qtype.name}.{k}", random_blocks(qtype, rows, shape[-1]), qtype, shape)
            k += 1
        if qtype in QUANTIZABLE:
            x = (rng.standard_normal((4, block * 2)) * rng.uniform(0.01, 3, (4, 1))).astype(np.float32)
            q = quantize(x, qtype)
            add(f"{qtype.name}.{k}", q, qtype, x.shape)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    np.concatenate(expected).astype("<f4").tofile(os.path.join(OUT, "dequant.f32"))

    # metadata of every type, a custom alignment, two tensors
    m = gguf.GGUFWriter(os.path.join(OUT, "meta.gguf"), "llama")
    m.add_custom_alignment(64)
    m.add_uint8("t.u8", 200)
    m.add_int8("t.i8", -100)
    m.add_uint16("t.u16", 60000)
    m.add_int16("t.i16", -30000)
    m.add_uint32("t.u32", 4000000000)
    m.add_int32("t.i32", -2000000000)
    m.add_float32("t.f32", 0.15625)
    m.add_uint64("t.u64", 2**63 + 5)
    m.add_int64("t.i64", -(2**40))
    m.add_float64("t.f64", 1e-300)
    m.add_bool("t.bool", True)
    m.add_string("t.str", "héllo <|im_start|>")
    m.add_array("t.arr_str", ["a", "", "ü€"])
    m.add_key_value("t.arr_i32", [3, -7, 11], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.INT32)
    m.add_key_value("t.arr_f32", [0.5, -2.25], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.FLOAT32)
    m.add_key_value("t.arr_bool", [True, False], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.BOOL)
    m.add_key_value("t.arr_nested", [[1, 2], [3]], gguf.GGUFValueType.ARRAY)
    m.add_tensor("a", np.arange(5, dtype=np.float32))
    m.add_tensor("b", np.arange(6, dtype=np.float16).reshape(2, 3))
    m.write_header_to_file()
    m.write_kv_data_to_file()
    m.write_tensors_to_file()
    m.close()
    for fn in sorted(os.listdir(OUT)):
        print(fn, os.path.getsize(os.path.join(OUT, fn)))


if __name__ == "__main__":
    main()
