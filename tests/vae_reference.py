#!/usr/bin/env python3
"""Test oracle for models/vae/vae.c: an independent PyTorch transcription of the Wan2.1 VAE decoder
(Wan-Video/Wan2.1 wan/modules/vae.py: CausalConv3d, RMS_norm, Resample, ResidualBlock, AttentionBlock, Decoder3d,
WanVAE_.decode, WanVAE's mean/std), computed in float64.

    vae_reference.py WEIGHTS LATENTS OUT --dim D --mult 1,2,4,4 --res-blocks 2 --temporal 1,1,0

WEIGHTS: safetensors with the official names; LATENTS: safetensors with `latents` [16, F, H, W].
OUT gets `video` [3, T, 8H, 8W]: the official streaming decode, one latent frame per chunk with the per-conv
feature cache (feat_cache / feat_idx, the 'Rep' marker of the temporal upsamplers), clamped to [-1, 1]; and
`video_unclamped`. The script also decodes the whole sequence at once (causal convs over all frames, the first
frame kept out of each time_conv) and in chunks of 1, 2, 2, ... latent frames, and exits 1 if either differs from the
official chunking by more than 1e-9 relative.
"""
import argparse
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from safetensors_np import read as read_safetensors, write_arrays as write_safetensors  # noqa: E402

MEAN = [-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
        0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921]
STD = [2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
       3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160]


