"""Checks a cachebench run record (results/record.h) from Python, the way analysis notebooks will read it.

Usage: check_record.py RECORD.h5 EXPECTED.json

EXPECTED.json is written by tests/test_record.c from the values it wrote; floats are strings ("inf", "nan"
included) so that special values survive JSON. Exits 0 when h5py and xarray (engine h5netcdf, no flags) both see
the documented layout with the expected values; otherwise an AssertionError names what differs.
"""
import json
import sys

import h5py
import numpy as np
import xarray as xr


def floats(values):
    return np.array([float(v) for v in values])


def same(actual, expected, what):
    """Exact equality after converting expected to the stored dtype; NaN equals NaN."""
    actual = np.asarray(actual)
    expected = np.asarray(expected).astype(actual.dtype).reshape(actual.shape)
    assert np.array_equal(actual, expected, equal_nan=actual.dtype.kind == "f"), \
        f"{what}: {actual!r} != {expected!r}"


def check_h5py(path, exp):
    steps, frames = exp["steps"], exp["frames"]
    with h5py.File(path, "r") as f:
        groups = {"steps", "video", "totals"}
        if exp["latent_shape"] is not None:
            groups.add("latents")
        if exp["metrics"] is not None:
            groups.add("metrics")
        assert set(f.keys()) == groups, f"groups {sorted(f.keys())} != {sorted(groups)}"

        for name, value in exp["strings"].items():
            got = f.attrs[name]
            assert isinstance(got, str), f"attribute {name} is {type(got).__name__}, not str"
            assert got == value, f"attribute {name}: {got!r} != {value!r}"
        assert f.attrs["seed"].dtype == np.uint64, f.attrs["seed"].dtype
        assert int(f.attrs["seed"]) == int(exp["seed"]), (int(f.attrs["seed"]), exp["seed"])
        for name in ("steps", "failed_step", "frames", "height", "width"):
            assert f.attrs[name].dtype == np.int32, (name, f.attrs[name].dtype)
            assert int(f.attrs[name]) == exp[name], (name, f.attrs[name], exp[name])
        for name in ("shift", "guidance"):
            assert f.attrs[name].dtype == np.float32, (name, f.attrs[name].dtype)
            same(f.attrs[name], float(exp[name]), name)

        # Every dimension of every variable has exactly one scale, labelled with its name.
        def check_scales(name, obj):
            if not isinstance(obj, h5py.Dataset) or obj.attrs.get("CLASS") == b"DIMENSION_SCALE":
                return
            for axis, dim in enumerate(obj.dims):
                assert len(dim) == 1, f"{name} axis {axis} has {len(dim)} scales"
                assert dim.label == dim[0].name.split("/")[-1], f"{name} axis {axis} label {dim.label!r}"
                assert dim[0].parent.name == obj.parent.name, f"{name} uses a scale from another group"
                assert dim[0].shape == (obj.shape[axis],), f"{name} axis {axis} scale shape {dim[0].shape}"
        f.visititems(check_scales)

        assert f["steps/computed"].dtype == np.uint8
        assert f["steps/branch"].attrs["names"] == "cond,uncond"
        assert f["video/frames"].dtype == np.uint8
        assert f["video/frames"].shape == (frames, exp["height"], exp["width"], 3)
        if exp["latent_shape"] is not None:
            d = f["latents/latents"]
            assert d.dtype == np.float32
            assert d.chunks == (1, *exp["latent_shape"]), d.chunks
            assert d.compression == "gzip" and d.compression_opts == 4 and d.shuffle, \
                (d.compression, d.compression_opts, d.shuffle)
        tot = f["totals"].attrs
        assert tot["peak_rss_kb"].dtype == np.int64
        for name, value in exp["totals"].items():
            same(tot[name], float(value), f"totals {name}")
        if exp["metrics"] is not None:
            assert isinstance(f["metrics"].attrs["baseline"], str)


def open_group(path, group):
    ds = xr.open_dataset(path, group=group, engine="h5netcdf")
    ds.load()
    ds.close()
    assert not any(str(d).startswith("phony_dim") for d in ds.dims), ds.dims
    return ds


