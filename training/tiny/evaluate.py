"""Prompt-adherence check of generated videos (a crude automatic judge for the procedural world).

For each generated video: background = per-channel median of frame pixels -> nearest background colour;
object mask = pixels far from the background; object colour = mean colour of the mask -> nearest object colour;
direction = displacement of the mask centroid from the first to the last frame (dominant axis); "axis" scores the
axis alone (left/right vs up/down), and --confusion prints which direction each prompted direction became;
shape = best mean IoU of the mask against each shape rendered with the same area and centroid.
Frames are box-blurred (5x5) first to suppress the fine residual noise.

    /usr/bin/python3 training/tiny/evaluate.py [--weights W] [--prompts datasets/prompts_bench.txt] [--n 12]
        [--settings "50,3,5;50,3,3;50,1,5"] [--seeds K]  (steps,shift,guidance triples; K videos per prompt)
        [--device cuda --batch 216] [--prompts all --n 216]  (all: every valid prompt of the dataset)
        [--sign-probe]  (only: does the x0 prediction near sigma = 1 depend on the direction word's sign?)
        [--oracle-above 0.95]  (sample with the ideal prediction, E[x0 | the prompt's words], at sigma >= 0.95)
Also judges real dataset videos with --real to show the judge's own accuracy.
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
import train as T  # noqa: E402


def judge(video, blur=5):
    """video [3,F,H,W] in [-1,1] -> dict colour/shape/direction/background (or None where undecidable)."""
    v = (np.clip(np.asarray(video, dtype=np.float64), -1, 1) + 1) / 2  # [3,F,H,W] in [0,1]
    if blur > 1:  # box blur: suppresses the fine-grained residual noise of the tiny model (see TRAINING.md)
        k = blur
        p = np.pad(v, ((0, 0), (0, 0), (k // 2, k - 1 - k // 2), (k // 2, k - 1 - k // 2)), mode="edge")
        c = np.cumsum(np.cumsum(p, axis=2), axis=3)
        c = np.pad(c, ((0, 0), (0, 0), (1, 0), (1, 0)))
        v = (c[:, :, k:, k:] - c[:, :, :-k, k:] - c[:, :, k:, :-k] + c[:, :, :-k, :-k]) / (k * k)
    pix = v.reshape(3, -1)
    bgc = np.median(pix, axis=1)
    bg = min(ds.BACKGROUNDS, key=lambda k: np.sum((np.array(ds.BACKGROUNDS[k]) - bgc) ** 2))
    dist = np.sqrt(((v - bgc[:, None, None, None]) ** 2).sum(0))  # [F,H,W]
    mask = dist > 0.35
    res = {"background": bg, "colour": None, "shape": None, "direction": None}
    if mask.sum() < 8 * 10:
        return res
    col = v[:, mask].mean(axis=1)
    res["colour"] = min(ds.COLOURS, key=lambda k: np.sum((np.array(ds.COLOURS[k]) - col) ** 2))
    ys, xs = np.meshgrid(np.arange(v.shape[2]), np.arange(v.shape[3]), indexing="ij")
    cents, ious = [], []
    for f in range(v.shape[1]):
        m = mask[f]
        if m.sum() < 10:
            continue
        cx, cy = xs[m].mean() + 0.5, ys[m].mean() + 0.5
        cents.append((f, cx, cy))
        # template match: each shape with the same area and centroid; keep the IoU of each
        A = float(m.sum())
        sizes = {"circle": np.sqrt(A / np.pi), "square": np.sqrt(A) / (2 * 0.88),
                 "triangle": np.sqrt(A / (3 * np.sqrt(3) / 4)) / 1.3}
        row = {}
        for shp, sz in sizes.items():
            t = ds._coverage(shp, np.array([cx]), np.array([cy]), sz)[0] > 0.5
            row[shp] = (t & m).sum() / float((t | m).sum())
        ious.append(row)
    if len(cents) >= 2:
        (f0, x0, y0), (f1, x1, y1) = cents[0], cents[-1]
        dx, dy = x1 - x0, y1 - y0
        if max(abs(dx), abs(dy)) > 3:
            res["direction"] = ("right" if dx > 0 else "left") if abs(dx) > abs(dy) else ("down" if dy > 0 else "up")
    if ious:
        res["shape"] = max(ds.SHAPES, key=lambda k: np.mean([r[k] for r in ious]))
    return res


def parse_prompt(p):
    w = p.split()
    return {"colour": w[1], "shape": w[2], "direction": w[4], "background": w[7]}


def combo_of(want):
    """parse_prompt's dict -> the (colour, shape, direction, background) tuple dataset.random_sample takes."""
    return (want["colour"], want["shape"], want["direction"], want["background"])


