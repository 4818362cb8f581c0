"""Self-test of the two ways training videos are drawn (run by tests/test_tiny_python.c; exit 0 = pass).

1. dataset.render_batch_torch against dataset.render (the numpy renderer, the reference) on 300 random parameter sets
   covering every shape, direction, colour and background. Both compute in float64 with the same operations in the same
   order and round to float32 once, so they must agree to within one float32 rounding (tolerance 1e-6 on values in
   [-1, 1]; observed: exactly equal).
2. train.make_batch with render="torch" against render="numpy" from the same seeds: the same videos, prompts, tokens,
   noise and sigmas (the GPU path draws the same training data as the CPU path; only the renderer differs).
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataset as ds  # noqa: E402
import train  # noqa: E402

TOL = 1e-6


def main():
    rng = np.random.default_rng(2024)
    params = [ds.random_params(rng) for _ in range(300)]
    seen = {(p["shape"], p["direction"]) for p in params}
    assert len(seen) == len(ds.SHAPES) * len(ds.DIRECTIONS), "the sample misses a shape/direction pair: %s" % seen
    ref = np.stack([ds.render(p["colour"], p["shape"], p["direction"], p["background"], p["cx0"], p["cy0"], p["size"],
                              p["speed"]) for p in params])
    got = ds.render_batch_torch(params, "cpu").numpy()
    assert got.shape == ref.shape and got.dtype == np.float32, (got.shape, got.dtype)
    err = float(np.abs(got - ref).max())
    assert err <= TOL, "render_batch_torch differs from render by %.3g > %g" % (err, TOL)
    assert float(np.abs(ref).max()) > 0.5 and float(ref.std()) > 0.1, "degenerate reference videos"
    print("render_batch_torch vs render: max abs diff %.3g over %d videos" % (err, len(params)))

    batches = []
    for render in ("numpy", "torch"):
        rng = np.random.default_rng(7)
        gen = torch.Generator().manual_seed(8)
        batches.append(train.make_batch(rng, 16, gen, 3.0, 0.25, "cpu", render))
    for name, a, b in zip(("x0", "tokens", "noise", "sigma"), batches[0], batches[1]):
        d = float((a.double() - b.double()).abs().max())
        assert d <= TOL, "make_batch %s: numpy and torch rendering differ by %.3g" % (name, d)
    assert (batches[0][1] < 0).all(dim=1).any(), "cfg-drop 0.25 over 16 prompts should empty at least one"
    print("make_batch numpy vs torch: identical x0, tokens, noise, sigma")


if __name__ == "__main__":
    main()
