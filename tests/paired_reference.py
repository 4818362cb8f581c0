"""Independent oracle for results/paired.c: reads a sweep's summary.tsv and prints, for strategies A and B at each
given FLOP speed-up, the mean over shared (prompt, seed) pairs of A - B in PSNR, interpolated per pair with numpy
along log speed-up (runs of equal speed-up averaged, no extrapolation; inf PSNR clamped to 100 dB).

usage: paired_reference.py SUMMARY_TSV A B S1 [S2 ...]   -> one line per speed-up: "S mean pairs" ("S nan 0")"""
import sys
import numpy as np

path, a, b = sys.argv[1:4]
speedups = [float(x) for x in sys.argv[4:]]
rows = []
with open(path) as f:
    header = f.readline().rstrip("\n").split("\t")
    for line in f:
        rows.append(dict(zip(header, line.rstrip("\n").split("\t"))))


def curve(strategy, pid, seed):
    pts = {}
    for r in rows:
        if r["strategy"] != strategy or r["prompt_id"] != pid or r["seed"] != seed or r["status"] != "complete":
            continue
        if r["psnr"] == "NA" or r["speedup_flops"] == "NA":
            continue
        pts.setdefault(float(r["speedup_flops"]), []).append(float(r["psnr"]))
    s = sorted(pts)
    return np.log(np.array(s)), np.array([np.mean(pts[k]) for k in s])


pairs = sorted({(r["prompt_id"], r["seed"]) for r in rows if r["strategy"] == a}
               & {(r["prompt_id"], r["seed"]) for r in rows if r["strategy"] == b})
for sp in speedups:
    diffs = []
    for pid, seed in pairs:
        vals = []
        for strat in (a, b):
            ls, y = curve(strat, pid, seed)
            x = np.log(sp)
            if len(ls) == 0 or x < ls[0] - 1e-12 or x > ls[-1] + 1e-12:
                vals.append(None)
            else:
                vals.append(float(np.interp(x, ls, np.minimum(y, 100.0))))
        if None not in vals:
            diffs.append(vals[0] - vals[1])
    print(sp, np.mean(diffs) if diffs else float("nan"), len(diffs))