def score(results):
    keys = ["colour", "shape", "direction", "background"]
    acc = {k: np.mean([r[0][k] == r[1][k] for r in results]) for k in keys}
    acc["all"] = np.mean([all(r[0][k] == r[1][k] for k in keys) for r in results])
    # the motion's axis alone (left/right vs up/down): separates "moves along the wrong axis" from "moves backwards"
    axis = {"left": "h", "right": "h", "up": "v", "down": "v", None: None}
    acc["axis"] = np.mean([axis[r[0]["direction"]] == axis[r[1]["direction"]] for r in results])
    return acc


def direction_confusion(results):
    """Rows: the prompt's direction; columns: the judged one (None: no clear motion)."""
    dirs = list(ds.DIRECTIONS) + [None]
    lines = ["prompt \\ judged " + " ".join("%6s" % d for d in dirs)]
    for want in ds.DIRECTIONS:
        row = [sum(1 for j, t in results if t["direction"] == want and j["direction"] == got) for got in dirs]
        lines.append("%15s  " % want + " ".join("%6d" % c for c in row))
    return "\n".join(lines)


def colour_centroids(video, colour):
    """Per-frame (x, y) centroid [F,2] of the pixels' closeness to an RGB colour in [0,1] (weight (1 - distance)^4)."""
    v = (torch.as_tensor(video, dtype=torch.float64).clamp(-1, 1) + 1) / 2  # [3,F,H,W]
    w = torch.clamp(1 - ((v - torch.tensor(colour, dtype=v.dtype).view(3, 1, 1, 1)) ** 2).sum(0).sqrt(), min=0) ** 4
    w = w + 1e-12
    r = torch.arange(v.shape[2], dtype=v.dtype) + 0.5
    tot = w.sum((1, 2))
    return torch.stack([(w.sum(1) * r).sum(-1) / tot, (w.sum(2) * r).sum(-1) / tot], dim=1).numpy()


def axis_and_sign(direction):
    """(0 for x or 1 for y, +1 or -1): the image axis a direction word moves along, and which way."""
    dx, dy = ds.DIRECTIONS[direction]
    return (0, dx) if dx else (1, dy)


@torch.no_grad()
def sign_probe(model, prompts, videos=4, sigmas=(1.0, 0.99, 0.97), device="cpu"):
    """Does the model use the *sign* of the direction word where the sample's motion is decided? For each prompt,
    real videos of it are noised to each sigma (sigma 1: pure noise) and the x0 prediction's motion is measured (slope
    of the object-colour centroid along the prompt's axis over the frames, px/frame, positive = the way the video
    really moves) under the prompt and under the same prompt with the opposite direction. Returns
    {sigma: (slope under the prompt, slope under the opposite prompt)} and the real videos' own slope. A model that
    ignores the sign gives equal slopes: at sigma 1 both ~0 (every frame the same blob), below it both follow the
    motion it can see in the noise -- and sampling then settles the sign by chance."""
    rng = np.random.default_rng(7)
    frames = np.arange(model.cfg["frames"])
    res = {s: ([], []) for s in sigmas}
    real_slopes = []
    for i, p in enumerate(prompts):
        want = parse_prompt(p)
        axis, sign = axis_and_sign(want["direction"])
        colour = ds.COLOURS[want["colour"]]

        def motion(v):  # px/frame along the prompt's axis, positive = the prompted way
            return sign * np.polyfit(frames, colour_centroids(v, colour)[:, axis], 1)[0]

        x0 = torch.from_numpy(np.stack([ds.random_sample(rng, combo_of(want))[0] for _ in range(videos)]))
        real_slopes += [motion(v) for v in x0.numpy()]
        n = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1000 + i))
        flipped = ds.reversed_prompt(p)
        for s in sigmas:
            xt = ((1 - s) * x0 + s * n).to(device)
            t = torch.full((videos,), s * 1000.0, device=device)
            for j, q in enumerate((p, flipped)):
                tok = M.pad_tokens([M.tokenize(q)] * videos).to(device)
                xh = (xt - s * model(xt, t, tok)).cpu().numpy()
                res[s][j].extend(motion(v) for v in xh)
    return {s: (float(np.mean(a)), float(np.mean(b))) for s, (a, b) in res.items()}, float(np.mean(real_slopes))


