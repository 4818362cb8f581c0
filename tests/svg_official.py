#!/usr/bin/env python3
"""An independent transcription, in numpy, of the official Sparse VideoGen (SVG1) Wan2.1 logic, for tests/test_svg.c.

Sources (svg-project/Sparse-VideoGen; svg/models/wan/* is the same at 5efea72, the last SVG1-only commit, and HEAD):
  svg/models/wan/utils.py      sparsity_to_width, generate_temporal_head_mask_mod (round_to_multiple), get_attention_mask
  svg/models/wan/attention.py  sample_mse, attention_core_logic (warm-up test, argmin, placement, one block mask)
  svg/models/wan/placement.py  a temporal head's q, k, v viewed (F, P) and transposed to (P, F): token-major
  svg/models/wan/inference.py  sparsity_to_width(sparsity, context_length=0, ...), masks ["spatial", "temporal"]
  wan_inference.py @5efea72, wan_t2v_inference.py @HEAD: how --first_times_fp / --first_layers_fp become the warm-up
Differences kept on purpose: the MSEs here are float64 (official: bf16); the sampled rows are given (official: an
unseeded torch.randint per call), since the test checks what is done with them.

Reads a case file (argv[1]), one case a line, and prints one or more result lines per case:
  grid F P kept full|blocks  ->  band W
                                 blocks NQ kept_0 nblk_0 ... (per 128-row query block of the placed order: kept pairs
                                 and computed 128x128 blocks, FlexAttention's block-mask rule)
                                 [full only] mask spatial HEX / mask temporal HEX (L*L bits, frame-major i*L + j)
  profile F P HEADS HD QKV_FILE full|rows R0 R1 ...
                             ->  [full] profmask spatial HEX / profmask temporal HEX (L*L bits)
                                 [rows] profmask spatial HEX / profmask temporal HEX (rows*L bits, the sampled rows)
                                 mse H MSE_SPATIAL MSE_TEMPORAL CHOICE (0 spatial, 1 temporal) for every head
  warmup VERSION STEPS LAYERS F_STEPS F_LAYERS T_0 ... T_{STEPS-1}
                             ->  warmup DD..|SS..| (per step, per layer: D dense, S sparse)
"""
import math
import sys

import numpy as np

BLOCK = 128  # create_block_mask's default BLOCK_SIZE; also round_to_multiple's 128


# ---- utils.py


def sparsity_to_width(sparsity, context_length, num_frame, frame_size):
    seq_len = context_length + num_frame * frame_size
    total_elements = seq_len**2
    sparsity = (sparsity * total_elements - 2 * seq_len * context_length) / total_elements
    width = seq_len * (1 - math.sqrt(1 - sparsity))
    width_frame = width / frame_size
    return width_frame


def two_frame_of(kept, F, P):
    mul = sparsity_to_width(kept, 0, F, P)  # inference.py: multiplier = diag_width = sparsity_to_width(...)
    return math.ceil(mul * P / 128) * 128  # generate_temporal_head_mask_mod: round_to_multiple(mul * token_per_frame)


def temporal_mask_mod(q_idx, kv_idx, two_frame, token_per_frame):
    temporal_head_mask = np.abs(q_idx - kv_idx) <= two_frame
    first_frame_mask = kv_idx < token_per_frame
    return first_frame_mask | temporal_head_mask


def get_attention_mask(mask_name, F, P):
    """The profiling mask, built as get_attention_mask builds it (context_length 0)."""
    L = F * P
    m = np.zeros((L, L), dtype=bool)
    m[:, :P] = True  # First Frame Sink
    block_size, block_thres = 128, P * 2
    num_block = math.ceil(L / block_size)
    for i in range(num_block):
        for j in range(num_block):
            if abs(i - j) < block_thres // block_size:
                m[i * block_size:(i + 1) * block_size, j * block_size:(j + 1) * block_size] = True
    if mask_name != "spatial":
        m = m.reshape(P, F, P, F).transpose(1, 0, 3, 2).reshape(L, L)
    return m


def get_attention_mask_rows(mask_name, F, P, rows):
    """Rows of get_attention_mask without the L x L array: the spatial rows from the same block loop, the temporal
    rows through the same reshape/permute applied to one row (row b*P + a of the result is row a*F + b of the spatial
    mask, reshaped (P, F), transposed, flattened)."""
    L = F * P
    block_size, nb = 128, (P * 2) // 128
    num_block = math.ceil(L / block_size)

    def spatial_row(r):
        row = np.zeros(L, dtype=bool)
        row[:P] = True
        i = r // block_size
        for j in range(num_block):
            if abs(i - j) < nb:
                row[j * block_size:(j + 1) * block_size] = True
        return row

    out = np.zeros((len(rows), L), dtype=bool)
    for n, r in enumerate(rows):
        if mask_name == "spatial":
            out[n] = spatial_row(r)
        else:
            b, a = r // P, r % P
            out[n] = spatial_row(a * F + b).reshape(P, F).T.reshape(L)
    return out


# ---- placement.py: a temporal head's tensors in token-major order


def placement(F, P):
    """placed index t -> frame-major token: view (F, P), transpose to (P, F)."""
    return np.arange(F * P).reshape(F, P).T.reshape(-1)


# ---- attention.py


def softmax(x):
    m = x.max(axis=-1, keepdims=True)
    e = np.exp(x - m)
    return e / e.sum(axis=-1, keepdims=True)


