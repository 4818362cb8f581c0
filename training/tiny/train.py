"""Train the tiny text-to-video DiT on the procedural dataset (flow matching), export safetensors, write the parity
fixture.

  train (default sub-command):
    /usr/bin/python3 training/tiny/train.py [train] --steps N --batch B --lr LR --seed S --out models/tiny/tiny.safetensors
        [--device cpu|cuda] [--threads 2] [--init ckpt.pt|weights.safetensors] [--log training/tiny/train.log]
  fixture:
    /usr/bin/python3 training/tiny/train.py fixture [--weights models/tiny/tiny.safetensors]
        [--out models/tiny/parity_fixture.safetensors]
  roundtrip (self-test: export -> import gives an identical forward):
    /usr/bin/python3 training/tiny/train.py roundtrip

Loss: MSE between the model output and v = noise - x0 at x_t = (1-sigma) x0 + sigma noise, t = 1000 sigma.
sigma is drawn as the sampler spends its steps: u ~ U(0,1), sigma = shift u / (1 + (shift-1) u) (shift 3).
The prompt is replaced by the empty prompt (all 16 context rows zero) with probability --cfg-drop (0.1).
AdamW, linear warm-up then cosine decay to 10%, gradient clipping (1.0), EMA of the weights (exported).
A fixed held-out batch (fixed videos, noise and sigmas, seed 12345) is evaluated every --eval-every steps.
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

HERE = os.path.dirname(os.path.abspath(__file__))


def shifted(u, shift):
    return shift * u / (1.0 + (shift - 1.0) * u)


# --near-noise draws part of each batch from sigma in [NEAR_NOISE_SIGMA, 1]: the steps where the motion's sign is
# decided (TRAINING.md run 9).
NEAR_NOISE_SIGMA = 0.95
# --mean-target's E[x0 | prompt]: Monte Carlo over this many draws per shape and direction (2x that per estimate,
# dataset.coverage_means); its RMS error, ~0.013 in [-1, 1] units, is small against the ~0.2 RMS the loss fits.
MEAN_TARGET_DRAWS = 300


def ideal_means():
    """{prompt: E[x0 | the prompt's words]} (numpy; "" too: E[x0]) as every user of the ideal draws it: the coverage
    maps from MEAN_TARGET_DRAWS draws with seed 42 (dataset.coverage_means), dataset.mean_videos, averaged over
    prompts that are the same bag of words (dataset.same_words_means)."""
    cov = ds.coverage_means(np.random.default_rng(42), MEAN_TARGET_DRAWS)
    return ds.same_words_means(ds.mean_videos(cov))


def ideal_targets(device):
    """ideal_means as tensors on `device`: the `ideal` table make_batch takes."""
    return {k: torch.from_numpy(v).to(device) for k, v in ideal_means().items()}


def make_batch(rng, n, gen, shift, cfg_drop, device, render="numpy", near_noise=0.0, mean_target=0.0, ideal=None):
    """render "torch": draw the parameters with `rng` as the numpy path does (so the same videos) but render them on
    `device` (dataset.render_batch_torch); noise and sigmas come from `gen`, which lives on `device`.
    near_noise: the first round(near_noise * n) samples get sigma uniform in [NEAR_NOISE_SIGMA, 1] instead.
    mean_target: the last round(mean_target * n) samples get sigma 1 and, in place of their video, the ideal x0 there,
    ideal[prompt] (ideal_targets: E[x0 | the prompt's words]; "" for a dropped prompt). The expected gradient is the
    same as the videos'; what goes is their scatter about the mean, which at sigma 1 is nearly all of the loss and
    buries the direction word's share of it (TRAINING.md runs 10, 11). Videos, noise and the other sigmas are drawn
    as without."""
    if render == "torch":
        params = [ds.random_params(rng) for _ in range(n)]
        x0 = ds.render_batch_torch(params, device)
        prompts = [ds.prompt_of_params(p) for p in params]
    else:
        vids, prompts = ds.random_batch(rng, n)
        x0 = torch.from_numpy(vids).to(device)
    ids = [M.tokenize(p) for p in prompts]
    if cfg_drop > 0:
        drop = rng.random(n) < cfg_drop
        ids = [[] if d else i for d, i in zip(drop, ids)]
    tok = M.pad_tokens(ids)
    noise = torch.randn(x0.shape, generator=gen, device=gen.device)
    u = torch.rand(n, generator=gen, dtype=torch.float64, device=gen.device)
    sigma = shifted(u, shift)
    k = int(round(near_noise * n))
    if k:
        sigma[:k] = 1.0 - (1.0 - NEAR_NOISE_SIGMA) * u[:k]
    m = int(round(mean_target * n))
    if m:
        if k + m > n:
            raise ValueError("near_noise %g + mean_target %g cover more than the batch" % (near_noise, mean_target))
        sigma[n - m:] = 1.0
        x0[n - m:] = torch.stack([ideal[M.prompt_of_tokens(row)] for row in tok[n - m:]]).to(x0.device)
    return x0, tok.to(device), noise.to(device), sigma.float().to(device)


def make_pair_batch(rng, n, gen, shift, cfg_drop, device, render="numpy", near_noise=0.0, mean_target=0.0,
                    ideal=None):
    """make_batch for n // 2 videos, then each video played backwards as the second half: the same noise, the same
    sigma, the prompt with the opposite direction word (--reverse-pairs). A "right" video played backwards is an
    exact draw of "left" (dataset.random_params starts the object uniformly where its whole path fits, the same
    range both ways), so the data distribution is unchanged; only the pairing is new. With one noise per pair, the
    two halves' inputs differ only by the reversed clean video (and not at all at sigma 1), so the sign of the
    direction word is the only thing that tells their targets apart: antithetic sampling of the term the plain
    batches leave to chance (TRAINING.md run 9). cfg-drop is drawn per video, as in make_batch. With mean_target, a
    reversed ideal is the opposite word's ideal exactly (dataset.coverage_means), so the pairing holds there too."""
    h = n // 2
    if n != 2 * h:
        raise ValueError("--reverse-pairs needs an even batch, got %d" % n)
    x0, tok, noise, sigma = make_batch(rng, h, gen, shift, 0.0, device, render, near_noise, mean_target, ideal)
    prompts = [M.prompt_of_tokens(row) for row in tok]
    prompts += [ds.reversed_prompt(p) for p in prompts]
    ids = [M.tokenize(p) for p in prompts]
    if cfg_drop > 0:
        drop = rng.random(n) < cfg_drop
        ids = [[] if d else i for d, i in zip(drop, ids)]
    x0, tok = torch.cat([x0, x0.flip(2)]), M.pad_tokens(ids)
    m = int(round(mean_target * h))
    for i in list(range(h - m, h)) + list(range(n - m, n)):  # a dropped prompt's ideal is E[x0]
        x0[i] = ideal[M.prompt_of_tokens(tok[i])].to(x0.device)
    return x0, tok.to(device), torch.cat([noise, noise]), torch.cat([sigma, sigma])


def heldout_batch(n, shift, device):
    """Fixed held-out batch: new random videos (seed 12345), fixed noise, stratified sigmas; 1/8 empty prompts."""
    rng = np.random.default_rng(12345)
    gen = torch.Generator().manual_seed(12345)
    vids, prompts = ds.random_batch(rng, n)
    ids = [M.tokenize(p) for p in prompts]
    ids = [[] if i % 8 == 7 else x for i, x in enumerate(ids)]
    noise = torch.randn(vids.shape, generator=gen)
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    u = u[torch.randperm(n, generator=gen)]
    sigma = shifted(u, shift).float()
    return torch.from_numpy(vids).to(device), M.pad_tokens(ids).to(device), noise.to(device), sigma.to(device)


def fm_loss(model, x0, tok, noise, sigma, bf16=False, cap_sigma=0.0):
    """Velocity MSE. bf16=True runs the forward under bf16 autocast (fp32 master weights, fp32 loss): on CPUs with
    AVX512-BF16 a training step is ~4.6x faster than fp32 (0.39 s vs 1.81 s at batch 8 here). Evaluation always runs
    in fp32 without weighting.
    cap_sigma > 0 weights each sample by min(1, (sigma / cap_sigma)^2). For an x0-predicting model the velocity error
    is |x0_hat - x0| / sigma, so the plain v-loss weights x0 errors by 1 / sigma^2: under the shift-3 sigma
    distribution the 10% of samples below sigma 0.25 carry most of the gradient, and the high-noise steps that decide
    where the object is (and that there is only one) learn slowest. The cap makes that weight 1 / max(sigma, cap)^2."""
    s = sigma.view(-1, 1, 1, 1, 1)
    xt = (1 - s) * x0 + s * noise
    with torch.autocast(x0.device.type, dtype=torch.bfloat16, enabled=bf16):
        v = model(xt, sigma * 1000.0, tok)
    err = ((v.float() - (noise - x0)) ** 2).mean(dim=(1, 2, 3, 4))
    if cap_sigma > 0:
        err = err * torch.clamp(sigma / cap_sigma, max=1.0) ** 2
    return err.mean()


@torch.no_grad()
def eval_loss(model, hb, chunk=16):
    x0, tok, noise, sigma = hb
    tot = 0.0
    for i in range(0, x0.shape[0], chunk):
        sl = slice(i, i + chunk)
        tot += fm_loss(model, x0[sl], tok[sl], noise[sl], sigma[sl]).item() * x0[sl].shape[0]
    return tot / x0.shape[0]


def log(fh, msg):
    line = time.strftime("%H:%M:%S ") + msg
    print(line, flush=True)
    if fh:
        fh.write(line + "\n")
        fh.flush()


def split_direction_words(model, factor):
    """Scale the difference between the "left" and "right" (and "up" and "down") token embeddings by `factor` about
    their mean. The run-7 text MLP mapped each pair to almost the same context row (1.8 apart, against ~15 between
    axes): while nothing downstream uses the sign, a sign difference only adds noise and is trained away, and then
    nothing downstream can learn to use it. This restarts the pairs apart (TRAINING.md run 9)."""
    E = model.token_embedding.weight
    with torch.no_grad():
        for a, b in (("left", "right"), ("up", "down")):
            ia, ib = M.WORD2ID[a], M.WORD2ID[b]
            mean, half = (E[ia] + E[ib]) / 2, (E[ia] - E[ib]) / 2
            E[ia] = mean + factor * half
            E[ib] = mean - factor * half


def cmd_train(a):
    if a.split_directions != 1.0 and not (a.init or "").endswith(".safetensors"):
        raise SystemExit("train.py: --split-directions changes the weights loaded by --init WEIGHTS.safetensors; "
                         "without them (or with a checkpoint to resume) it would do nothing")
    if a.reverse_pairs and a.batch % 2:
        raise SystemExit("train.py: --reverse-pairs pairs each video with itself played backwards: --batch must be "
                         "even, not %d" % a.batch)
    if not (0.0 <= a.near_noise and 0.0 <= a.mean_target and a.near_noise + a.mean_target <= 1.0):
        raise SystemExit("train.py: --near-noise %g and --mean-target %g are fractions of one batch: each >= 0, "
                         "together <= 1" % (a.near_noise, a.mean_target))
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    rng = np.random.default_rng(a.seed)
    render = a.render if a.render != "auto" else ("torch" if device.startswith("cuda") else "numpy")
    # On a GPU the noise is drawn there too: a CPU generator takes ~0.1 s for a batch of 256 videos.
    gen = torch.Generator(device=device if device.startswith("cuda") else "cpu").manual_seed(a.seed + 1)
    model = M.TinyWan().to(device)
    ema = copy.deepcopy(model)
    for p in ema.parameters():
        p.requires_grad_(False)
    decay_params, other = [], []
    for n, p in model.named_parameters():
        (decay_params if p.ndim >= 2 and "modulation" not in n and "token_embedding" not in n else other).append(p)
    opt = torch.optim.AdamW([{"params": decay_params, "weight_decay": a.wd}, {"params": other, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.99), eps=1e-8)
    step0 = 0
    prog0 = 0.0
    if a.init:
        if a.init.endswith(".safetensors"):
            M.import_weights(model, a.init)
            if a.split_directions != 1.0:
                split_direction_words(model, a.split_directions)
            if a.zero_head:  # a new output parameterisation: keep the trunk, restart the head as WanModel does
                torch.nn.init.zeros_(model.head.head.weight)
                torch.nn.init.zeros_(model.head.head.bias)
            ema.load_state_dict(model.state_dict())
        else:
            ck = torch.load(a.init, map_location=device)
            model.load_state_dict(ck["model"])
            ema.load_state_dict(ck["ema"])
            opt.load_state_dict(ck["opt"])
            step0 = ck["step"]
            prog0 = float(ck.get("prog", 0.0))
            rng.bit_generator.state = ck["np_rng"]
            gen.set_state(ck["torch_gen"])
    if a.resume_progress >= 0:
        prog0 = a.resume_progress
    fh = open(a.log, "a") if a.log else None
    nparams = sum(p.numel() for p in model.parameters())
    log(fh, "start: %s" % " ".join(sys.argv))
    log(fh, "device=%s threads=%d params=%d steps=%d batch=%d lr=%g seed=%d shift=%g cfg_drop=%g ema=%g from_step=%d "
        "progress=%.3f precision=%s cap_sigma=%g render=%s near_noise=%g split_directions=%g reverse_pairs=%d "
        "mean_target=%g" % (
            device, a.threads, nparams, a.steps, a.batch, a.lr, a.seed, a.shift, a.cfg_drop, a.ema, step0, prog0,
            a.precision, a.cap_sigma, render, a.near_noise, a.split_directions, a.reverse_pairs, a.mean_target))
    hb = heldout_batch(a.heldout, a.shift, device)
    ideal = ideal_targets(device) if a.mean_target > 0 else None
    warm = min(a.warmup, max(1, a.steps // 10))

    t_start = time.time()
    prog = {"p": prog0}  # schedule progress in [0,1] (monotone; saved in the checkpoint)

    def lr_at(s):
        if s < warm:
            return a.lr * (s + 1) / warm
        if s - step0 < a.rewarm:  # resuming into a new schedule: ramp up from the old optimizer state
            return a.lr * (s - step0 + 1) / a.rewarm
        if a.resume_progress >= 0:  # a new schedule from prog0: step progress counts from the resumed step
            p = prog0 + (1.0 - prog0) * (s - step0) / max(1, a.steps - step0)
        else:
            p = (s - warm) / max(1, a.steps - warm)
        if a.time_budget > 0:  # wall-clock safety net: anneal on time if that runs out first
            p = max(p, prog0 + (1.0 - prog0) * (time.time() - t_start) / a.time_budget)
        prog["p"] = p = max(prog["p"], p)
        return a.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))

    def save(step, final=False):
        meta = {"config": "tiny", "step": step, "seed": a.seed, "batch": a.batch, "lr": a.lr, "weights": "ema"}
        M.export_weights(ema, a.out, meta)
        if a.ckpt:
            torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step,
                        "prog": prog["p"], "np_rng": rng.bit_generator.state, "torch_gen": gen.get_state()}, a.ckpt + ".tmp")
            os.replace(a.ckpt + ".tmp", a.ckpt)
        log(fh, "saved %s%s (step %d)" % (a.out, " and " + a.ckpt if a.ckpt else "", step))

    ema_params = list(ema.parameters())
    model_params = [p.detach() for p in model.parameters()]
    t_last = t_start
    run_loss, run_n = 0.0, 0
    step = step0
    last = step0
    for step in range(step0, a.steps):
        lr = lr_at(step)
        if prog["p"] >= 1.0 and step >= warm:
            log(fh, "time budget %.0fs reached at step %d: stopping" % (a.time_budget, step))
            break
        for g in opt.param_groups:
            g["lr"] = lr
        draw = make_pair_batch if a.reverse_pairs else make_batch
        x0, tok, noise, sigma = draw(rng, a.batch, gen, a.shift, a.cfg_drop, device, render, a.near_noise,
                                     a.mean_target, ideal)
        loss = fm_loss(model, x0, tok, noise, sigma, bf16=(a.precision == "bf16"), cap_sigma=a.cap_sigma)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        n = last = step + 1
        d = min(a.ema, (1 + n - step0) / (10 + n - step0))
        with torch.no_grad():  # one fused update over all tensors (a per-tensor loop is ~100 launches on a GPU)
            torch._foreach_mul_(ema_params, d)
            torch._foreach_add_(ema_params, model_params, alpha=1 - d)
        run_loss = run_loss + loss.detach()  # a tensor: no wait for the GPU until the next log line
        run_n += 1
        if n % a.log_every == 0 or n == a.steps:
            now = time.time()
            msg = "step %d train %.5f lr %.2e gnorm %.3f %.3fs/step elapsed %.0fs" % (
                n, float(run_loss) / run_n, lr, float(gn), (now - t_last) / run_n, now - t_start)
            if n % a.eval_every == 0 or n == a.steps:
                msg += " | heldout %.5f ema %.5f" % (eval_loss(model, hb), eval_loss(ema, hb))
            log(fh, msg)
            run_loss, run_n = 0.0, 0
            t_last = time.time()
        if n % a.ckpt_every == 0 and n != a.steps:
            save(n)
    save(last, final=True)
    log(fh, "done: step %d (%d steps this run) in %.0fs; final heldout raw %.5f ema %.5f" % (
        last, last - step0, time.time() - t_start, eval_loss(model, hb), eval_loss(ema, hb)))


def cmd_roundtrip(a):
    torch.manual_seed(0)
    m = M.TinyWan()
    # perturb zero-initialised params so the test is meaningful
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = "/tmp/tiny_roundtrip.safetensors"
    M.export_weights(m, path)
    m2 = M.TinyWan()
    M.import_weights(m2, path)
    x = torch.randn(2, 3, 8, 64, 64)
    tok = M.pad_tokens([M.tokenize("a red circle moving left on a black background"), []])
    t = torch.tensor([500.0, 999.0])
    with torch.no_grad():
        d = (m(x, t, tok) - m2(x, t, tok)).abs().max().item()
    tensors, _ = M.load_safetensors(path)
    print("roundtrip max abs diff %.3g; %d tensors; keys ok: %s" % (d, len(tensors), sorted(tensors) == sorted(
        m.state_dict())))
    for k in sorted(tensors):
        print("  %-40s %s" % (k, list(tensors[k].shape)))
    assert d == 0.0


FIXTURE_CASES = [
    # (prompt, sigma, seed) -- one empty prompt, varied t
    ("a red circle moving left on a black background", 0.95, 1),
    ("", 0.5, 2),
    ("a yellow triangle moving up on a blue background", 0.12, 3),
    ("a green square moving down on a gray background", 0.03, 4),  # below sigma_min: the clip of x0 -> v
]


def cmd_fixture(a):
    """Parity fixture: case{i}.x [3,8,64,64], case{i}.t [1] (= sigma*1000), case{i}.tokens [16] (float ids, -1 = pad),
    case{i}.v [3,8,64,64] = float64 forward of the exported float32 weights (stored as float32)."""
    m = M.TinyWan()
    M.import_weights(m, a.weights)
    m = m.double().eval()
    out = {}
    rng = np.random.default_rng(777)
    for i, (prompt, sigma, seed) in enumerate(FIXTURE_CASES):
        vid, _, _ = ds.random_sample(rng)
        noise = torch.randn(1, 3, 8, 64, 64, generator=torch.Generator().manual_seed(seed))
        x = ((1 - sigma) * torch.from_numpy(vid)[None] + sigma * noise).float()  # exactly representable in fp32
        t = torch.tensor([sigma * 1000.0], dtype=torch.float32)
        tok = M.pad_tokens([M.tokenize(prompt)])
        with torch.no_grad():
            v = m(x.double(), t.double(), tok)
        out["case%d.x" % i] = x[0].numpy().astype(np.float32)
        out["case%d.t" % i] = t.numpy()
        out["case%d.tokens" % i] = tok[0].numpy().astype(np.float32)
        out["case%d.v" % i] = v[0].numpy().astype(np.float32)
        print("case%d: prompt=%r t=%.1f |v|_rms=%.4f" % (i, prompt, t.item(), v.pow(2).mean().sqrt().item()))
    # sanity: fp32 torch forward vs the float64 reference
    m32 = M.TinyWan()
    M.import_weights(m32, a.weights)
    for i in range(len(FIXTURE_CASES)):
        with torch.no_grad():
            v32 = m32(torch.from_numpy(out["case%d.x" % i])[None], torch.from_numpy(out["case%d.t" % i]),
                      torch.from_numpy(out["case%d.tokens" % i]).long()[None])[0].numpy()
        ref = out["case%d.v" % i].astype(np.float64)
        rel = np.linalg.norm(v32 - ref) / np.linalg.norm(ref)
        print("case%d: torch fp32 vs fp64 rel L2 err %.2e, max abs %.2e" % (i, rel, np.abs(v32 - ref).max()))
    import hashlib
    with open(a.weights, "rb") as fw:
        sha = hashlib.sha256(fw.read()).hexdigest()
    meta = {"weights": os.path.basename(a.weights), "weights_sha256": sha, "cases": len(FIXTURE_CASES),
            "prompts": " | ".join(p for p, _, _ in FIXTURE_CASES),
            "layout": "caseN.x [3,8,64,64] C,F,H,W; caseN.t [1] = sigma*1000; caseN.tokens [16] float ids, -1 pad "
                      "(all -1 = empty prompt); caseN.v [3,8,64,64] float64 forward rounded to f32"}
    M.save_safetensors(a.out, out, meta)
    print("wrote", a.out)


def main():
    argv = sys.argv[1:]
    if not argv or argv[0].startswith("-"):
        argv = ["train"] + argv
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    t = sub.add_parser("train")
    t.add_argument("--steps", type=int, default=3000)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default=os.path.join(M.HERE, "tiny.safetensors"))
    t.add_argument("--device", default=None)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--init", default=None, help="resume: checkpoint .pt (full state) or weights .safetensors")
    t.add_argument("--ckpt", default=os.path.join(HERE, "ckpt.pt"), help="full training state, saved periodically")
    t.add_argument("--log", default=os.path.join(HERE, "train.log"))
    t.add_argument("--shift", type=float, default=3.0)
    t.add_argument("--near-noise", type=float, default=0.0,
                   help="fraction of each batch with sigma uniform in [%g, 1], where the motion's sign is decided"
                        % NEAR_NOISE_SIGMA)
    t.add_argument("--mean-target", type=float, default=0.0,
                   help="fraction of each batch at sigma 1 with the ideal target E[x0 | prompt] in place of the video "
                        "(make_batch)")
    t.add_argument("--reverse-pairs", action="store_true",
                   help="the second half of each batch is the first half played backwards with the opposite "
                        "direction word and the same noise and sigma (make_pair_batch)")
    t.add_argument("--split-directions", type=float, default=1.0,
                   help="with --init WEIGHTS.safetensors: scale the left-right and up-down token differences by S")
    t.add_argument("--cfg-drop", type=float, default=0.1)
    t.add_argument("--ema", type=float, default=0.998)
    t.add_argument("--wd", type=float, default=0.01)
    t.add_argument("--clip", type=float, default=1.0)
    t.add_argument("--warmup", type=int, default=200)
    t.add_argument("--cap-sigma", type=float, default=0.0,
                   help="weight samples by min(1, (sigma/cap)^2) (see fm_loss); 0: the plain velocity MSE")
    t.add_argument("--zero-head", action="store_true",
                   help="with --init WEIGHTS.safetensors: zero head.head (weight, bias) before training")
    t.add_argument("--rewarm", type=int, default=0,
                   help="after --init from a checkpoint: linear lr ramp over this many steps of the new schedule")
    t.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: forward/backward under bf16 autocast, fp32 master weights, EMA and evaluation")
    t.add_argument("--resume-progress", type=float, default=-1.0,
                   help="start a new schedule at this progress (0: a fresh cosine) instead of the one restored from "
                        "--init; step progress then counts from the resumed step to --steps")
    t.add_argument("--time-budget", type=float, default=0.0,
                   help="seconds; if >0 the cosine schedule advances by max(step, wall-clock) progress and training "
                        "stops when the budget is spent (the step reached is logged). On resume the remaining "
                        "progress saved in the checkpoint is spread over this budget")
    t.add_argument("--render", choices=("auto", "numpy", "torch"), default="auto",
                   help="how training videos are drawn: numpy (one at a time, on the CPU) or torch (the whole batch on "
                        "--device; the same videos); auto: torch on a GPU, numpy otherwise")
    t.add_argument("--heldout", type=int, default=32)
    t.add_argument("--log-every", type=int, default=25)
    t.add_argument("--eval-every", type=int, default=100)
    t.add_argument("--ckpt-every", type=int, default=250)
    f = sub.add_parser("fixture")
    f.add_argument("--weights", default=os.path.join(M.HERE, "tiny.safetensors"))
    f.add_argument("--out", default=os.path.join(M.HERE, "parity_fixture.safetensors"))
    sub.add_parser("roundtrip")
    a = ap.parse_args(argv)
    {"train": cmd_train, "fixture": cmd_fixture, "roundtrip": cmd_roundtrip}[a.cmd](a)


if __name__ == "__main__":
    main()
