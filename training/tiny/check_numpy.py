"""Independent float64 numpy forward of the tiny model, written from the spec (not from model.py), used to check
model.py and the parity fixture. Readable reference for the C port.

    /usr/bin/python3 training/tiny/check_numpy.py [--weights models/tiny/tiny.safetensors]
        [--fixture models/tiny/parity_fixture.safetensors]
Prints the relative L2 error of this forward against every caseN.v in the fixture (expect ~1e-7: fixture is f32).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The shipped model (definition, weights, vocabulary) lives in models/tiny/; this folder only trains it.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models", "tiny"))
from model import CONFIG, HERE as MODEL_DIR, load_safetensors  # noqa: E402  (file reader, config numbers, its folder)

DIM, HEADS, LAYERS, FREQ, TEXT_LEN, EPS = (CONFIG[k] for k in ("dim", "num_heads", "num_layers", "freq_dim",
                                                                 "text_len", "eps"))
HD = DIM // HEADS


def lin(W, x, name):
    return x @ W[name + ".weight"].T + W[name + ".bias"]


def ln(x, w=None, b=None):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    y = (x - mu) / np.sqrt(var + EPS)
    return y if w is None else y * w + b


def rms(x, w):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + EPS) * w


def gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def silu(x):
    return x / (1 + np.exp(-x))


def softmax(a):
    a = a - a.max(-1, keepdims=True)
    e = np.exp(a)
    return e / e.sum(-1, keepdims=True)


def rope_tables(f, h, w):
    def params(n_pairs):
        d = 2 * n_pairs
        return 1.0 / 10000.0 ** (np.arange(0, d, 2) / d)
    c = HD // 2  # complex pairs per head, split [c - 2(c//3), c//3, c//3] over (frame, height, width)
    wf, wh, ww = params(c - 2 * (c // 3)), params(c // 3), params(c // 3)
    ang = np.zeros((f, h, w, c))
    for i in range(f):
        for j in range(h):
            for k in range(w):
                ang[i, j, k] = np.concatenate([i * wf, j * wh, k * ww])
    return ang.reshape(f * h * w, c)


def rope(x, ang):  # x [S, heads, head_dim]
    a, b = x[..., 0::2], x[..., 1::2]
    c, s = np.cos(ang)[:, None], np.sin(ang)[:, None]
    out = np.empty_like(x)
    out[..., 0::2] = a * c - b * s
    out[..., 1::2] = a * s + b * c
    return out


def mha(q, k, v):  # [S,H,D], [L,H,D]
    out = np.empty_like(q)
    for hh in range(HEADS):
        att = softmax(q[:, hh] @ k[:, hh].T / np.sqrt(HD))
        out[:, hh] = att @ v[:, hh]
    return out.reshape(q.shape[0], DIM)


def forward(W, x, t, token_ids):
    """x [3,8,64,64], t scalar, token_ids list of ints -> v [3,8,64,64] (float64)."""
    C, F, H, Wd = x.shape
    f, h, w = F, H // 8, Wd // 8
    # patch embedding: token (fi,hi,wi) sees x[:, fi, 8hi:8hi+8, 8wi:8wi+8] flattened (c, ph, pw)
    patches = x.reshape(C, f, h, 8, w, 8).transpose(1, 2, 4, 0, 3, 5).reshape(f * h * w, C * 64)
    pw_ = W["patch_embedding.weight"].reshape(DIM, C * 64)
    tok = patches @ pw_.T + W["patch_embedding.bias"]
    # time
    half = FREQ // 2
    fr = np.power(10000.0, -np.arange(half) / half)
    sin_emb = np.concatenate([np.cos(t * fr), np.sin(t * fr)]).astype(np.float32).astype(np.float64)
    e = lin(W, silu(lin(W, sin_emb, "time_embedding.0")), "time_embedding.2")
    e0 = lin(W, silu(e), "time_projection.1").reshape(6, DIM)
    # context
    ctx = np.zeros((TEXT_LEN, 64))
    for i, tid in enumerate(token_ids):
        ctx[i] = W["token_embedding.weight"][tid]
    ctx = lin(W, gelu_tanh(lin(W, ctx, "text_embedding.0")), "text_embedding.2")
    ang = rope_tables(f, h, w)
    S = tok.shape[0]
    for i in range(LAYERS):
        p = "blocks.%d." % i
        m = W[p + "modulation"][0] + e0
        y = ln(tok) * (1 + m[1]) + m[0]
        q = rms(lin(W, y, p + "self_attn.q"), W[p + "self_attn.norm_q.weight"]).reshape(S, HEADS, HD)
        k = rms(lin(W, y, p + "self_attn.k"), W[p + "self_attn.norm_k.weight"]).reshape(S, HEADS, HD)
        v = lin(W, y, p + "self_attn.v").reshape(S, HEADS, HD)
        tok = tok + lin(W, mha(rope(q, ang), rope(k, ang), v), p + "self_attn.o") * m[2]
        y = ln(tok, W[p + "norm3.weight"], W[p + "norm3.bias"])
        q = rms(lin(W, y, p + "cross_attn.q"), W[p + "cross_attn.norm_q.weight"]).reshape(S, HEADS, HD)
        k = rms(lin(W, ctx, p + "cross_attn.k"), W[p + "cross_attn.norm_k.weight"]).reshape(TEXT_LEN, HEADS, HD)
        v = lin(W, ctx, p + "cross_attn.v").reshape(TEXT_LEN, HEADS, HD)
        tok = tok + lin(W, mha(q, k, v), p + "cross_attn.o")
        y = ln(tok) * (1 + m[4]) + m[3]
        tok = tok + lin(W, gelu_tanh(lin(W, y, p + "ffn.0")), p + "ffn.2") * m[5]
    hm = W["head.modulation"][0] + e
    out = lin(W, ln(tok) * (1 + hm[1]) + hm[0], "head.head")  # [S, 192] laid out (pt=1, ph, pw, c)
    out = out.reshape(f, h, w, 8, 8, C)  # f h w q r c
    x0_hat = out.transpose(5, 0, 1, 3, 2, 4).reshape(C, F, H, Wd)  # c f (h q) (w r)
    # The head predicts x0; the model returns the velocity (x_t - x0_hat) / max(sigma, 0.05), sigma = t / 1000.
    return (x - x0_hat) / max(t / 1000.0, 0.05)


def main():
    here = MODEL_DIR
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default=os.path.join(here, "tiny.safetensors"))
    ap.add_argument("--fixture", default=os.path.join(here, "parity_fixture.safetensors"))
    a = ap.parse_args()
    W = {k: v.astype(np.float64) for k, v in load_safetensors(a.weights)[0].items()}
    assert W["patch_embedding.weight"].shape[0] == DIM, "weights are dim %d, CONFIG says %d" % (
        W["patch_embedding.weight"].shape[0], DIM)
    fx, _ = load_safetensors(a.fixture)
    i = 0
    worst = 0.0
    while "case%d.x" % i in fx:
        x = fx["case%d.x" % i].astype(np.float64)
        t = float(fx["case%d.t" % i][0])
        ids = [int(v) for v in fx["case%d.tokens" % i] if v >= 0]
        v = forward(W, x, t, ids)
        ref = fx["case%d.v" % i].astype(np.float64)
        rel = np.linalg.norm(v - ref) / np.linalg.norm(ref)
        worst = max(worst, rel)
        print("case%d t=%.1f words=%d: numpy fp64 vs fixture rel L2 %.3e max abs %.3e" % (
            i, t, len(ids), rel, np.abs(v - ref).max()))
        i += 1
    print("worst rel err %.3e -> %s" % (worst, "OK" if worst <= 1e-6 else "MISMATCH"))
    return 0 if worst <= 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main())
