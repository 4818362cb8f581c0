"""Tiny Wan2.1-style text-to-video DiT (config "tiny"), safetensors I/O, tokenizer and sampler.

Follows wan/modules/model.py (WanModel) so that the C loader/forward in models/ can reproduce it exactly
(D = CONFIG["dim"] = 192, 6 heads of 32, ffn 768):
  x [B,3,8,64,64] --Conv3d(patch 1x8x8)--> 512 tokens (frame-major f,h,w) of dim D
  t = sigma*1000 --sinusoidal(256, float64)--> time_embedding (Linear,SiLU,Linear) -> e [B,D]
  e0 = time_projection(e) (SiLU, Linear(D, 6D)) viewed [B,6,D]
  context: token_embedding(ids) zero-padded to 16 rows (padding rows are zero BEFORE text_embedding)
           -> text_embedding (Linear, GELU(tanh), Linear) -> [B,16,D]; empty prompt = 16 zero rows
  4 blocks (self-attn w/ RMSNorm qk + 3D RoPE, cross-attn w/ RMSNorm qk, FFN GELU(tanh)) with adaLN modulation
  head: LN * (1+scale) + shift -> Linear(D, 192) -> unpatchify ('fhwpqrc->cfphqwr').
The model predicts the flow-matching velocity v = noise - x0 for x_t = (1-sigma) x0 + sigma noise.

Works with torch 1.13 and 2.x; only numpy/torch/stdlib are needed.
"""
import json
import math
import os
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))

# Must match the "tiny" row of models/dit/config.c. dim must be >= the patch vector 3*8*8 = 192: the head maps dim -> 192
# values per token, so with dim 128 its output has rank 128 < 192 and the part of the initial noise outside that
# range is never removed by sampling (the first, dim-128 run showed exactly that: residual noise of std ~0.58).
#
# predict="x0": the network's head predicts the clean video x0 and the model returns the velocity
# v = (x_t - x0_hat) / max(sigma, sigma_min), sigma = t / 1000 (models/dit/dit.h "prediction"). With 8x8x3 = 192-value
# patches and a 192-wide residual stream, a head that must output v = noise - x0 directly has to carry the full-rank
# noise of every patch through the network; the dim-192 v-prediction run (3375 steps) produced only patch-sized noise
# texture. Predicting x0 (which lies on a low-dimensional manifold) is the remedy of Li & He 2025, "Back to Basics:
# Let Denoising Generative Models Denoise" (JiT), whose sigma clip of 0.05 we use; the loss stays the velocity MSE.
CONFIG = dict(in_dim=3, out_dim=3, patch=(1, 8, 8), frames=8, height=64, width=64, dim=192, ffn_dim=768,
              num_heads=6, num_layers=4, freq_dim=256, text_dim=64, text_len=16, eps=1e-6, rope_theta=10000.0,
              predict="x0", sigma_min=0.05)


# ----------------------------------------------------------------------------------------------- vocabulary

def load_vocab(path=os.path.join(HERE, "vocab.txt")):
    with open(path) as f:
        words = [w.strip() for w in f if w.strip()]
    return words


VOCAB = load_vocab()
WORD2ID = {w: i for i, w in enumerate(VOCAB)}


def tokenize(prompt):
    """Lower-cased whitespace split -> list of word ids. The empty prompt gives []. Unknown words raise."""
    ids = []
    for w in prompt.lower().split():
        if w not in WORD2ID:
            raise ValueError("word %r not in vocabulary %s" % (w, VOCAB))
        ids.append(WORD2ID[w])
    if len(ids) > CONFIG["text_len"]:
        raise ValueError("prompt has %d words, text_len is %d" % (len(ids), CONFIG["text_len"]))
    return ids


def prompt_of_tokens(row):
    """A padded token row (pad_tokens) -> its prompt, lower-case words joined by single spaces ('' when empty)."""
    return " ".join(VOCAB[i] for i in row.tolist() if i >= 0)