def layer_list(dim, mult, res_blocks, temporal):
    """Decoder3d's modules in order: (kind, name, in_dim, out_dim)."""
    dims = [dim * m for m in [mult[-1]] + mult[::-1]]
    mods = [("res", "decoder.middle.0", dims[0], dims[0]), ("attn", "decoder.middle.1", dims[0], dims[0]),
            ("res", "decoder.middle.2", dims[0], dims[0])]
    k = 0
    for i in range(len(mult)):
        cin, cout = dims[i], dims[i + 1]
        if i > 0:
            cin //= 2
        for _ in range(res_blocks + 1):
            mods.append(("res", "decoder.upsamples.%d" % k, cin, cout))
            cin = cout
            k += 1
        if i != len(mult) - 1:
            mods.append(("up3d" if temporal[i] else "up2d", "decoder.upsamples.%d" % k, cout, cout // 2))
            k += 1
    return mods


class Decoder:
    """mode 'stream': every causal conv gets the chunk plus its cache (list indexed by the conv's order);
    mode 'whole': no cache, the chunk is the whole sequence."""

    def __init__(self, w, mods):
        self.w, self.mods = w, mods
        self.cache, self.idx = None, 0

    def conv3d(self, x, name, cache=None):
        wt, b = self.w[name + ".weight"], self.w[name + ".bias"]
        kt, ks = wt.shape[2], wt.shape[3]
        tpad = kt - 1
        if cache is not None and tpad > 0:
            x = torch.cat([cache, x], 2)
            tpad -= cache.shape[2]
        x = F.pad(x, (ks // 2, ks // 2, ks // 2, ks // 2, tpad, 0))
        return F.conv3d(x, wt, b)

    def cached_conv(self, x, name):
        """ResidualBlock / head / conv1 style: keep the last 2 input frames (from the previous chunk if short)."""
        if self.cache is None:
            return self.conv3d(x, name)
        i = self.idx
        self.idx += 1
        prev = self.cache[i]
        keep = x[:, :, -2:].clone()
        if keep.shape[2] < 2 and prev is not None:
            keep = torch.cat([prev[:, :, -1:], keep], 2)
        y = self.conv3d(x, name, prev)
        self.cache[i] = keep
        return y

    @staticmethod
    def rms(x, gamma):
        g = gamma.reshape(1, -1, *([1] * (x.dim() - 2)))
        return F.normalize(x, dim=1) * (x.shape[1] ** 0.5) * g

    def residual(self, x, name, cin, cout):
        h = self.conv3d(x, name + ".shortcut") if cin != cout else x
        y = F.silu(self.rms(x, self.w[name + ".residual.0.gamma"]))
        y = self.cached_conv(y, name + ".residual.2")
        y = F.silu(self.rms(y, self.w[name + ".residual.3.gamma"]))
        y = self.cached_conv(y, name + ".residual.6")
        return y + h

    def attention(self, x, name):
        b, c, t, h, w = x.shape
        f = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        f = self.rms(f, self.w[name + ".norm.gamma"])
        qkv = F.conv2d(f, self.w[name + ".to_qkv.weight"], self.w[name + ".to_qkv.bias"])
        qkv = qkv.reshape(b * t, 3 * c, h * w).transpose(1, 2)       # [bt, hw, 3c]
        q, k, v = qkv[..., :c], qkv[..., c:2 * c], qkv[..., 2 * c:]
        a = torch.softmax(q @ k.transpose(1, 2) / c ** 0.5, dim=-1) @ v  # [bt, hw, c]
        a = a.transpose(1, 2).reshape(b * t, c, h, w)
        a = F.conv2d(a, self.w[name + ".proj.weight"], self.w[name + ".proj.bias"])
        return x + a.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)

    def time_double(self, x, name):
        """time_conv: [b, c, t] -> [b, c, 2t]; output channels [0, c) are frame 2t, [c, 2c) frame 2t+1."""
        b, c, t, h, w = x.shape
        if self.cache is None:
            if t == 1:
                return x
            rest = self.conv3d(x[:, :, 1:], name + ".time_conv")
            return torch.cat([x[:, :, :1], self.interleave(rest, c)], 2)
        i = self.idx
        self.idx += 1
        prev = self.cache[i]
        if prev is None:
            self.cache[i] = "Rep"
            return x
        keep = x[:, :, -2:].clone()
        if keep.shape[2] < 2:
            keep = torch.cat([torch.zeros_like(keep) if isinstance(prev, str) else prev[:, :, -1:], keep], 2)
        y = self.conv3d(x, name + ".time_conv", None if isinstance(prev, str) else prev)
        self.cache[i] = keep
        return self.interleave(y, c)

    @staticmethod
    def interleave(y, c):
        b, _, t, h, w = y.shape
        y = y.reshape(b, 2, c, t, h, w).permute(0, 2, 3, 1, 4, 5)
        return y.reshape(b, c, 2 * t, h, w)

    def upsample(self, x, name, temporal):
        if temporal:
            x = self.time_double(x, name)
        b, c, t, h, w = x.shape
        f = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        f = F.interpolate(f, scale_factor=2.0, mode="nearest-exact")
        f = F.conv2d(f, self.w[name + ".resample.1.weight"], self.w[name + ".resample.1.bias"], padding=1)
        return f.reshape(b, t, c // 2, 2 * h, 2 * w).permute(0, 2, 1, 3, 4)

    def forward(self, x):
        self.idx = 0
        x = self.cached_conv(x, "decoder.conv1")
        for kind, name, cin, cout in self.mods:
            if kind == "res":
                x = self.residual(x, name, cin, cout)
            elif kind == "attn":
                x = self.attention(x, name)
            else:
                x = self.upsample(x, name, kind == "up3d")
        x = F.silu(self.rms(x, self.w["decoder.head.0.gamma"]))
        return self.cached_conv(x, "decoder.head.2")


def decode(w, mods, latents, chunk):
    """chunk 0: the whole sequence at once; else the first latent frame alone (the 'Rep' marker needs that), then
    chunks of that many latent frames, with the feature cache."""
    mean = torch.tensor(MEAN, dtype=torch.float64).view(1, -1, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(STD, dtype=torch.float64).view(1, -1, 1, 1, 1)
    z = latents[None] / inv_std + mean
    x = F.conv3d(z, w["conv2.weight"], w["conv2.bias"])
    dec = Decoder(w, mods)
    if chunk == 0:
        return dec.forward(x)[0]
    dec.cache = [None] * 1000
    starts = [0] + list(range(1, x.shape[2], chunk))
    outs = [dec.forward(x[:, :, i:i + (1 if i == 0 else chunk)]) for i in starts]
    return torch.cat(outs, 2)[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("weights")
    ap.add_argument("latents")
    ap.add_argument("out")
    ap.add_argument("--dim", type=int, required=True)
    ap.add_argument("--mult", required=True)
    ap.add_argument("--res-blocks", type=int, required=True)
    ap.add_argument("--temporal", required=True)
    a = ap.parse_args()
    mult = [int(v) for v in a.mult.split(",")]
    temporal = [int(v) for v in a.temporal.split(",")] if a.temporal else []
    w = {k: torch.from_numpy(v.astype(np.float64)) for k, v in read_safetensors(a.weights).items()}
    latents = torch.from_numpy(read_safetensors(a.latents)["latents"].astype(np.float64))
    mods = layer_list(a.dim, mult, a.res_blocks, temporal)
    with torch.no_grad():
        official = decode(w, mods, latents, 1)
        for chunk in (0, 2):
            other = decode(w, mods, latents, chunk)
            rel = float((other - official).abs().max() / official.abs().max())
            if other.shape != official.shape or rel > 1e-9:
                print("chunking %d differs from the official per-frame chunking: shape %s vs %s, rel %.3g"
                      % (chunk, tuple(other.shape), tuple(official.shape), rel))
                return 1
    write_safetensors(a.out, {"video": official.clamp(-1, 1).numpy(), "video_unclamped": official.numpy()})
    print("video %s, |x| max %.3f" % (tuple(official.shape), float(official.abs().max())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
