"""Teach the near-noise steps the prompt's mean video while the rest of the network stays as it was (TRAINING.md
runs 10 and 11): the last stage of the shipped weights.

Each step (Adam, --lr after a 50-step warm-up, gradient clip 1, bf16 autocast) adds three losses:
  1. sigma = 1, target E[x0 | the prompt's words] (train.ideal_targets: the ideal prediction there, without the
     videos' scatter about it), --nmean samples, 1 in 10 prompts dropped (target E[x0]);
  2. sigma uniform in [0.95, 1], the ordinary flow-matching loss on real videos, --nband samples;
  3. below sigma 0.95, the distance of the x0 prediction from the --teacher's on the same inputs (run 7's weights),
     weight --anchor-weight, --nanchor samples: the steps that draw the object keep their quality.
Every 100 steps it prints the sigma-1 travel (sign_overfit.travel: first -> last frame the prompted way, px, averaged
over 8 combinations and both words; the ideal's is ~+24), the held-out loss (train.heldout_batch, the figure
TRAINING.md quotes for every run), the three losses, and writes --out (safetensors; the EMA weights with --ema).
--pairs draws the sigma-1 samples as a prompt and its opposite direction word on one noise; --stage K:STEPS:LR
restricts them to the first K combinations for a stage (a curriculum, as sign_overfit.py's --widen); --split
pulls the direction words apart first (train.split_direction_words), for an --init that has not been through
sign_overfit.py.

    git show 3118632:models/tiny/tiny.safetensors > /tmp/run7.safetensors     # run 7, the teacher
    /usr/bin/python3 training/tiny/anchored_finetune.py --init /tmp/escaped.safetensors --teacher /tmp/run7.safetensors \
        --pairs --steps 1800 --ema 0.995 --out /tmp/anchored.safetensors        # ~28 min on two cores
"""
import argparse
import copy
import math
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
from sign_overfit import curriculum_order, travel  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--init", required=True, help="weights to start from (safetensors), e.g. sign_overfit.py --out")
    ap.add_argument("--teacher", required=True,
                    help="the weights the steps below sigma 0.95 are held to: run 7's for the shipped ones")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--stage", action="append", default=[], metavar="K:STEPS:LR",
                    help="a curriculum in place of --steps/--lr: the sigma-1 mean target on the first K combinations "
                         "(sign_overfit.py's order) for STEPS steps at LR, a fresh Adam each stage; repeatable. The "
                         "band and anchor losses always see every combination")
    ap.add_argument("--pairs", action="store_true",
                    help="the sigma-1 samples as pairs: a prompt and its opposite direction word on one noise "
                         "(train.make_pair_batch's antithetic pairing; the escape in sign_overfit.py uses it)")
    ap.add_argument("--split", type=float, default=1.0, help="train.split_direction_words factor applied to --init")
    ap.add_argument("--ema", type=float, default=0.0, help="EMA decay; > 0: --out holds the EMA weights")
    ap.add_argument("--cosine", action="store_true", help="each stage's lr decays to 0 along a half cosine")
    ap.add_argument("--nmean", type=int, default=8)
    ap.add_argument("--nband", type=int, default=4)
    ap.add_argument("--nanchor", type=int, default=4)
    ap.add_argument("--anchor-weight", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    teacher, model = M.TinyWan(), M.TinyWan()
    M.import_weights(teacher, a.teacher)
    M.import_weights(model, a.init)
    if a.split != 1.0:
        T.split_direction_words(model, a.split)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    ema = copy.deepcopy(model) if a.ema > 0 else None
    ideal = T.ideal_targets("cpu")
    stages = [(int(k), int(n), float(lr)) for k, n, lr in (st.split(":") for st in a.stage)]
    stages = stages or [(len(ds.COMBOS), a.steps, a.lr)]
    order = curriculum_order(8)  # sign_overfit.py --combos 8's order
    rng = np.random.default_rng(a.seed)
    gen = torch.Generator().manual_seed(a.seed + 1)
    probe_combos = [ds.COMBOS[i] for i in np.random.default_rng(3).choice(len(ds.COMBOS), 8, replace=False)]
    probe_noise = torch.randn(2, 3, 8, 64, 64, generator=torch.Generator().manual_seed(99))
    hb = T.heldout_batch(32, 3.0, "cpu")
    sums = np.zeros(3)
    t0 = time.time()
    step = 0
    for si, (k, steps, lr) in enumerate(stages):
        combos = [ds.COMBOS[i] for i in order[:k]]
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        print("stage %d: sigma-1 target on %d combinations, %d steps, lr %g" % (si + 1, k, steps, lr), flush=True)
        for stage_step in range(steps):
            if step % 100 == 0:
                report(step, model, ema, probe_combos, probe_noise, hb, sums, t0, a)
            for g in opt.param_groups:
                g["lr"] = lr * min(1.0, (stage_step + 1) / 50) * (
                    0.5 * (1.0 + math.cos(math.pi * stage_step / steps)) if a.cosine else 1.0)
            if a.pairs or k < len(ds.COMBOS):
                loss_ideal = T.fm_loss(model, *mean_pair_batch(rng, a.nmean, combos, ideal, 0.1, a.pairs), bf16=True)
            else:
                loss_ideal = T.fm_loss(model, *T.make_batch(rng, a.nmean, gen, 3.0, 0.1, "cpu", mean_target=1.0,
                                                            ideal=ideal), bf16=True)
            loss_band = T.fm_loss(model, *T.make_batch(rng, a.nband, gen, 3.0, 0.1, "cpu", near_noise=1.0), bf16=True)
            x0, tok, noise, sigma = T.make_batch(rng, a.nanchor, gen, 3.0, 0.1, "cpu")
            sigma = sigma * T.NEAR_NOISE_SIGMA
            s = sigma.view(-1, 1, 1, 1, 1)
            xt = (1 - s) * x0 + s * noise
            with torch.autocast("cpu", dtype=torch.bfloat16):
                with torch.no_grad():
                    v_teacher = teacher(xt, sigma * 1000.0, tok).float()
                v = model(xt, sigma * 1000.0, tok).float()
            loss_anchor = (((v - v_teacher) * s) ** 2).mean()  # x0-prediction difference: v = (x_t - x0_hat) / sigma
            loss = loss_ideal + loss_band + a.anchor_weight * loss_anchor
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if ema is not None:
                with torch.no_grad():
                    for pe, pm in zip(ema.parameters(), model.parameters()):
                        pe.mul_(a.ema).add_(pm, alpha=1.0 - a.ema)
            sums += [float(loss_ideal), float(loss_band), float(loss_anchor)]
            step += 1
    report(step, model, ema, probe_combos, probe_noise, hb, sums, t0, a)


def mean_pair_batch(rng, n, combos, ideal, cfg_drop, pairs):
    """n samples at sigma 1 whose target is E[x0 | prompt], prompts drawn from `combos` (each combination's direction
    word or its opposite, at random); with `pairs`, n // 2 prompts and the same prompts with the opposite word, the
    two halves sharing their noise. A dropped prompt (cfg_drop) has the target E[x0]."""
    h = n // 2 if pairs else n
    prompts = []
    for i in rng.integers(len(combos), size=h):
        c, sh, d, b = combos[i]
        prompts.append(ds.prompt_of(c, sh, d if rng.random() < 0.5 else ds.OPPOSITE[d], b))
    noise = torch.randn(h, 3, ds.FRAMES, ds.H, ds.W)
    if pairs:
        prompts += [ds.reversed_prompt(p) for p in prompts]
        noise = torch.cat([noise, noise])
    prompts = ["" if rng.random() < cfg_drop else p for p in prompts]
    x0 = torch.stack([ideal[p] for p in prompts])
    tok = M.pad_tokens([M.tokenize(p) for p in prompts])
    return x0, tok, noise, torch.ones(len(prompts))


def report(step, model, ema, probe_combos, probe_noise, hb, sums, t0, a):
    """Print the probe line (every 100 steps and at the end) and write --out (the EMA weights when --ema is set)."""
    with torch.no_grad():
        held = float(T.fm_loss(model, *hb))
        held_ema = " (EMA %.4f, travel %+5.1f)" % (float(T.fm_loss(ema, *hb)), travel(ema, probe_combos, probe_noise)) \
            if ema is not None else ""
    n = max(1, step % 100 or 100)
    print("step %4d  sigma-1 travel %+5.1f px  held-out %.4f%s  losses: ideal %.4f band %.4f anchor %.5f  %4.0fs"
          % ((step, travel(model, probe_combos, probe_noise), held, held_ema) + tuple(sums / n) + (time.time() - t0,)),
          flush=True)
    sums[:] = 0
    M.export_weights(ema if ema is not None else model, a.out,
                     {"config": "tiny", "step": str(step), "made_by": "anchored_finetune.py " + " ".join(sys.argv[1:])})


if __name__ == "__main__":
    main()
