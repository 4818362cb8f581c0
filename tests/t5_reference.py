"""Oracle for tests/test_t5.c: our own PyTorch transcription of Wan2.1's umT5 encoder (wan/modules/t5.py,
T5Encoder with shared_pos=False) as T5EncoderModel runs it: ids padded with a mask, the output trimmed to the
prompt's length. fp32 throughout (the official model runs in bf16; the C encoder keeps fp32 activations).

usage: t5_reference.py WEIGHTS.safetensors IDS.txt PAD_TO OUT.f32 BUCKETS.i32
  WEIGHTS: official names (token_embedding.weight, blocks.N...), F32/F16/BF16; IDS: whitespace-separated token ids;
  PAD_TO: the padded length (>= len(ids)), padding positions masked; OUT: float32 [n][dim] raw;
  BUCKETS: int32 buckets of rel = -300..300 (32 buckets, bidirectional, max distance 128)."""
import json
import math
import struct
import sys

import numpy as np
import torch


def read_safetensors(path):
    with open(path, 'rb') as f:
        raw = f.read()
    n = struct.unpack('<Q', raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, e in header.items():
        if name == '__metadata__':
            continue
        b, end = e['data_offsets']
        buf = data[b:end]
        if e['dtype'] == 'F32':
            a = np.frombuffer(buf, dtype=np.float32)
        elif e['dtype'] == 'F16':
            a = np.frombuffer(buf, dtype=np.float16).astype(np.float32)
        elif e['dtype'] == 'BF16':
            a = (np.frombuffer(buf, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            raise SystemExit(f'{path}: {name}: dtype {e["dtype"]} not handled')
        out[name] = torch.from_numpy(a.reshape(e['shape']).copy())
    return out


def bucket(rel_pos, num_buckets=32, max_dist=128):
    # bidirectional: the upper half of the buckets for keys after the query
    half = num_buckets // 2
    buckets = (rel_pos > 0).long() * half
    rel_pos = torch.abs(rel_pos)
    max_exact = half // 2
    large = max_exact + (torch.log(rel_pos.float() / max_exact) / math.log(max_dist / max_exact) *
                         (half - max_exact)).long()
    large = torch.min(large, torch.full_like(large, half - 1))
    return buckets + torch.where(rel_pos < max_exact, rel_pos, large)


def rms_norm(x, w, eps=1e-6):
    return w * (x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps))


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def encode(w, ids, mask):
    L = ids.shape[0]
    x = w['token_embedding.weight'][ids]  # [L, dim], no scaling
    n_layers = len({k.split('.')[1] for k in w if k.startswith('blocks.')})
    rel = torch.arange(L).unsqueeze(0) - torch.arange(L).unsqueeze(1)  # key - query
    for i in range(n_layers):
        p = f'blocks.{i}.'
        table = w[p + 'pos_embedding.embedding.weight']  # [buckets, heads]
        heads = table.shape[1]
        bias = table[bucket(rel, table.shape[0])].permute(2, 0, 1)  # [heads, Lq, Lk]
        bias = bias.masked_fill(mask.view(1, 1, L) == 0, torch.finfo(torch.float32).min)
        h = rms_norm(x, w[p + 'norm1.weight'])
        q = (h @ w[p + 'attn.q.weight'].T).view(L, heads, -1)
        k = (h @ w[p + 'attn.k.weight'].T).view(L, heads, -1)
        v = (h @ w[p + 'attn.v.weight'].T).view(L, heads, -1)
        a = torch.softmax(torch.einsum('ihc,jhc->hij', q, k) + bias, dim=-1)  # no 1/sqrt(d)
        o = torch.einsum('hij,jhc->ihc', a, v).reshape(L, -1)
        x = x + o @ w[p + 'attn.o.weight'].T
        h = rms_norm(x, w[p + 'norm2.weight'])
        f = (h @ w[p + 'ffn.fc1.weight'].T) * gelu_tanh(h @ w[p + 'ffn.gate.0.weight'].T)
        x = x + f @ w[p + 'ffn.fc2.weight'].T
    return rms_norm(x, w['norm.weight'])


def main():
    weights, ids_path, pad_to, out_path, buckets_path = sys.argv[1:6]
    w = read_safetensors(weights)
    ids = [int(t) for t in open(ids_path).read().split()]
    n, pad_to = len(ids), int(pad_to)
    padded = torch.tensor(ids + [0] * (pad_to - n), dtype=torch.long)
    mask = torch.tensor([1] * n + [0] * (pad_to - n), dtype=torch.long)
    with torch.no_grad():
        ctx = encode(w, padded, mask)
    seq_len = int(mask.gt(0).sum())
    ctx[:seq_len].contiguous().numpy().astype(np.float32).tofile(out_path)
    bucket(torch.arange(-300, 301)).numpy().astype(np.int32).tofile(buckets_path)


main()
