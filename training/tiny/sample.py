"""Reference sampler for the tiny model: Euler flow-matching with classifier-free guidance, saves a PNG strip.

    /usr/bin/python3 training/tiny/sample.py "a red circle moving left on a black background" \
        [--weights models/tiny/tiny.safetensors] [--out strip.png] [--steps 50] [--shift 3] [--guidance 3]
        [--seed 0] [--seeds 1] [--scale 2] [--threads 2]

sigmas = linspace(1, 0, steps+1)[:-1] -> shift*s/(1+(shift-1)*s) -> append 0;  t = 1000*sigma
v = v_uncond + g*(v_cond - v_uncond)   (uncond = empty prompt: 16 zero context rows)
x_next = x + (sigma_next - sigma) * v; x starts as N(0,1) noise [3,8,64,64] from torch.Generator().manual_seed(seed).
With --seeds N the strip has N rows (seeds seed..seed+N-1). Frames go left to right.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The shipped model (definition, weights, vocabulary) lives in models/tiny/; this folder only trains it.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models", "tiny"))
import dataset as ds  # noqa: E402
import model as M  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("prompt")
    ap.add_argument("--weights", default=os.path.join(M.HERE, "tiny.safetensors"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--shift", type=float, default=3.0)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--save-npy", default=None, help="also save the videos as .npy [N,3,8,64,64]")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = M.TinyWan()
    M.import_weights(model, a.weights)
    model.eval()
    out = a.out or ("strip_" + "_".join(a.prompt.split()[1:3] + a.prompt.split()[4:5]) + ".png")
    rows = []
    t0 = time.time()
    seeds = list(range(a.seed, a.seed + a.seeds))
    vids = M.sample_batch(model, [a.prompt] * len(seeds), seeds, steps=a.steps, shift=a.shift,
                          guidance=a.guidance).numpy()
    for v in vids:
        rows.append(ds.to_uint8_strip(v))
        rows.append(np.full((2, rows[-1].shape[1], 3), 90, np.uint8))
    ds.write_png(out, np.concatenate(rows[:-1]), scale=a.scale)
    if a.save_npy:
        np.save(a.save_npy, vids)
    print("wrote %s (%d seed(s), %.1fs)" % (out, a.seeds, time.time() - t0))


if __name__ == "__main__":
    main()