@torch.no_grad()
def ideal_gap(model, prompts, means, noises=4, device="cpu"):
    """How far the sigma-1 x0 prediction (pure noise in) is from the ideal one, means[prompt] (train.ideal_means:
    E[x0 | the prompt's words]): MSE in [-1, 1] units over the prompts x `noises` noise draws. Returned with two floors
    for the same prompts: the MSE of the ideal's per-pixel time average (the best motionless prediction) and of the
    mean of the ideal and its opposite direction's (the best prediction blind to the direction word's sign)."""
    gap, still, blind = [], [], []
    gen = torch.Generator().manual_seed(4321)
    for p in prompts:
        ideal = means[p]
        n = torch.randn((noises,) + ideal.shape, generator=gen).to(device)
        tok = M.pad_tokens([M.tokenize(p)] * noises).to(device)
        x0 = (n - model(n, torch.full((noises,), 1000.0, device=device), tok)).cpu().numpy()
        gap.append(((x0 - ideal) ** 2).mean())
        still.append(((ideal.mean(axis=1, keepdims=True) - ideal) ** 2).mean())
        blind.append((((ideal + means[ds.reversed_prompt(p)]) / 2 - ideal) ** 2).mean())
    return float(np.mean(gap)), float(np.mean(still)), float(np.mean(blind))


class IdealNearNoise(torch.nn.Module):
    """The model, except at sigma >= `above`: there its output is the velocity of the ideal x0 prediction for pure
    noise, E[x0 | the prompt's words] (train.ideal_means; E[x0] for the empty prompt), whatever the input.
    Sampling through it asks: if the network got the first, near-noise steps right, would the sample follow the
    prompt? (--oracle-above; TRAINING.md run 10.) This is the dataset's knowledge, not a model."""

    def __init__(self, model, above):
        super().__init__()
        self.model, self.above, self.cfg = model, above, model.cfg
        self.means = T.ideal_targets("cpu")

    def forward(self, x, t, tok):
        v = self.model(x, t, tok)
        sigma = t / 1000.0
        ideal = sigma >= self.above
        if bool(ideal.any()):
            x0 = torch.stack([self.means[M.prompt_of_tokens(row)] for row in tok.cpu()]).to(x.device)
            s = torch.clamp(sigma, min=self.cfg["sigma_min"]).view(-1, 1, 1, 1, 1)
            v = torch.where(ideal.view(-1, 1, 1, 1, 1), (x - x0) / s, v)
        return v


@torch.no_grad()
def direction_word_distances(model):
    """Euclidean distances between the direction words' rows of the context (token_embedding, then text_embedding):
    {"left-right", "up-down", "left-up", ...}. Opposite directions close together = the sign is lost in the text."""
    words = list(ds.DIRECTIONS)
    emb = model.text_embedding(model.token_embedding.weight[[M.WORD2ID[w] for w in words]])
    return {"%s-%s" % (words[i], words[j]): float((emb[i] - emb[j]).norm())
            for i in range(len(words)) for j in range(i + 1, len(words))}


