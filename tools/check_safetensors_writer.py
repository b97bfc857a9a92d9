#!/usr/bin/env python3
"""Checks that a file written by ftc's safetensors writer loads in the Python `safetensors` package
and holds exactly the values ftc meant to write, with F16/BF16 rounded as torch rounds them.

ftc writes the file from tests/test_safetensors.c (test_writer_sample_for_python, FTC_ST_SAMPLE set);
this script then loads it with safetensors.torch and compares bit for bit.
Needs torch + safetensors (Debian's /usr/bin/python3 here). Run from the repository root after `make`:
    /usr/bin/python3 tools/check_safetensors_writer.py [BUILD_DIR]
Exit 0 and "OK" when everything matches."""
import os, subprocess, sys, tempfile
import torch
from safetensors import safe_open
from safetensors.torch import load_file

build = sys.argv[1] if len(sys.argv) > 1 else "build"
# the values SAMPLE[] in tests/test_safetensors.c, as f32
SAMPLE = [0.0, -0.0, 1.0, -2.5, 3.14159265, 1.0 + 1.0 / 2048, 1.0 + 3.0 / 2048, 65504.0, 65519.0, 65520.0, 1e-8,
          6.1e-5, 1e30, -1e-3, 0.1]

with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "ftc_sample.safetensors")
    env = dict(os.environ, FTC_ST_SAMPLE=path)
    run = subprocess.run([os.path.join(build, "test_safetensors")], env=env, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit("test_safetensors failed:\n" + run.stdout + run.stderr)
    t = load_file(path)
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
    raw = open(path, "rb").read()

failures = []
def check(what, ok):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)

hlen = int.from_bytes(raw[:8], "little")
check("header length %d is a multiple of 8, padded with spaces" % hlen,
      hlen % 8 == 0 and raw[8:8 + hlen].rstrip(b" ").endswith(b"}"))
check("metadata %r" % meta, meta == {"format": "pt", "producer": "ftc \u00e9"})
check("tensor names", sorted(t) == sorted(["f32", "f16", "bf16", "i64", "i32", "u8", "f64", "scalar", "empty"]))
ref = torch.tensor(SAMPLE, dtype=torch.float32).reshape(3, 5)
for name, dt in [("f32", torch.float32), ("f16", torch.float16), ("bf16", torch.bfloat16)]:
    want = ref.to(dt)
    got = t[name]
    same_bits = got.dtype == dt and got.shape == want.shape and torch.equal(got.view(torch.int16 if dt != torch.float32 else torch.int32),
                                                                          want.view(torch.int16 if dt != torch.float32 else torch.int32))
    check("%s %s equals torch's own conversion bit for bit" % (name, tuple(got.shape)), same_bits)
check("i64", t["i64"].dtype == torch.int64 and t["i64"].tolist() == [0, -1, 1 << 40, -(1 << 63)])
check("i32", t["i32"].dtype == torch.int32 and t["i32"].tolist() == [[1, -2], [2147483647, -2147483648]])
check("u8", t["u8"].dtype == torch.uint8 and t["u8"].tolist() == [0, 127, 255])
check("f64", t["f64"].dtype == torch.float64 and t["f64"].tolist() == [1.0 / 3, -1e300])
check("scalar (shape [])", t["scalar"].shape == () and t["scalar"].item() == torch.tensor(3.14159265).item())
check("empty (shape [0, 3])", tuple(t["empty"].shape) == (0, 3))
print("OK" if not failures else "%d check(s) failed" % len(failures))
sys.exit(1 if failures else 0)
