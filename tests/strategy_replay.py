"""Shared driver for the strategies' official-code replays (tests/<strategy>_official.py).

A C test writes the inputs of one sampling run with fixture_replay_case() (tests/fixtures.h): the initial noise, the
cond and uncond text conditioning, the Euler sigmas and timesteps and the guidance scale, exactly what the runner
feeds the model for `cachebench run`. A strategy's transcription of its official code then drives the tiny model
(models/tiny/model.py, an independent PyTorch implementation of the Wan2.1 architecture, in float64) through the same
loop as harness/runner.c: per step the cond call, then the uncond call when guidance != 1, classifier-free guidance
v = vu + g (vc - vu), and the Euler update x += (sigma[i+1] - sigma[i]) v. What the official code changes is the body
of each model call: the transcription receives the model's stages (embed, each block module with its modulation and
gate, head) and composes them the way the official forward does.

    import strategy_replay as R
    case = R.Case(path)                     # written by fixture_replay_case
    model = R.Tiny(case.weights)            # float64
    def call(step, branch, x, t, text):     # one model call -> velocity [C,F,H,W]
        c = model.embed(x, t, text)
        tokens = c.tokens
        for layer in range(model.num_layers):
            tokens = model.block(layer, c, tokens)
        return model.head(c, tokens)
    out = R.sample(case, call)              # {"latents": [steps,C,F,H,W], "x": [C,F,H,W]}
    R.write(result_path, decisions=..., latents=out["latents"])

Results go to a safetensors file (every array as float32) that the C test reads with st_open and st_to_f32.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "models", "tiny"))
import model as M  # noqa: E402


class Case:
    """The inputs of one run (fixture_replay_case)."""

    def __init__(self, path):
        t, _ = M.load_safetensors(path)
        self.noise = torch.from_numpy(t["noise"].astype(np.float64))
        self.text = [torch.from_numpy(t["text.cond"].astype(np.float64)),
                     torch.from_numpy(t["text.uncond"].astype(np.float64))]
        self.sigmas = t["sigmas"].astype(np.float32)
        self.timesteps = t["timesteps"].astype(np.float32)
        self.guidance = float(t["guidance"][0])
        self.steps = len(self.timesteps)
        with open(path + ".weights") as f:
            self.weights = f.read().strip()


class Call:
    """The stage outputs of one model call's embed: what the block modules and the head need."""

    def __init__(self, x_in, t, tokens, e, e0, context, grid, cos, sin):
        self.x_in, self.t = x_in, t
        self.tokens, self.e, self.e0, self.context = tokens, e, e0, context
        self.grid, self.cos, self.sin = grid, cos, sin


