"""Can the network learn the sign of the motion at all? A diagnostic (TRAINING.md runs 9-11), and the first stage of
the shipped weights (run 11).

From the given weights (run 7's for runs 9-11), with the direction words split (train.split_direction_words), train
every parameter only at sigma = 1 (pure noise in), on K prompt combinations and both directions of each one's axis
(train.make_pair_batch's pairing: a video, and the same video played backwards under the opposite direction word,
sharing one noise), Adam at --lr, batch 8. At sigma 1 the ideal x0 prediction is E[x0 | prompt], whose object
centroid travels about 24 px the prompted way over the 8 frames; run 7 predicts a static blob. Every 100 steps this
prints that travel (first -> last frame along the prompt's axis, positive = the prompted way), averaged over both
words and the first 8 of the K combinations, and over 8 others (0.0 exactly: the prediction does not depend on the
direction word).

--mean-target N trains towards that ideal itself (dataset.mean_video, averaged over prompts with the same words:
dataset.same_words_means) instead of each video; --widen continues on more combinations (a curriculum); --out keeps
the result. Training at sigma 1 alone wrecks the low-noise steps (held-out loss ~1-10): the weights are for
anchored_finetune.py (or train.py --init) to repair, not for sampling.

    git show 3118632:models/tiny/tiny.safetensors > /tmp/run7.safetensors      # run 7's weights
    /usr/bin/python3 training/tiny/sign_overfit.py --weights /tmp/run7.safetensors --combos 1 --steps 700   # ~4 min
    /usr/bin/python3 training/tiny/sign_overfit.py --weights /tmp/run7.safetensors --combos 8 --steps 400 \
        --mean-target 300 --widen 216:300:1e-4 --out /tmp/escaped.safetensors                          # ~5 min
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
import evaluate as E  # noqa: E402
import model as M  # noqa: E402
import train as T  # noqa: E402


def travel(model, combos, noise):
    """Mean x0 centroid travel at sigma 1 (px, positive = the prompted way) over combos x both directions."""
    out = []
    with torch.no_grad():
        for c in combos:
            for d in (c[2], ds.OPPOSITE[c[2]]):
                tok = M.pad_tokens([M.tokenize(ds.prompt_of(c[0], c[1], d, c[3]))] * noise.shape[0])
                x0 = noise - model(noise, torch.full((noise.shape[0],), 1000.0), tok)
                axis, sign = E.axis_and_sign(d)
                cc = np.stack([E.colour_centroids(v, ds.COLOURS[c[0]]) for v in x0.numpy()]).mean(0)[:, axis]
                out.append(sign * (cc[-1] - cc[0]))
    return float(np.mean(out))


def curriculum_order(first_k):
    """Indices into dataset.COMBOS in curriculum order: first_k drawn with seed 1 (the first stage's), then the rest
    in a seed-2 permutation (what each --widen stage adds)."""
    first = [int(i) for i in np.random.default_rng(1).choice(len(ds.COMBOS), first_k, replace=False)]
    return first + [int(i) for i in np.random.default_rng(2).permutation(len(ds.COMBOS)) if i not in first]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", required=True, help="weights to start from: run 7's for TRAINING.md runs 9-11")
    ap.add_argument("--combos", type=int, default=1, help="K: prompt combinations (drawn with seed 1)")
    ap.add_argument("--steps", type=int, default=700)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--split", type=float, default=5.0, help="train.split_direction_words factor")
    ap.add_argument("--mean-target", type=int, default=0, metavar="N",
                    help="train towards E[x0 | prompt] (dataset.mean_video, N draws per shape and direction) instead "
                         "of each video: the same ideal, without the per-video scatter around it")
    ap.add_argument("--widen", action="append", default=[], metavar="K:STEPS:LR",
                    help="then K combinations (the earlier ones among them) for STEPS steps at LR, a fresh Adam; "
                         "repeatable (a curriculum)")
    ap.add_argument("--out", default=None, help="write the final weights here (safetensors, for train.py --init)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = M.TinyWan()
    M.import_weights(model, a.weights)
    T.split_direction_words(model, a.split)
    rng = np.random.default_rng(0)
    order = curriculum_order(a.combos)
    others = [ds.COMBOS[i] for i in order[-8:]]  # the curriculum's last 8: trained only by a stage of K > 208
    stages = [(a.combos, a.steps, a.lr)] + [(int(k), int(n), float(lr)) for k, n, lr in
                                            (w.split(":") for w in a.widen)]
    probe_noise = torch.randn(2, 3, 8, 64, 64, generator=torch.Generator().manual_seed(99))
    means = ds.same_words_means(ds.mean_videos(ds.coverage_means(np.random.default_rng(42), a.mean_target))) \
        if a.mean_target else None
    t0 = time.time()
    for k, steps, lr in stages:
        combos = [ds.COMBOS[i] for i in order[:k]]
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        print("%d combinations, lr %g: %s%s" % (k, lr, "; ".join(" ".join(c) for c in combos[:4]),
                                                "; ..." if k > 4 else ""), flush=True)
        for step in range(steps + 1):
            if step % 100 == 0:
                print("step %4d  sigma-1 x0 travel %+5.1f px (the real mean's: ~+24), 8 others %+5.1f  %4.0fs" % (
                    step, travel(model, combos[:8], probe_noise), travel(model, others, probe_noise),
                    time.time() - t0), flush=True)
            if step == steps:
                break
            ps = [ds.random_params(rng, combos[i]) for i in rng.integers(len(combos), size=4)]
            if a.mean_target:
                fwd = np.stack([means[ds.prompt_of_params(p)] for p in ps])
            else:
                fwd = np.stack([ds.render(p["colour"], p["shape"], p["direction"], p["background"], p["cx0"],
                                          p["cy0"], p["size"], p["speed"]) for p in ps])
            x0 = torch.from_numpy(np.concatenate([fwd, fwd[:, :, ::-1].copy()]))
            prompts = [ds.prompt_of_params(p) for p in ps]
            tok = M.pad_tokens([M.tokenize(p) for p in prompts + [ds.reversed_prompt(p) for p in prompts]])
            half = torch.randn(4, 3, 8, 64, 64)
            noise = torch.cat([half, half])
            with torch.autocast("cpu", dtype=torch.bfloat16):
                v = model(noise, torch.full((8,), 1000.0), tok)
            loss = ((v.float() - (noise - x0)) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    if a.out:
        M.export_weights(model, a.out, {"config": "tiny", "made_by": "sign_overfit.py " + " ".join(sys.argv[1:])})
        print("wrote", a.out)

if __name__ == "__main__":
    main()
