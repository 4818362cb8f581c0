"""Self-test of the two ways training videos are drawn (run by tests/test_tiny_python.c; exit 0 = pass).

1. dataset.render_batch_torch against dataset.render (the numpy renderer, the reference) on 300 random parameter sets
   covering every shape, direction, colour and background. Both compute in float64 with the same operations in the same
   order and round to float32 once, so they must agree to within one float32 rounding (tolerance 1e-6 on values in
   [-1, 1]; observed: exactly equal).
2. train.make_batch with render="torch" against render="numpy" from the same seeds: the same videos, prompts, tokens,
   noise and sigmas (the GPU path draws the same training data as the CPU path; only the renderer differs).
3. train.make_batch with near_noise 0.25 (--near-noise): the first 4 of 16 sigmas lie in [0.95, 1], the other 12 and
   everything else are what near_noise 0 draws from the same seeds.
4. train.split_direction_words (--split-directions 5): each direction pair keeps its mean and its difference grows
   5-fold; every other word's row is untouched.
5. train.make_pair_batch (--reverse-pairs): the second half is the first half with the frames reversed, the same noise
   and sigma and the opposite direction word; and a video played backwards is exactly dataset.render of the opposite
   direction started at the old end point (within 1e-6: the two compute the centre as cx0 + 7 v - v t against
   cx0 + v (7 - t) in float64, then round to float32), a start that random_params can draw (checked against its
   range), so the pairs do not change the data distribution.
6. dataset.mean_video (E[x0 | prompt], the ideal prediction at sigma 1) against a brute-force mean of rendered videos
   of the same prompt, and exactly reversed for the opposite direction word.
7. train.make_batch / make_pair_batch with mean_target (--mean-target): the last samples get sigma 1 and the ideal
   target of their (possibly dropped) prompt; everything else is drawn as without it.
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The shipped model (definition, weights, vocabulary) lives in models/tiny/; this folder only trains it.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models", "tiny"))
import dataset as ds  # noqa: E402
import evaluate  # noqa: E402
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

    near = train.make_batch(np.random.default_rng(7), 16, torch.Generator().manual_seed(8), 3.0, 0.25, "cpu", "numpy",
                            near_noise=0.25)
    s_near, s_plain = near[3].double(), batches[0][3].double()
    assert ((s_near[:4] >= train.NEAR_NOISE_SIGMA) & (s_near[:4] <= 1.0)).all(), "near-noise sigmas %s" % s_near[:4]
    assert (s_plain[:4] < train.NEAR_NOISE_SIGMA).any(), "the plain draw was already near 1: the check shows nothing"
    assert torch.equal(s_near[4:], s_plain[4:]), "near_noise changed the other sigmas"
    for name, a, b in zip(("x0", "tokens", "noise"), near[:3], batches[0][:3]):
        assert torch.equal(a, b), "near_noise changed %s" % name
    print("make_batch near_noise 0.25: sigmas %s in [%.2f, 1], the rest unchanged" % (
        " ".join("%.3f" % v for v in s_near[:4].tolist()), train.NEAR_NOISE_SIGMA))

    torch.manual_seed(3)
    model = train.M.TinyWan()
    before = model.token_embedding.weight.detach().clone()
    train.split_direction_words(model, 5.0)
    after = model.token_embedding.weight.detach()
    ids = train.M.WORD2ID
    for a, b in (("left", "right"), ("up", "down")):
        ia, ib = ids[a], ids[b]
        # float32 rounding of values of size ~1 (std-1 init) scaled by 5: 1e-5 is ~20 ulps
        assert torch.allclose(after[ia] + after[ib], before[ia] + before[ib], atol=1e-5), "%s/%s mean moved" % (a, b)
        assert torch.allclose(after[ia] - after[ib], 5.0 * (before[ia] - before[ib]), atol=1e-5), "%s/%s" % (a, b)
    rest = [i for w, i in ids.items() if w not in ("left", "right", "up", "down")]
    assert torch.equal(after[rest], before[rest]), "split_direction_words changed another word"
    print("split_direction_words 5: direction pairs 5x apart about their means, %d other rows unchanged" % len(rest))

    x0, tok, noise, sigma = train.make_pair_batch(np.random.default_rng(5), 16, torch.Generator().manual_seed(6), 3.0,
                                                  0.0, "cpu", "numpy", near_noise=0.5)
    assert torch.equal(x0[8:], x0[:8].flip(2)) and torch.equal(noise[8:], noise[:8]) and torch.equal(sigma[8:],
                                                                                                      sigma[:8])
    assert (sigma[:4] >= train.NEAR_NOISE_SIGMA).all() and (sigma[4:8] < 1.0).all()
    words = [[train.M.VOCAB[i] for i in row.tolist() if i >= 0] for row in tok]
    for a, b in zip(words[:8], words[8:]):
        assert a[4] in ds.DIRECTIONS and b[4] == ds.OPPOSITE[a[4]] and a[:4] + a[5:] == b[:4] + b[5:], (a, b)
    rng = np.random.default_rng(9)
    worst = 0.0
    for _ in range(40):
        p = ds.random_params(rng)
        fwd = ds.render(p["colour"], p["shape"], p["direction"], p["background"], p["cx0"], p["cy0"], p["size"],
                        p["speed"])
        dx, dy = ds.DIRECTIONS[p["direction"]]
        travel = p["speed"] * (ds.FRAMES - 1)
        ex, ey = p["cx0"] + dx * travel, p["cy0"] + dy * travel  # where the object ends = where the twin starts
        back = ds.render(p["colour"], p["shape"], ds.OPPOSITE[p["direction"]], p["background"], ex, ey, p["size"],
                         p["speed"])
        worst = max(worst, float(np.abs(back - fwd[:, ::-1]).max()))
        ext = p["size"] * (1.3 if p["shape"] == "triangle" else 1.0)
        lo, hi = ext + 1.0, ds.W - ext - 1.0  # random_params: the whole path inside [lo, hi] on the motion axis
        start, end = (ex, p["cx0"]) if dx else (ey, p["cy0"])
        assert lo - 1e-9 <= min(start, end) and max(start, end) <= hi + 1e-9, (p, start, end)
    assert worst <= 1e-6, "a reversed video differs from the opposite render by %.3g" % worst
    print("make_pair_batch: second half = first half reversed, opposite word, same noise/sigma; reversed video = "
          "opposite render within %.2g over 40 videos" % worst)

    # E[x0 | prompt] from the 12 coverage maps against a brute-force mean of rendered videos of the same prompt (other
    # draws). Both are Monte Carlo means (300 videos; 2 x 150 draws), so they differ by sampling error: a pixel's
    # coverage has variance <= 1/4, and where the objects pass ~0.1-0.2, giving an RMS difference of ~0.017-0.020
    # in [-1, 1] units here (tolerance 0.03); the other direction's mean is ~0.11-0.16 away, so a mean built from the
    # wrong maps, colours or frame order fails. The centroid travels ~23-26 px; the two agree within 1 px here (1.5).
    cov = ds.coverage_means(np.random.default_rng(11), 150)
    rng = np.random.default_rng(12)
    for c in (("red", "circle", "right", "black"), ("yellow", "triangle", "up", "blue"),
              ("white", "square", "down", "gray")):
        m = ds.mean_video(c, cov)
        opposite = ds.mean_video((c[0], c[1], ds.OPPOSITE[c[2]], c[3]), cov)
        assert np.array_equal(opposite, m[:, ::-1]), "%s: the opposite word's mean is not this one reversed" % (c,)
        brute = np.mean([ds.random_sample(rng, c)[0] for _ in range(300)], axis=0)
        rms, rms_wrong = (float(np.sqrt(((v - brute) ** 2).mean())) for v in (m, opposite))
        assert rms <= 0.03 and rms_wrong >= 0.08, "%s: mean_video %.4f from the brute-force mean (the opposite " \
            "direction's: %.4f)" % (c, rms, rms_wrong)
        axis, sign = evaluate.axis_and_sign(c[2])
        tm, tb = (sign * np.diff(evaluate.colour_centroids(v, ds.COLOURS[c[0]])[[0, -1], axis])[0] for v in (m, brute))
        assert tm > 15 and abs(tm - tb) <= 1.5, "%s: travel %.2f px, brute force %.2f" % (c, tm, tb)
        print("mean_video %s: RMS %.4f from 300 rendered videos (opposite direction: %.4f), travel %.1f vs %.1f px" % (
            " ".join(c), rms, rms_wrong, tm, tb))

    # The ideal for a bag-of-words model: prompts with the same words share the average of their means; every other
    # prompt keeps its own, and reversing a shared mean still gives the opposite word's (the pairs rely on it).
    means = ds.mean_videos(cov)
    shared = ds.same_words_means(means)
    a, b = "a white circle moving up on a blue background", "a blue circle moving up on a white background"
    assert np.array_equal(shared[a], shared[b]) and not np.array_equal(means[a], means[b])
    assert np.allclose(shared[a], (means[a] + means[b]) / 2, atol=1e-6)
    changed = [q for q in means if not np.array_equal(shared[q], means[q])]
    assert len(changed) == 24 and all(set(q.split()) >= {"white", "blue"} for q in changed), changed
    assert np.allclose(shared[ds.reversed_prompt(a)], shared[a][:, ::-1], atol=1e-6)
    print("same_words_means: the 24 white/blue prompts share their pair's mean, the other %d (and the empty prompt) "
          "keep their own" % (len(means) - 25))

    # --mean-target: the last quarter at sigma 1 with the ideal as target (E[x0] for a dropped prompt), all else as
    # drawn without it; in pairs, the reversed ideal is the opposite word's ideal.
    ideal = {k: torch.from_numpy(v) for k, v in ds.mean_videos(cov).items()}
    for seed in range(40):  # a seed whose quarter holds a dropped prompt and a kept one
        plain = train.make_batch(np.random.default_rng(seed), 16, torch.Generator().manual_seed(8), 3.0, 0.3, "cpu")
        empty = (plain[1][12:] < 0).all(dim=1)
        if empty.any() and not empty.all():
            break
    else:
        raise AssertionError("no seed gives a mix of dropped and kept prompts among the last 4 of 16")
    mt = train.make_batch(np.random.default_rng(seed), 16, torch.Generator().manual_seed(8), 3.0, 0.3, "cpu",
                          near_noise=0.25, mean_target=0.25, ideal=ideal)
    assert (mt[3][12:] == 1.0).all() and (mt[3][:4] >= train.NEAR_NOISE_SIGMA).all()
    assert torch.equal(mt[3][4:12], plain[3][4:12]) and torch.equal(mt[0][:12], plain[0][:12])
    assert torch.equal(mt[1], plain[1]) and torch.equal(mt[2], plain[2]), "mean_target changed tokens or noise"
    for i in range(12, 16):
        want = ideal[train.M.prompt_of_tokens(mt[1][i])]
        assert torch.equal(mt[0][i], want) and not torch.equal(mt[0][i], plain[0][i]), i
    pair = train.make_pair_batch(np.random.default_rng(5), 16, torch.Generator().manual_seed(6), 3.0, 0.0, "cpu",
                                 mean_target=0.25, ideal=ideal)
    assert torch.equal(pair[0][8:], pair[0][:8].flip(2)) and (pair[3][[6, 7, 14, 15]] == 1.0).all()
    for i in (6, 7, 14, 15):
        assert torch.equal(pair[0][i], ideal[train.M.prompt_of_tokens(pair[1][i])]), i
    print("make_batch mean_target 0.25: last 4 of 16 at sigma 1 with E[x0 | prompt] (%d dropped: E[x0]), the rest "
          "unchanged; pairs keep reversal" % int(empty.sum()))


if __name__ == "__main__":
    main()