def pad_tokens(ids_list, text_len=CONFIG["text_len"]):
    """List of id lists -> LongTensor [B, text_len] padded with -1 (= zero row)."""
    out = torch.full((len(ids_list), text_len), -1, dtype=torch.long)
    for i, ids in enumerate(ids_list):
        if ids:
            out[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


# ----------------------------------------------------------------------------------------------- Wan pieces

def sinusoidal_embedding_1d(dim, position):
    assert dim % 2 == 0
    half = dim // 2
    position = position.type(torch.float64)
    sinusoid = torch.outer(position, torch.pow(10000, -torch.arange(half).to(position).div(half)))
    return torch.cat([torch.cos(sinusoid), torch.sin(sinusoid)], dim=1)


def rope_params(max_seq_len, dim, theta=10000.0):
    """Angles (not complex, for portability): [max_seq_len, dim/2] float64."""
    assert dim % 2 == 0
    return torch.outer(torch.arange(max_seq_len, dtype=torch.float64),
                       1.0 / torch.pow(theta, torch.arange(0, dim, 2, dtype=torch.float64).div(dim)))


def rope_angles(f, h, w, head_dim, theta):
    """Per-token RoPE angles [f*h*w, head_dim/2] (float64), exactly Wan's freqs split [c-2(c//3), c//3, c//3]."""
    d = head_dim
    c = d // 2
    pf = rope_params(1024, d - 4 * (d // 6), theta)
    ph = rope_params(1024, 2 * (d // 6), theta)
    pw = rope_params(1024, 2 * (d // 6), theta)
    assert pf.shape[1] == c - 2 * (c // 3) and ph.shape[1] == c // 3
    ang = torch.cat([
        pf[:f].view(f, 1, 1, -1).expand(f, h, w, -1),
        ph[:h].view(1, h, 1, -1).expand(f, h, w, -1),
        pw[:w].view(1, 1, w, -1).expand(f, h, w, -1)], dim=-1)
    return ang.reshape(f * h * w, c)


def rope_apply(x, cos, sin):
    """x [B,S,N,D]; adjacent pairs (2p,2p+1) are complex numbers rotated by angle[s,p]. cos/sin [S,D/2]."""
    B, S, N, D = x.shape
    xr = x.reshape(B, S, N, D // 2, 2)
    a, b = xr[..., 0], xr[..., 1]
    c = cos[None, :, None, :]
    s = sin[None, :, None, :]
    return torch.stack([a * c - b * s, a * s + b * c], dim=-1).reshape(B, S, N, D)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps) * self.weight


# torch.nn.functional.scaled_dot_product_attention (torch >= 2.0) on CUDA tensors; TINY_ATTENTION=matmul in the
# environment forces the explicit softmax(q k^T) v below everywhere (the CPU always uses it: the parity fixture and the
# C forward follow it operation by operation).
FUSED_ATTENTION = hasattr(F, "scaled_dot_product_attention") and os.environ.get("TINY_ATTENTION", "") != "matmul"


def attention(q, k, v):
    """q [B,S,N,D], k/v [B,L,N,D] -> [B,S,N*D]."""
    B, S, N, D = q.shape
    q = q.transpose(1, 2)
    k = k.transpose(1, 2)
    v = v.transpose(1, 2)
    if q.is_cuda and FUSED_ATTENTION:  # torch 2.x on a GPU: the fused kernel, the same maths
        # Under autocast q and k leave RoPE / RMSNorm in fp32 and v leaves its Linear in bf16; the kernel wants one.
        out = F.scaled_dot_product_attention(q.to(v.dtype), k.to(v.dtype), v)
        return out.transpose(1, 2).reshape(B, S, N * D)
    att = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(D))
    att = att.softmax(dim=-1)
    out = torch.matmul(att, v)
    return out.transpose(1, 2).reshape(B, S, N * D)


class SelfAttention(nn.Module):
    def __init__(self, dim, num_heads, eps):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = RMSNorm(dim, eps)
        self.norm_k = RMSNorm(dim, eps)

    def forward(self, x, cos, sin):
        B, S, _ = x.shape
        n, d = self.num_heads, self.head_dim
        q = self.norm_q(self.q(x)).view(B, S, n, d)
        k = self.norm_k(self.k(x)).view(B, S, n, d)
        v = self.v(x).view(B, S, n, d)
        return self.o(attention(rope_apply(q, cos, sin), rope_apply(k, cos, sin), v))


class CrossAttention(SelfAttention):
    def forward(self, x, context):
        B, S, _ = x.shape
        L = context.shape[1]
        n, d = self.num_heads, self.head_dim
        q = self.norm_q(self.q(x)).view(B, S, n, d)
        k = self.norm_k(self.k(context)).view(B, L, n, d)
        v = self.v(context).view(B, L, n, d)
        return self.o(attention(q, k, v))


class Block(nn.Module):
    def __init__(self, dim, ffn_dim, num_heads, eps):
        super().__init__()
        self.eps = eps
        self.dim = dim
        self.self_attn = SelfAttention(dim, num_heads, eps)
        self.norm3 = nn.LayerNorm(dim, eps=eps, elementwise_affine=True)
        self.cross_attn = CrossAttention(dim, num_heads, eps)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(ffn_dim, dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim ** 0.5)

    def ln(self, x):
        return F.layer_norm(x, (self.dim,), eps=self.eps)

    def forward(self, x, e0, context, cos, sin):
        m = self.modulation + e0  # [B,6,dim]
        shift_msa, scale_msa, gate_msa = m[:, 0:1], m[:, 1:2], m[:, 2:3]
        shift_mlp, scale_mlp, gate_mlp = m[:, 3:4], m[:, 4:5], m[:, 5:6]
        y = self.self_attn(self.ln(x) * (1 + scale_msa) + shift_msa, cos, sin)
        x = x + y * gate_msa
        x = x + self.cross_attn(self.norm3(x), context)
        y = self.ffn(self.ln(x) * (1 + scale_mlp) + shift_mlp)
        x = x + y * gate_mlp
        return x


class Head(nn.Module):
    def __init__(self, dim, out_dim, patch, eps):
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.head = nn.Linear(dim, math.prod(patch) * out_dim)
        self.modulation = nn.Parameter(torch.randn(1, 2, dim) / dim ** 0.5)

    def forward(self, x, e):
        hm = self.modulation + e[:, None]  # [B,2,dim]
        shift, scale = hm[:, 0:1], hm[:, 1:2]
        return self.head(F.layer_norm(x, (self.dim,), eps=self.eps) * (1 + scale) + shift)


class TinyWan(nn.Module):
    def __init__(self, cfg=CONFIG, vocab_size=len(VOCAB)):
        super().__init__()
        self.cfg = dict(cfg)
        dim, td = cfg["dim"], cfg["text_dim"]
        self.patch = tuple(cfg["patch"])
        self.token_embedding = nn.Embedding(vocab_size, td)
        self.patch_embedding = nn.Conv3d(cfg["in_dim"], dim, kernel_size=self.patch, stride=self.patch)
        self.text_embedding = nn.Sequential(nn.Linear(td, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim))
        self.time_embedding = nn.Sequential(nn.Linear(cfg["freq_dim"], dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, dim * 6))
        self.blocks = nn.ModuleList([Block(dim, cfg["ffn_dim"], cfg["num_heads"], cfg["eps"])
                                     for _ in range(cfg["num_layers"])])
        self.head = Head(dim, cfg["out_dim"], self.patch, cfg["eps"])
        f = cfg["frames"] // self.patch[0]
        h = cfg["height"] // self.patch[1]
        w = cfg["width"] // self.patch[2]
        ang = rope_angles(f, h, w, dim // cfg["num_heads"], cfg["rope_theta"])
        self.register_buffer("rope_cos", torch.cos(ang).float(), persistent=False)
        self.register_buffer("rope_sin", torch.sin(ang).float(), persistent=False)
        self.init_weights()

    def init_weights(self):
        # As WanModel.init_weights: xavier linears, zero biases, N(0,.02) text/time embeddings, zero head.
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.xavier_uniform_(self.patch_embedding.weight.flatten(1))
        nn.init.zeros_(self.patch_embedding.bias)
        for m in self.text_embedding.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=.02)
        for m in self.time_embedding.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=.02)
        nn.init.zeros_(self.head.head.weight)
        nn.init.normal_(self.token_embedding.weight, std=1.0)

    def embed_context(self, tokens):
        """tokens [B, text_len] long, -1 = padding (zero row before text_embedding)."""
        valid = (tokens >= 0)
        emb = self.token_embedding(tokens.clamp(min=0)) * valid[..., None].to(self.token_embedding.weight.dtype)
        return self.text_embedding(emb)

    def forward(self, x, t, tokens):
        """x [B,3,F,H,W], t [B] (= sigma*1000), tokens [B,text_len] long (-1 padded). Returns v [B,3,F,H,W]."""
        B = x.shape[0]
        dt = self.patch_embedding.weight.dtype
        x_in = x.to(dt)
        x = self.patch_embedding(x_in)
        _, C, f, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)  # [B, f*h*w, dim]
        e = self.time_embedding(sinusoidal_embedding_1d(self.cfg["freq_dim"], t).to(dt))
        e0 = self.time_projection(e).unflatten(1, (6, C))
        context = self.embed_context(tokens)
        cos, sin = self.rope_cos.to(dt), self.rope_sin.to(dt)
        if dt == torch.float64:  # exact float64 RoPE for the parity fixture
            ang = rope_angles(f, h, w, C // self.cfg["num_heads"], self.cfg["rope_theta"])
            cos, sin = torch.cos(ang), torch.sin(ang)
        for blk in self.blocks:
            x = blk(x, e0, context, cos, sin)
        x = self.head(x, e)
        out = self.unpatchify(x, f, h, w)
        if self.cfg.get("predict", "v") == "x0":  # the head's output is x0_hat: return the velocity
            sigma = (t.to(x_in.dtype) / 1000.0).clamp(min=self.cfg["sigma_min"]).view(-1, 1, 1, 1, 1)
            out = (x_in - out.to(x_in.dtype)) / sigma
        return out

    def unpatchify(self, x, f, h, w):
        B = x.shape[0]
        pt, ph, pw = self.patch
        c = self.cfg["out_dim"]
        x = x.view(B, f, h, w, pt, ph, pw, c)
        x = torch.einsum("bfhwpqrc->bcfphqwr", x)
        return x.reshape(B, c, f * pt, h * ph, w * pw)


# ----------------------------------------------------------------------------------------------- safetensors

_DT = {"F32": (np.float32, 4), "F64": (np.float64, 8), "I64": (np.int64, 8)}


def save_safetensors(path, tensors, metadata=None):
    """tensors: dict name -> numpy array / torch tensor (stored as float32 unless already float64/int64)."""
    header = {}
    blobs = []
    off = 0
    for name, a in tensors.items():
        if isinstance(a, torch.Tensor):
            a = a.detach().cpu().numpy()
        a = np.asarray(a)
        if a.dtype == np.float64 or a.dtype == np.int64:
            dt = "F64" if a.dtype == np.float64 else "I64"
        else:
            a = a.astype(np.float32)
            dt = "F32"
        b = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((8 - len(hj) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def load_safetensors(path):
    """-> (dict name -> numpy array, metadata dict)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, info in header.items():
        npdt, _ = _DT[info["dtype"]]
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(data[base + b:base + e], dtype=np.dtype(npdt).newbyteorder("<")).reshape(
            info["shape"]).copy()
    return out, meta


def export_weights(model, path, metadata=None):
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    save_safetensors(path, sd, metadata)


def import_weights(model, path):
    tensors, meta = load_safetensors(path)
    sd = model.state_dict()
    missing = set(sd) - set(tensors)
    extra = set(tensors) - set(sd)
    if missing or extra:
        raise ValueError("key mismatch: missing %s extra %s" % (sorted(missing), sorted(extra)))
    model.load_state_dict({k: torch.from_numpy(v).to(sd[k].dtype) for k, v in tensors.items()})
    return meta


# ----------------------------------------------------------------------------------------------- sampler

def sigma_schedule(steps, shift):
    """linspace(1,0,steps+1)[:-1], shifted (shift*s/(1+(shift-1)*s)), then 0 appended -> steps+1 values."""
    s = np.linspace(1.0, 0.0, steps + 1)[:-1]
    s = shift * s / (1.0 + (shift - 1.0) * s)
    return np.append(s, 0.0)


@torch.no_grad()
def sample(model, prompt, steps=50, shift=3.0, guidance=3.0, seed=0, noise=None, device="cpu"):
    """Euler flow-matching sampler with CFG. Returns video [3,F,H,W] in [-1,1] (clamped)."""
    return sample_batch(model, [prompt], [seed], steps, shift, guidance,
                        None if noise is None else [noise], device)[0]


@torch.no_grad()
def sample_batch(model, prompts, seeds, steps=50, shift=3.0, guidance=3.0, noises=None, device="cpu"):
    """sample() for several (prompt, seed) pairs in one batch (one forward per step for all of them, which is what
    makes evaluation affordable on a CPU). Video i uses the same noise as sample(prompts[i], seed=seeds[i]).
    Returns [B,3,F,H,W] in [-1,1] (clamped)."""
    cfg = model.cfg
    shape = (cfg["in_dim"], cfg["frames"], cfg["height"], cfg["width"])
    if noises is None:
        noises = [torch.randn((1,) + shape, generator=torch.Generator().manual_seed(s)) for s in seeds]
    n = len(prompts)
    x = torch.stack([z.reshape(shape) for z in noises]).to(device=device, dtype=torch.float32)
    tok = pad_tokens([tokenize(p) for p in prompts] + [[]] * n).to(device)
    sig = sigma_schedule(steps, shift)
    for i in range(steps):
        t = torch.full((2 * n,), sig[i] * 1000.0, device=device)
        if guidance == 1.0:
            v = model(x, t[:n], tok[:n])
        else:
            vv = model(torch.cat([x, x]), t, tok)
            v = vv[n:] + guidance * (vv[:n] - vv[n:])
        x = x + float(sig[i + 1] - sig[i]) * v
    return x.clamp(-1, 1).cpu()
