#!/usr/bin/python3
"""Opens a cachebench sweep folder as one xarray Dataset.

    import sys; sys.path.insert(0, "scripts")
    from load_sweep import load_sweep
    ds = load_sweep("results/demo")
    ds["computed"].sel(branch="cond", run=ds.strategy == "easycache").mean("step")

Dimensions: run (one per runs/*.h5), step, branch ("cond", "uncond"). Variables: the /steps group of every record
(computed, signal, accumulator, threshold, k, call_seconds, wall_seconds, flops, ...). Coordinates along run: the
run id, strategy, spec, prompt_id, seed, and per run the /totals (wall_seconds, cpu_seconds, flops_spent, ...) and
/metrics means (psnr_mean, ssim_mean, lpips_mean) when present. All runs of a sweep share the step count. Needs
h5py, xarray and h5netcdf (Debian: python3-h5py python3-xarray python3-h5netcdf; run with /usr/bin/python3).
Command line: `/usr/bin/python3 scripts/load_sweep.py SWEEP_DIR` prints the dataset.
"""
import glob
import os
import sys

import h5py
import numpy as np
import xarray as xr


def _text(v):
    return v.decode() if isinstance(v, bytes) else v


def load_sweep(sweep_dir):
    paths = sorted(glob.glob(os.path.join(sweep_dir, "runs", "*.h5")))
    if not paths:
        raise FileNotFoundError(f"{sweep_dir}: no run files in runs/")
    runs, coords = [], {k: [] for k in ("run_id", "strategy", "spec", "prompt_id", "seed")}
    totals, metrics = {}, {}
    for i, path in enumerate(paths):
        ds = xr.open_dataset(path, group="steps", engine="h5netcdf").load()
        if ds["branch"].dtype.kind in "iu":  # records written before the branch coordinate carried names
            ds = ds.assign_coords(branch=["cond", "uncond"][: ds.sizes["branch"]])
        ds = ds.drop_vars([v for v in ds.data_vars if "layer" in ds[v].dims or "head" in ds[v].dims])
        runs.append(ds)
        with h5py.File(path, "r") as f:
            a = f.attrs
            coords["run_id"].append(os.path.basename(path)[:-3])
            coords["strategy"].append(_text(a["strategy"]))
            coords["spec"].append(_text(a["strategy_spec"]))
            coords["prompt_id"].append(_text(a["prompt_id"]))
            coords["seed"].append(int(a["seed"]))
            for k, v in f["totals"].attrs.items():
                totals.setdefault(k, [np.nan] * len(paths))[i] = float(v)
            if "metrics" in f:
                for k in ("psnr_mean", "ssim_mean", "lpips_mean"):
                    if k in f["metrics"].attrs:
                        metrics.setdefault(k, [np.nan] * len(paths))[i] = float(f["metrics"].attrs[k])
    ds = xr.concat(runs, dim="run", coords="minimal", compat="override")
    ds = ds.assign_coords({k: ("run", v) for k, v in coords.items()})
    ds = ds.assign_coords({f"total_{k}": ("run", v) for k, v in totals.items()})
    ds = ds.assign_coords({k: ("run", v) for k, v in metrics.items()})
    return ds.set_index(run="run_id") if hasattr(ds, "set_index") else ds


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: load_sweep.py SWEEP_DIR")
    print(load_sweep(sys.argv[1]))
