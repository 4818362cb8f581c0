#!/usr/bin/env python3
"""PyTorch reference for bench/cuda_forward.c: the same Wan2.1-style DiT (models/dit/dit.c), random weights, bf16,
torch.nn.functional.scaled_dot_product_attention, one forward pass at the 480p x 81-frame latent (21x60x104 ->
32,760 tokens), timed with CUDA events. Prints a "RESULT backend=torch ..." line; bench/run_gpu.sh runs both programs
side by side and prints the ratio.

    python3 bench/torch_dit.py                          # GPU: Wan2.1-1.3B, 30 layers, bf16
    python3 bench/torch_dit.py --layers 2 --reps 5      # quicker
    python3 bench/torch_dit.py --device cpu --tiny      # logic check on a CPU: the tiny config in fp32

Architecture as models/dit/dit.c and Wan's wan/modules/model.py: Conv3d patch embedding; sinusoidal timestep embedding
(float64) -> Linear, SiLU, Linear = e; SiLU, Linear -> e0 [6][dim]; text MLP (Linear, GELU-tanh, Linear); per block
adaLN-modulated self-attention with RMSNorm on q and k over the whole dim and 3D RoPE, cross-attention on an affine
LayerNorm, modulated GELU-tanh FFN, gated residuals; head with its own 2-vector modulation; unpatchify. Norms are
computed in float32 and cast back, as Wan does. Differences that do not change the work: PyTorch's default weight
init, RoPE applied on (even, odd) pairs in the activation dtype (Wan uses float64 complex numbers), and the
modulation arithmetic in the activation dtype (Wan keeps it in float32).

Works with torch 1.13 (no scaled_dot_product_attention: an explicit softmax(q k^T / sqrt(d)) v is used and reported)
and torch 2.x.
"""
import argparse
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# models/dit/config.c
WAN_1_3B = dict(name="wan2.1-t2v-1.3b", in_dim=16, out_dim=16, patch=(1, 2, 2), dim=1536, ffn_dim=8960,
                num_heads=12, num_layers=30, freq_dim=256, text_dim=4096, text_len=512, eps=1e-6, theta=10000.0,
                grid=(21, 60, 104))
TINY = dict(name="tiny", in_dim=3, out_dim=3, patch=(1, 8, 8), dim=128, ffn_dim=512, num_heads=4, num_layers=4,
            freq_dim=256, text_dim=64, text_len=16, eps=1e-6, theta=10000.0, grid=(8, 64, 64))


def flops_forward(c, L):
    """dit_flops_forward of models/dit/dit.c: the matrix work only, 2 FLOPs per multiply-add."""
    d, T, P = c["dim"], c["text_len"], math.prod(c["patch"])
    embed = 2 * L * d * c["in_dim"] * P + 2 * (c["freq_dim"] * d + d * d + d * 6 * d) + 2 * T * (c["text_dim"] * d + d * d)
    block = (4 * 2 * L * d * d + 4 * L * L * d + 2 * 2 * L * d * d + 2 * 2 * T * d * d + 4 * L * T * d
             + 2 * 2 * L * d * c["ffn_dim"])
    head = 2 * L * d * c["out_dim"] * P
    return embed + c["num_layers"] * block + head


def sinusoidal(dim, t):
    """Wan sinusoidal_embedding_1d: [cos(t w_j), sin(t w_j)], w_j = 10000^(-j/half), in float64."""
    half = dim // 2
    w = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64) / half)
    a = torch.tensor([float(t)], dtype=torch.float64)[:, None] * w[None]
    return torch.cat([torch.cos(a), torch.sin(a)], dim=1)


def rope_tables(f, h, w, head_dim, theta):
    """cos/sin [f*h*w, head_dim/2] as models/kernels.c rope_tables: pairs split c-2(c/3), c/3, c/3 over frame/row/col."""
    c = head_dim // 2
    part_hw = c // 3
    part_f = c - 2 * part_hw

    def freqs(pairs):
        return 1.0 / torch.pow(theta, torch.arange(pairs, dtype=torch.float64) * 2 / (2 * pairs))

    fi = torch.arange(f, dtype=torch.float64)[:, None, None, None] * freqs(part_f)
    hi = torch.arange(h, dtype=torch.float64)[None, :, None, None] * freqs(part_hw)
    wi = torch.arange(w, dtype=torch.float64)[None, None, :, None] * freqs(part_hw)
    ang = torch.cat([fi.expand(f, h, w, part_f), hi.expand(f, h, w, part_hw), wi.expand(f, h, w, part_hw)], dim=-1)
    ang = ang.reshape(f * h * w, c)
    return torch.cos(ang), torch.sin(ang)


