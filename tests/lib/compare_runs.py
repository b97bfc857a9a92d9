#!/usr/bin/env python3
"""Compares two ftc run directories (tests/cli_mpi.sh): the training loss of every step and every validation loss
in metrics.jsonl (relative tolerance), and every float of the final weights (RUNDIR/model/model.safetensors or
RUNDIR/adapter/adapter_model.safetensors) and of checkpoint.ftc (weights and AdamW moments):
|a - b| <= tol * max(1, |a|). Prints the largest differences and whether everything is bit-identical.
Exit 0 when within the tolerances, 1 otherwise. Standard library only.
usage: compare_runs.py RUN_A RUN_B [--loss-rtol 1e-6] [--param-tol 1e-5] [--bitwise]"""
import array, json, os, struct, sys


def losses(run):
    out = {}
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            o = json.loads(line)
            if "loss" in o:
                out[("loss", o["step"])] = o["loss"]
            if o.get("val_loss") is not None:
                out[("val_loss", o["step"])] = o["val_loss"]
    return out


def safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in head.items():
        if name == "__metadata__" or t["dtype"] != "F32":
            continue
        a, b = t["data_offsets"]
        out[name] = array.array("f", data[a:b])
    return out


def checkpoint(path):
    with open(path, "rb") as f:
        if f.read(8) != b"FTCCKPT1":
            raise SystemExit(path + ": not an ftc checkpoint")
        n = struct.unpack("<Q", f.read(8))[0]
        f.read(n)
        data = f.read()
    return {"checkpoint.ftc data": array.array("f", data[: len(data) // 4 * 4])}


def final_weights(run):
    for rel in ("model/model.safetensors", "adapter/adapter_model.safetensors"):
        p = os.path.join(run, rel)
        if os.path.exists(p):
            return rel, safetensors(p)
    raise SystemExit(run + ": no model/model.safetensors or adapter/adapter_model.safetensors")


def main():
    args = sys.argv[1:]
    loss_rtol, tol, bitwise = 1e-6, 1e-5, False
    if "--loss-rtol" in args:
        i = args.index("--loss-rtol"); loss_rtol = float(args[i + 1]); del args[i:i + 2]
    if "--param-tol" in args:
        i = args.index("--param-tol"); tol = float(args[i + 1]); del args[i:i + 2]
    if "--bitwise" in args:
        args.remove("--bitwise"); bitwise = True
    a, b = args
    ok = True
    la, lb = losses(a), losses(b)
    if set(la) != set(lb):
        print("metrics differ in their steps:", sorted(set(la) ^ set(lb))[:5])
        return 1
    worst_loss, identical = 0.0, True
    for k in sorted(la):
        x, y = la[k], lb[k]
        identical &= x == y
        r = abs(x - y) / max(abs(x), 1e-30)
        worst_loss = max(worst_loss, r)
        if r > loss_rtol:
            print("%s at step %d: %.9g vs %.9g (relative %.3g > %g)" % (k[0], k[1], x, y, r, loss_rtol))
            ok = False
    rel, wa = final_weights(a)
    _, wb = final_weights(b)
    wa.update(checkpoint(os.path.join(a, "checkpoint.ftc")))
    wb.update(checkpoint(os.path.join(b, "checkpoint.ftc")))
    worst_param, worst_name, n_values, n_diff = 0.0, "", 0, 0
    for name in wa:
        x, y = wa[name], wb.get(name)
        if y is None or len(x) != len(y):
            print("tensor %s missing or of another size in %s" % (name, b))
            return 1
        n_values += len(x)
        for u, v in zip(x, y):
            if u != v:
                n_diff += 1
                d = abs(u - v) / max(1.0, abs(u))
                if d > worst_param:
                    worst_param, worst_name = d, name
    identical &= n_diff == 0
    if worst_param > tol:
        print("weights differ by up to %.3g (> %g), in %s" % (worst_param, tol, worst_name))
        ok = False
    print("%d losses (largest relative difference %.3g), %d floats of %s + checkpoint.ftc (%d differ, largest %.3g%s): %s"
          % (len(la), worst_loss, n_values, rel, n_diff, worst_param, " in " + worst_name if worst_name else "", "bit-identical" if identical else "within tolerance" if ok else "OUT OF TOLERANCE"))
    if bitwise and not identical:
        print("expected bit-identical runs")
        ok = False
    return 0 if ok else 1


sys.exit(main())