def sample_mse(q, k, v, masks, rows):
    """One head: q, k, v [L, dim] float64; masks: the two profiling masks' sampled rows [rows, L]."""
    dim = q.shape[-1]
    sampled_qk_scores = q[rows] @ k.T / (dim**0.5)
    golden = softmax(sampled_qk_scores) @ v
    mses = []
    for m in masks:
        scores = np.where(m, sampled_qk_scores, -np.inf)
        out = softmax(scores) @ v
        mses.append(np.mean((out - golden) ** 2))
    return mses


def full_attention_flag(version, layer_idx, timestep, steps, layers, f_steps, f_layers, timesteps):
    if version == "5efea72":  # wan_inference.py passes the fractions; attention.py compares
        first_layers_fp, first_times_fp = f_layers, f_steps
        flag = layer_idx < layers * first_layers_fp
        if timestep > 1000 * (1 - first_times_fp):
            flag = True
        return flag
    # HEAD: wan_t2v_inference.py turns the fractions into a layer count and a timestep threshold
    num_fp_timesteps = math.floor(f_steps * steps)
    num_fp_layers = math.floor(f_layers * layers)
    first_times_fp = timesteps[num_fp_timesteps - 1] - 1 if num_fp_timesteps > 0 else 1001
    first_layers_fp = num_fp_layers
    flag = layer_idx < first_layers_fp
    if timestep > first_times_fp:
        flag = True
    return flag


def hexbits(m):
    return np.packbits(m.reshape(-1).astype(np.uint8)).tobytes().hex()


def main():
    out = []
    for line in open(sys.argv[1]):
        a = line.split()
        if not a:
            continue
        if a[0] == "grid":
            F, P, kept, mode = int(a[1]), int(a[2]), float(a[3]), a[4]
            L = F * P
            w = two_frame_of(kept, F, P)
            out.append(f"band {w}")
            # The mask element by element, 128 query rows at a time (int16 indices where L allows: less memory traffic).
            itype = np.int16 if L <= 16383 else np.int32
            kv = np.arange(L, dtype=itype)
            nq, nfull = math.ceil(L / BLOCK), L // BLOCK
            res = []
            for qb in range(nq):
                q = np.arange(qb * BLOCK, min(L, (qb + 1) * BLOCK), dtype=itype)[:, None]
                m = temporal_mask_mod(q, kv[None, :], w, P)
                any_q = m.any(axis=0)  # FlexAttention: a block is computed when any of its pairs is kept
                blocks = int(any_q[:nfull * BLOCK].reshape(nfull, BLOCK).any(axis=1).sum()) + int(any_q[nfull * BLOCK:].any())
                res += [int(m.sum()), blocks]
            out.append("blocks %d %s" % (nq, " ".join(map(str, res))))
            if mode == "full":
                kv = kv.astype(np.int64)
                placed = temporal_mask_mod(kv[:, None], kv[None, :], w, P)  # one mask, in placed order
                for name in ("spatial", "temporal"):
                    perm = placement(F, P) if name == "temporal" else np.arange(L)
                    orig = np.zeros((L, L), dtype=bool)
                    orig[np.ix_(perm, perm)] = placed  # placed pair (s, t) is the tokens' pair (perm[s], perm[t])
                    out.append(f"mask {name} {hexbits(orig)}")
        elif a[0] == "profile":
            F, P, heads, hd, path, mode = int(a[1]), int(a[2]), int(a[3]), int(a[4]), a[5], a[6]
            L = F * P
            rows = np.array([int(x) for x in a[7:]], dtype=np.int64)
            qkv = np.fromfile(path, dtype=np.float32).reshape(3, L, heads, hd).astype(np.float64)
            if mode == "full":
                full = [get_attention_mask(n, F, P) for n in ("spatial", "temporal")]
                for n, m in zip(("spatial", "temporal"), full):
                    out.append(f"profmask {n} {hexbits(m)}")
                masks = [m[rows] for m in full]
                by_rows = [get_attention_mask_rows(n, F, P, rows) for n in ("spatial", "temporal")]
                assert all((x == y).all() for x, y in zip(masks, by_rows)), "row-wise construction differs"
            else:
                masks = [get_attention_mask_rows(n, F, P, rows) for n in ("spatial", "temporal")]
                for n, m in zip(("spatial", "temporal"), masks):
                    out.append(f"profmask {n} {hexbits(m)}")
            for h in range(heads):
                mses = sample_mse(qkv[0, :, h], qkv[1, :, h], qkv[2, :, h], masks, rows)
                choice = int(np.argmin(mses))  # best_mask_idx: ties to the first (spatial)
                out.append("mse %d %.17g %.17g %d" % (h, mses[0], mses[1], choice))
        elif a[0] == "warmup":
            version, steps, layers, f_steps, f_layers = a[1], int(a[2]), int(a[3]), float(a[4]), float(a[5])
            timesteps = [float(x) for x in a[6:6 + steps]]
            s = ""
            for t in range(steps):
                for layer in range(layers):
                    dense = full_attention_flag(version, layer, timesteps[t], steps, layers, f_steps, f_layers,
                                                timesteps)
                    s += "D" if dense else "S"
                s += "|"
            out.append("warmup " + s)
        else:
            raise SystemExit(f"unknown case {a[0]}")
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
