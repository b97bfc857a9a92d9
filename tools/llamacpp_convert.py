"""Runs llama.cpp's own convert_hf_to_gguf.py (or convert_lora_to_gguf.py) from the tree scripts/build-llamacpp.sh
unpacked, on the Debian torch 1.13 of the reference stack: torch 1.13 has no float8 dtypes, which the converter
names in its dtype tables only (no checkpoint ftc exports holds float8), so stand-ins are set before it imports.
Also: Debian's numpy (see below).
Usage: python3 tools/llamacpp_convert.py LLAMA_SRC_DIR [hf|lora] CONVERTER_ARGS...   (fixture generators only)"""
import os
import runpy
import sys

src, kind, args = sys.argv[1], sys.argv[2], sys.argv[3:]
# Debian's torch 1.13 is built against Debian's numpy 1.24: a pip-installed numpy 2 earlier on the path makes
# torch.from_numpy fail ("Numpy is not available"), so Debian's numpy goes first.
if os.path.isdir("/usr/lib/python3/dist-packages/numpy"):
    sys.path.insert(0, "/usr/lib/python3/dist-packages")
import numpy  # noqa: E402,F401
import torch  # noqa: E402

for name in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "uint16", "uint32", "uint64"):
    if not hasattr(torch, name):
        setattr(torch, name, getattr(torch, "uint8") if name.startswith("uint") else torch.int8)
sys.path.insert(0, os.path.join(src, "gguf-py"))
sys.path.insert(0, src)
script = os.path.join(src, "convert_hf_to_gguf.py" if kind == "hf" else "convert_lora_to_gguf.py")
sys.argv = [script] + args
runpy.run_path(script, run_name="__main__")
