"""Teach the near-noise steps the prompt's mean video while the rest of the network stays as it was (TRAINING.md
run 10). An experiment's recipe, not yet the shipped weights' one.

Each step (Adam, --lr after a 50-step warm-up, gradient clip 1, bf16 autocast) adds three losses:
  1. sigma = 1, target E[x0 | prompt] (train.make_batch with mean_target 1: the ideal prediction there, without the
     videos' scatter about it), --nmean samples, 1 in 10 prompts dropped (target E[x0]);
  2. sigma uniform in [0.95, 1], the ordinary flow-matching loss on real videos, --nband samples;
  3. below sigma 0.95, the distance of the x0 prediction from the --teacher's on the same inputs (the shipped run 7),
     weight --anchor-weight, --nanchor samples: the steps that draw the object keep their quality.
Every 100 steps it prints the sigma-1 travel (sign_overfit.travel: first -> last frame the prompted way, px, averaged
over 8 combinations and both words; the ideal's is ~+24), the held-out loss (train.heldout_batch, the figure
TRAINING.md quotes for every run), the three losses, and writes --out (safetensors, no EMA).

    /usr/bin/python3 models/tiny/anchored_finetune.py --init /tmp/escaped.safetensors --steps 1200 \
        --out /tmp/anchored.safetensors        # ~17 min on two cores
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataset as ds  # noqa: E402
import model as M  # noqa: E402
import train as T  # noqa: E402
from sign_overfit import travel  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--init", required=True, help="weights to start from (safetensors), e.g. sign_overfit.py --out")
    ap.add_argument("--teacher", default=os.path.join(M.HERE, "tiny.safetensors"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--lr", type=float, default=1e-4)
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
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    ideal = T.ideal_targets("cpu")
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    rng = np.random.default_rng(a.seed)
    gen = torch.Generator().manual_seed(a.seed + 1)
    probe_combos = [ds.COMBOS[i] for i in np.random.default_rng(3).choice(len(ds.COMBOS), 8, replace=False)]
    probe_noise = torch.randn(2, 3, 8, 64, 64, generator=torch.Generator().manual_seed(99))
    hb = T.heldout_batch(32, 3.0, "cpu")
    sums = np.zeros(3)
    t0 = time.time()
    for step in range(a.steps + 1):
        if step % 100 == 0:
            with torch.no_grad():
                held = float(T.fm_loss(model, *hb))
            print("step %4d  sigma-1 travel %+5.1f px  held-out %.4f  losses: ideal %.4f band %.4f anchor %.5f  %4.0fs"
                  % ((step, travel(model, probe_combos, probe_noise), held) + tuple(sums / 100) + (time.time() - t0,)),
                  flush=True)
            sums[:] = 0
            M.export_weights(model, a.out, {"config": "tiny", "step": str(step),
                                            "made_by": "anchored_finetune.py " + " ".join(sys.argv[1:])})
        if step == a.steps:
            break
        for g in opt.param_groups:
            g["lr"] = a.lr * min(1.0, (step + 1) / 50)
        loss_ideal = T.fm_loss(model, *T.make_batch(rng, a.nmean, gen, 3.0, 0.1, "cpu", mean_target=1.0, ideal=ideal),
                               bf16=True)
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
        sums += [float(loss_ideal), float(loss_band), float(loss_anchor)]


if __name__ == "__main__":
    main()
