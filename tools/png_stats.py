#!/usr/bin/env python3
"""Colour statistics of a PNG screenshot, standard library only (tests/cli_report.sh uses it to tell a drawn
report from a blank or error page). Prints: width height non_white_share distinct_colours, then for each
#rrggbb given on the command line the number of pixels of exactly that colour.

    python3 tools/png_stats.py FILE.png [#1f77b4 ...]"""
import struct
import sys
import zlib


def pixels(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise SystemExit(f"{path}: not a PNG")
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            if depth != 8 or ctype not in (2, 6):
                raise SystemExit(f"{path}: colour type {ctype} depth {depth} not handled")
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, stride = zlib.decompress(idat), w * bpp
    prev, rows = bytearray(stride), []
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b, c = prev[x], prev[x - bpp] if x >= bpp else 0
            if f == 1: line[x] = (line[x] + a) & 255
            elif f == 2: line[x] = (line[x] + b) & 255
            elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, bpp, rows


w, h, bpp, rows = pixels(sys.argv[1])
counts = {}
for line in rows:
    for x in range(0, len(line), bpp):
        rgb = line[x:x + 3]
        counts[rgb] = counts.get(rgb, 0) + 1
white = counts.get(b"\xff\xff\xff", 0)
out = [str(w), str(h), "%.4f" % (1 - white / (w * h)), str(len(counts))]
for col in sys.argv[2:]:
    out.append(str(counts.get(bytes.fromhex(col.lstrip("#")), 0)))
print(" ".join(out))