def rope_apply(x, cos, sin):
    """x [B, L, heads, hd]: adjacent pairs (2p, 2p+1) rotated by angle [l, p]; cos/sin [L, hd/2]."""
    B, L, N, D = x.shape
    xr = x.reshape(B, L, N, D // 2, 2)
    a, b = xr[..., 0], xr[..., 1]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.stack([a * c - b * s, a * s + b * c], dim=-1).reshape(B, L, N, D)


HAVE_SDPA = hasattr(F, "scaled_dot_product_attention")


def attention(q, k, v):
    """q [B, Lq, N, D], k/v [B, Lk, N, D] -> [B, Lq, N*D]."""
    B, Lq, N, D = q.shape
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    if HAVE_SDPA:
        o = F.scaled_dot_product_attention(q, k, v)
    else:
        o = torch.matmul(torch.softmax(torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(D), dim=-1), v)
    return o.transpose(1, 2).reshape(B, Lq, N * D)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def layer_norm(x, eps, weight=None, bias=None):
    w = weight.float() if weight is not None else None
    b = bias.float() if bias is not None else None
    return F.layer_norm(x.float(), (x.shape[-1],), w, b, eps).type_as(x)


class Attention(nn.Module):
    def __init__(self, dim, heads, eps):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q, self.norm_k = RMSNorm(dim, eps), RMSNorm(dim, eps)

    def forward(self, x, context=None, cos=None, sin=None):
        B, L, D = x.shape
        src = x if context is None else context
        q = self.norm_q(self.q(x)).view(B, L, self.heads, -1)
        k = self.norm_k(self.k(src)).view(B, src.shape[1], self.heads, -1)
        v = self.v(src).view(B, src.shape[1], self.heads, -1)
        if cos is not None:
            q, k = rope_apply(q, cos, sin), rope_apply(k, cos, sin)
        return self.o(attention(q, k, v))


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["dim"]
        self.eps = c["eps"]
        self.self_attn = Attention(d, c["num_heads"], c["eps"])
        self.norm3 = nn.LayerNorm(d, eps=c["eps"])
        self.cross_attn = Attention(d, c["num_heads"], c["eps"])
        self.ffn = nn.Sequential(nn.Linear(d, c["ffn_dim"]), nn.GELU(approximate="tanh"), nn.Linear(c["ffn_dim"], d))
        self.modulation = nn.Parameter(torch.randn(1, 6, d) / d ** 0.5)

    def forward(self, x, e0, context, cos, sin):
        m = self.modulation + e0  # [B, 6, dim]
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = m.chunk(6, dim=1)
        x = x + self.self_attn(layer_norm(x, self.eps) * (1 + scale_msa) + shift_msa, cos=cos, sin=sin) * gate_msa
        x = x + self.cross_attn(layer_norm(x, self.eps, self.norm3.weight, self.norm3.bias), context=context)
        x = x + self.ffn(layer_norm(x, self.eps) * (1 + scale_mlp) + shift_mlp) * gate_mlp
        return x


class WanDiT(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        d, P = c["dim"], math.prod(c["patch"])
        self.patch_embedding = nn.Conv3d(c["in_dim"], d, kernel_size=c["patch"], stride=c["patch"])
        self.text_embedding = nn.Sequential(nn.Linear(c["text_dim"], d), nn.GELU(approximate="tanh"), nn.Linear(d, d))
        self.time_embedding = nn.Sequential(nn.Linear(c["freq_dim"], d), nn.SiLU(), nn.Linear(d, d))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        self.blocks = nn.ModuleList(Block(c) for _ in range(c["num_layers"]))
        self.head_modulation = nn.Parameter(torch.randn(1, 2, d) / d ** 0.5)
        self.head = nn.Linear(d, c["out_dim"] * P)

    def forward(self, x, t, text, cos, sin):
        """x [C, F, H, W], text [text_len, text_dim] -> velocity [C, F, H, W]."""
        c, (pt, ph, pw) = self.c, self.c["patch"]
        d = c["dim"]
        tok = self.patch_embedding(x[None])  # [1, dim, f, h, w]
        f, h, w = tok.shape[2:]
        tok = tok.flatten(2).transpose(1, 2)  # [1, L, dim], frame-major
        e = self.time_embedding(sinusoidal(c["freq_dim"], t).to(device=x.device, dtype=x.dtype))
        e0 = self.time_projection(e).view(1, 6, d)
        context = self.text_embedding(text[None])
        for block in self.blocks:
            tok = block(tok, e0, context, cos, sin)
        shift, scale = (self.head_modulation + e[:, None]).chunk(2, dim=1)
        y = self.head(layer_norm(tok, c["eps"]) * (1 + scale) + shift)  # [1, L, pt*ph*pw*out]
        y = y.view(f, h, w, pt, ph, pw, c["out_dim"])
        y = torch.einsum("fhwpqrc->cfphqwr", y)
        return y.reshape(c["out_dim"], f * pt, h * ph, w * pw)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="the tiny config (default: Wan2.1-1.3B)")
    ap.add_argument("--layers", type=int, default=None, help="number of blocks (default: the config's)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--grid", default=None, help="latent FxHxW (default: the config's; 21x60x104 for Wan)")
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default=None, help="default: bf16 on CUDA, fp32 on the CPU")
    args, _ = ap.parse_known_args()  # bench/run_gpu.sh passes the C benchmark's options too

    c = dict(TINY if args.tiny else WAN_1_3B)
    if args.layers:
        c["num_layers"] = args.layers
    if args.grid:
        c["grid"] = tuple(int(v) for v in args.grid.split("x"))
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("skipped: no CUDA device (torch.cuda.is_available() is False)")
        return 0
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype or ("bf16" if dev.type == "cuda" else "fp32")]
    Fr, H, W = c["grid"]
    pt, ph, pw = c["patch"]
    f, h, w = Fr // pt, H // ph, W // pw
    L = f * h * w
    hd = c["dim"] // c["num_heads"]

    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = WanDiT(c).to(device=dev, dtype=dtype).eval()
    init_s = time.perf_counter() - t0
    x = torch.randn(c["in_dim"], Fr, H, W, device=dev, dtype=dtype)
    text = torch.zeros(c["text_len"], c["text_dim"], device=dev, dtype=dtype)
    text[:20] = torch.randn(min(20, c["text_len"]), c["text_dim"], device=dev, dtype=dtype)[: c["text_len"]]
    cos, sin = rope_tables(f, h, w, hd, c["theta"])
    cos, sin = cos.to(device=dev, dtype=dtype), sin.to(device=dev, dtype=dtype)

    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print("device: %s; torch %s; attention: %s" % (name, torch.__version__,
          "F.scaled_dot_product_attention" if HAVE_SDPA else "explicit softmax (torch without SDPA)"))
    print("model: %s, %d layers, random weights (init %.1f s); latent %dx%dx%d -> %d tokens; %s; %d reps after 1 warm-up"
          % (c["name"], c["num_layers"], init_s, Fr, H, W, L, ("bf16" if dtype == torch.bfloat16 else "fp32"), args.reps))

    times = []
    with torch.no_grad():
        for r in range(args.reps + 1):
            if dev.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                torch.cuda.synchronize(dev)
                start.record()
                out = model(x, 500.0, text, cos, sin)
                end.record()
                torch.cuda.synchronize(dev)
                ms = start.elapsed_time(end)
            else:
                t = time.perf_counter()
                out = model(x, 500.0, text, cos, sin)
                ms = (time.perf_counter() - t) * 1e3
            if r > 0:  # the first call is the warm-up (kernel selection, allocator)
                times.append(ms)
    assert out.shape == x.shape, (out.shape, x.shape)
    finite = bool(torch.isfinite(out.float()).all())
    best, mean = min(times), sum(times) / len(times)
    tflops = flops_forward(c, L) / (best * 1e-3) * 1e-12
    mem = " peak memory %.0f MiB;" % (torch.cuda.max_memory_allocated(dev) / 2 ** 20) if dev.type == "cuda" else ""
    print("ms best %.1f, mean %.1f; %.2f TFLOP/s;%s output finite: %s" % (best, mean, tflops, mem, finite))
    print("RESULT backend=torch attention=%s precision=%s tokens=%d ms=%.3f tflops=%.2f"
          % ("sdpa" if HAVE_SDPA else "explicit", ("bf16" if dtype == torch.bfloat16 else "fp32"), L, best, tflops))
    return 0 if finite else 1


if __name__ == "__main__":
    sys.exit(main())