@torch.no_grad()
def reversal_asymmetry(model, prompt, sigma=0.99, device="cpu"):
    """|f(x) - R f(R x)| / |f(x)| for R = reversing the frames, and the same for mirroring x and y, on a real video of
    the prompt noised to sigma. 0 means the network cannot tell the clip from its reversal (RoPE is relative, so only
    the sign of the frame offsets can break that symmetry); the spatial mirrors show the scale of a symmetry that the
    data breaks (objects are rendered at fixed orientations)."""
    combo = combo_of(parse_prompt(prompt))
    x0 = torch.from_numpy(ds.random_sample(np.random.default_rng(3), combo)[0])[None]
    n = torch.randn(x0.shape, generator=torch.Generator().manual_seed(5))
    x = ((1 - sigma) * x0 + sigma * n).to(device)
    t = torch.full((1,), sigma * 1000.0, device=device)
    tok = M.pad_tokens([M.tokenize(prompt)]).to(device)
    out = model(x, t, tok)
    return {name: float((out - model(x.flip(d), t, tok).flip(d)).norm() / out.norm())
            for name, d in (("frames reversed", 2), ("x mirrored", 4), ("y mirrored", 3))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default=os.path.join(M.HERE, "tiny.safetensors"))
    ap.add_argument("--prompts", default=os.path.join(M.HERE, "..", "..", "datasets", "prompts_bench.txt"),
                    help='a prompt file (id TAB prompt per line), or "all": the %d combinations' % len(ds.COMBOS))
    ap.add_argument("--n", type=int, default=12, help="use the first N prompts")
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=1,
                    help="videos per prompt; prompt i, repeat k uses seed SEED + i + 1000 k")
    ap.add_argument("--batch", type=int, default=20, help="videos sampled together (memory vs speed)")
    ap.add_argument("--settings", default="50,3,3")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (the same noise: it is drawn on the CPU)")
    ap.add_argument("--real", action="store_true")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--confusion", action="store_true", help="also print the direction confusion matrix")
    ap.add_argument("--sign-probe", action="store_true",
                    help="only measure whether the x0 prediction near sigma = 1 moves the prompted way (see sign_probe)")
    ap.add_argument("--oracle-above", type=float, default=0.0, metavar="SIGMA",
                    help="sample with the model's output replaced by the ideal pure-noise prediction E[x0 | the words] "
                         "at sigma >= SIGMA (a diagnostic: see IdealNearNoise)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.real:
        rng = np.random.default_rng(5)
        res = []
        for _ in range(200):
            v, p, _ = ds.random_sample(rng)
            res.append((judge(v), parse_prompt(p)))
        print("judge on real data:", {k: round(float(x), 3) for k, x in score(res).items()})
        return
    if a.prompts == "all":  # every valid (colour, shape, direction, background) combination, in dataset order
        prompts = [ds.prompt_of(*c) for c in ds.COMBOS][:a.n]
    else:
        with open(a.prompts) as f:
            prompts = [line.rstrip("\n").split("\t")[1] for line in f if line.strip()][:a.n]
    model = M.TinyWan()
    M.import_weights(model, a.weights)
    model.to(a.device).eval()
    if a.sign_probe:
        t0 = time.time()
        rows, real = sign_probe(model, prompts, device=a.device)
        print("x0 prediction's motion along each real video's own direction, px/frame (the videos: %+.2f); %d prompts "
              "x 4 videos (%.0fs)" % (real, len(prompts), time.time() - t0))
        for s, (own, opp) in rows.items():
            print("  sigma %.2f: under its prompt %+.2f, under the opposite direction %+.2f, difference %+.2f" % (
                s, own, opp, own - opp))
        asym = reversal_asymmetry(model, prompts[0], device=a.device)
        print("  |f(x) - R f(R x)| / |f(x)| at sigma 0.99 (%s), R = %s" % (
            prompts[0], ", ".join("%s %.4f" % kv for kv in asym.items())))
        gap, still, blind = ideal_gap(model, prompts, T.ideal_means(), device=a.device)
        print("  sigma-1 x0 prediction's MSE from the ideal E[x0 | the prompt's words]: %.4f (the best motionless "
              "prediction: %.4f; the best blind to the sign: %.4f)" % (gap, still, blind))
        print("  distances between the direction words' context rows: %s" % ", ".join(
            "%s %.2f" % kv for kv in direction_word_distances(model).items()))
        return
    sampler = IdealNearNoise(model, a.oracle_above) if a.oracle_above > 0 else model
    for st in a.settings.split(";"):
        steps, shift, g = st.split(",")
        steps, shift, g = int(steps), float(shift), float(g)
        t0 = time.time()
        jobs = [(p, a.seed + i + 1000 * k) for k in range(a.seeds) for i, p in enumerate(prompts)]
        res = []
        for b in range(0, len(jobs), a.batch):
            chunk = jobs[b:b + a.batch]
            vids = M.sample_batch(sampler, [p for p, _ in chunk], [s for _, s in chunk], steps=steps, shift=shift,
                                  guidance=g, device=a.device).numpy()
            for (p, s), v in zip(chunk, vids):
                res.append((judge(v), parse_prompt(p)))
                if a.verbose:
                    print("  ", p, "seed", s, "->", res[-1][0])
        acc = score(res)
        print("steps=%d shift=%g guidance=%g  n=%d  %s  (%.0fs)" % (
            steps, shift, g, len(res), " ".join("%s=%.2f" % (k, x) for k, x in acc.items()), time.time() - t0),
            flush=True)
        if a.confusion:
            print(direction_confusion(res), flush=True)


if __name__ == "__main__":
    main()
