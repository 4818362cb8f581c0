#!/usr/bin/env python3
"""Per-step transformation rate k of EasyCache runs: prints k (cond branch) per step for each run record, and a
summary of how much it varies early vs late in the trajectory.

Run full inference with k measured at every step by an EasyCache that never reuses:
    build/cachebench run --prompt "..." --strategy easycache:thresh=0,warmup=0 --out DIR
then  /usr/bin/python3 scripts/k_trace.py DIR/*.h5
k is mean|y_t - y_{t-1}| / mean|x_t - x_{t-1}| between consecutive computed steps (all of them here); the value a
step records is the one its decision used, i.e. measured up to the previous step."""
import sys

import h5py
import numpy as np


def main(paths):
    if not paths:
        print(__doc__)
        return 2
    rows = []
    for path in paths:
        with h5py.File(path, "r") as f:
            k = f["steps/k"][:, 0].astype(float)
            prompt = f.attrs["prompt"]
        valid = np.isfinite(k)
        ks = k[valid]
        n = len(ks)
        if n < 6:
            print("%s: too few k values (%d)" % (path, n))
            continue
        third = n // 3
        early, mid, late = ks[:third], ks[third:2 * third], ks[2 * third:]
        cv = lambda a: float(np.std(a) / np.mean(a))
        rows.append((prompt, early, mid, late))
        print("%s  \"%s\"" % (path, prompt))
        print("  k per step: " + " ".join("%.3f" % v for v in k))
        print("  mean k early/mid/late thirds: %.3f / %.3f / %.3f;  coefficient of variation: %.3f / %.3f / %.3f"
              % (early.mean(), mid.mean(), late.mean(), cv(early), cv(mid), cv(late)))
        print("  max |k_t/k_{t-1} - 1|  early/late: %.3f / %.3f"
              % (np.max(np.abs(early[1:] / early[:-1] - 1)), np.max(np.abs(late[1:] / late[:-1] - 1))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