def check_xarray(path, exp):
    steps, frames = exp["steps"], exp["frames"]

    root = open_group(path, None)
    assert root.attrs["prompt"] == exp["strings"]["prompt"]

    ds = open_group(path, "steps")
    assert dict(ds.sizes) == {"step": steps, "branch": 2}, dict(ds.sizes)
    same(ds["step"].values, np.arange(steps), "step coordinate")
    assert ds["step"].dtype == np.int32
    assert list(ds["branch"].values) == ["cond", "uncond"], ds["branch"].values
    assert ds["branch"].attrs["names"] == "cond,uncond"
    assert set(ds.coords) == {"step", "branch"}, set(ds.coords)
    kinds = {"timestep": np.float32, "sigma": np.float32, "wall_seconds": np.float64, "cpu_seconds": np.float64,
             "flops": np.float64,
             "computed": np.uint8, "signal": np.float32, "accumulator": np.float32, "threshold": np.float32,
             "k": np.float32, "call_seconds": np.float64, "layers_run": np.int32, "strategy_bytes": np.float64,
             "shared": np.uint8}
    assert set(ds.data_vars) == set(kinds), set(ds.data_vars)
    for name, dtype in kinds.items():
        var = ds[name]
        want_dims = ("step",) if name in ("timestep", "sigma", "wall_seconds", "cpu_seconds", "flops",
                                          "strategy_bytes") else ("step", "branch")
        assert var.dims == want_dims, (name, var.dims)
        assert var.dtype == dtype, (name, var.dtype)
        same(var.values, floats(exp["step_vars"][name]), f"steps {name}")
    assert np.isnan(ds["signal"].values[0]).all(), "NaN signals must survive"
    # Selecting by label works, which is the point of the coordinates.
    same(ds["computed"].sel(branch="cond").values, floats(exp["step_vars"]["computed"][0::2]), "computed cond")
    same(ds["computed"].sel(branch="uncond").values, floats(exp["step_vars"]["computed"][1::2]), "computed uncond")

    ds = open_group(path, "video")
    assert dict(ds.sizes) == {"frame": frames, "height": exp["height"], "width": exp["width"], "rgb": 3}
    assert ds["frames"].dims == ("frame", "height", "width", "rgb")
    assert ds["frames"].dtype == np.uint8
    same(ds["frames"].values, exp["video"], "video frames")
    for d in ("frame", "height", "width", "rgb"):
        same(ds[d].values, np.arange(ds.sizes[d]), f"{d} coordinate")

    if exp["latent_shape"] is not None:
        ds = open_group(path, "latents")
        lc, lf, lh, lw = exp["latent_shape"]
        assert dict(ds.sizes) == {"step": steps, "channel": lc, "lframe": lf, "lheight": lh, "lwidth": lw}
        assert ds["latents"].dims == ("step", "channel", "lframe", "lheight", "lwidth")
        assert ds["latents"].dtype == np.float32
        same(ds["latents"].values, floats(exp["latents"]), "latents")

    ds = open_group(path, "totals")
    for name, value in exp["totals"].items():
        same(ds.attrs[name], float(value), f"totals {name} (xarray)")

    m = exp["metrics"]
    if m is not None:
        ds = open_group(path, "metrics")
        assert dict(ds.sizes) == {"frame": frames}, dict(ds.sizes)
        for name in ("psnr", "ssim", "lpips"):
            assert ds[name].dims == ("frame",) and ds[name].dtype == np.float64, (name, ds[name].dims)
        same(ds["psnr"].values, floats(m["psnr"]), "psnr")
        assert np.isinf(ds["psnr"].values).any(), "+inf PSNR must round-trip"
        same(ds["ssim"].values, floats(m["ssim"]), "ssim")
        assert int(ds.attrs["lpips_available"]) == m["lpips_available"]
        if m["lpips_available"]:
            same(ds["lpips"].values, floats(m["lpips"]), "lpips")
        else:
            assert np.isnan(ds["lpips"].values).all(), "unavailable LPIPS must be NAN-filled"
        for name in ("psnr_mean", "ssim_mean", "lpips_mean"):
            same(ds.attrs[name], float(m[name]), name)
        assert ds.attrs["baseline"] == m["baseline"]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    path, sidecar = sys.argv[1], sys.argv[2]
    with open(sidecar, encoding="utf-8") as f:
        exp = json.load(f)
    check_h5py(path, exp)
    check_xarray(path, exp)


if __name__ == "__main__":
    main()