class Tiny:
    """The tiny model in float64, split into the stages the official caching codes act between. Tokens are
    [1, L, dim] tensors; module outputs are taken before their gates, as in wan/modules/model.py."""

    def __init__(self, weights, dtype=torch.float64):
        self.m = M.TinyWan()
        M.import_weights(self.m, weights)
        self.m = self.m.to(dtype).eval()
        self.dtype = dtype
        self.cfg = self.m.cfg
        self.num_layers = self.cfg["num_layers"]
        self.dim = self.cfg["dim"]

    @torch.no_grad()
    def embed(self, x, t, text):
        m, dt = self.m, self.dtype
        x_in = x.to(dt)[None]
        tok = m.patch_embedding(x_in)
        _, C, f, h, w = tok.shape
        tok = tok.flatten(2).transpose(1, 2)
        tt = torch.tensor([float(t)], dtype=torch.float64)
        e = m.time_embedding(M.sinusoidal_embedding_1d(self.cfg["freq_dim"], tt).to(dt))
        e0 = m.time_projection(e).unflatten(1, (6, C))
        context = m.text_embedding(text.to(dt)[None])
        ang = M.rope_angles(f, h, w, C // self.cfg["num_heads"], self.cfg["rope_theta"])
        cos, sin = torch.cos(ang).to(dt), torch.sin(ang).to(dt)
        return Call(x_in, float(t), tok, e, e0, context, (f, h, w), cos, sin)

    def modulation(self, layer, call):
        """(shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp), each [1, 1, dim]: modulation + e0."""
        mod = self.m.blocks[layer].modulation + call.e0
        return tuple(mod[:, i:i + 1] for i in range(6))

    def _ln(self, x):
        return F.layer_norm(x, (self.dim,), eps=self.cfg["eps"])

    @torch.no_grad()
    def self_attn(self, layer, call, tokens):
        b = self.m.blocks[layer]
        shift, scale = self.modulation(layer, call)[0:2]
        return b.self_attn(self._ln(tokens) * (1 + scale) + shift, call.cos, call.sin)

    @torch.no_grad()
    def cross_attn(self, layer, call, tokens):
        b = self.m.blocks[layer]
        return b.cross_attn(b.norm3(tokens), call.context)

    @torch.no_grad()
    def ffn(self, layer, call, tokens):
        b = self.m.blocks[layer]
        shift, scale = self.modulation(layer, call)[3:5]
        return b.ffn(self._ln(tokens) * (1 + scale) + shift)

    def gates(self, layer, call):
        """(gate_msa, gate_mlp): x += y_sa * gate_msa; x += y_ca; x += y_ffn * gate_mlp."""
        mod = self.modulation(layer, call)
        return mod[2], mod[5]

    @torch.no_grad()
    def block(self, layer, call, tokens):
        g_sa, g_ffn = self.gates(layer, call)
        tokens = tokens + self.self_attn(layer, call, tokens) * g_sa
        tokens = tokens + self.cross_attn(layer, call, tokens)
        return tokens + self.ffn(layer, call, tokens) * g_ffn

    @torch.no_grad()
    def head(self, call, tokens):
        """-> velocity [C, F, H, W] (the tiny model's head predicts x0: converted as models/dit/dit.c does)."""
        m = self.m
        y = m.head(tokens, call.e)
        f, h, w = call.grid
        out = m.unpatchify(y, f, h, w)
        if self.cfg.get("predict", "v") == "x0":
            sigma = max(call.t / 1000.0, self.cfg["sigma_min"])
            out = (call.x_in - out) / sigma
        return out[0]

    def forward(self, x, t, text):
        c = self.embed(x, t, text)
        tokens = c.tokens
        for layer in range(self.num_layers):
            tokens = self.block(layer, c, tokens)
        return self.head(c, tokens)


@torch.no_grad()
def sample(case, call):
    """harness/runner.c's loop: call(step, branch, x, t, text) -> velocity; branch 0 = cond, 1 = uncond (only when
    guidance != 1). Returns {"latents": [steps, C, F, H, W] (x after each step), "x": the final latent}."""
    x = case.noise.clone()
    g = case.guidance
    latents = []
    for i in range(case.steps):
        t = float(case.timesteps[i])
        vc = call(i, 0, x, t, case.text[0])
        v = vc if g == 1.0 else (lambda vu: vu + g * (vc - vu))(call(i, 1, x, t, case.text[1]))
        x = x + float(np.float32(case.sigmas[i + 1]) - np.float32(case.sigmas[i])) * v
        latents.append(x.clone())
    return {"latents": torch.stack(latents), "x": x}


def rel_l1(a, b):
    """mean|a - b| / mean|b|: the relative L1 distance the caching codes use."""
    return float((a - b).abs().mean() / b.abs().mean())


def write(path, **arrays):
    """Writes the named arrays (numpy, torch or lists) for the C test, as float32."""
    out = {}
    for k, v in arrays.items():
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu().numpy()
        out[k] = np.asarray(v, dtype=np.float32)
    M.save_safetensors(path, out)


def main():
    """`strategy_replay.py CASE OUT`: the plain model (no caching) through the driver, latents to OUT: the check that
    the driver itself reproduces the C runner (tests/test_replay.c)."""
    case = Case(sys.argv[1])
    model = Tiny(case.weights)
    out = sample(case, lambda step, branch, x, t, text: model.forward(x, t, text))
    write(sys.argv[2], latents=out["latents"])


if __name__ == "__main__":
    main()
