"""Independent transcription of MagCache's official Wan2.1 code for tests/test_magcache.c.

Source: Zehong-Ma/MagCache df81cb1, MagCache4Wan2.1/magcache_generate.py:
  nearest_interp(src, T)     lines 27-34
  magcache_calibration(...)  the block-stack residual statistics per call (cnt >= 2) vs the same branch's previous one
  magcache_forward(...)      the skip rule (call counter cnt, retention on cnt, per-branch accumulators)
  generate()                 the interleaved table [1.0]*2 + list, resampled per branch when len != 2*steps

Written from the official code, not from the C implementation. Runs on the shared replay driver
(tests/strategy_replay.py: the tiny model in float64, the runner's CFG Euler loop).

Usage:
  magcache_official.py interp N:T [N:T ...]      -> per pair a line: nearest_interp(arange(N), T) as integers
  magcache_official.py check CAL_CASE CAL_OUT RUN_CASE TABLE THRESH K RETENTION POWER RUN_OUT
      the official calibration of the unmodified run CAL_CASE (ratio, std, cos_dis [steps, 2]) to CAL_OUT, then
      magcache_forward on RUN_CASE with the table file TABLE (decisions, tested errors, gammas, latents) to RUN_OUT
"""
import sys

import numpy as np


def nearest_interp(src_array, target_length):
    src_length = len(src_array)
    if target_length == 1:
        return np.array([src_array[-1]])
    scale = (src_length - 1) / (target_length - 1)
    mapped_indices = np.round(np.arange(target_length) * scale).astype(int)
    return src_array[mapped_indices]


def read_table(path):
    """The interleaved official list mag_ratios[2t + b] from a cachebench table file (strategies/magcache.h)."""
    rows = []
    seen_format = False
    with open(path) as f:
        for line in f:
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            if not seen_format:
                assert s == "format cachebench-magcache-ratios 1", s
                seen_format = True
                continue
            if s[0].isalpha():
                continue
            v = s.split()
            assert int(v[0]) == len(rows)
            rows.append((float(v[1]), float(v[2])))
    return np.array([r for row in rows for r in row])


def calibrate(case, model):
    import torch.nn.functional as F

    """magcache_calibration on the unmodified run: per call with cnt >= 2, the residual statistics vs the previous
    residual of branch cnt % 2. Returns [steps, 2] arrays (step 0: ratio 1, the official padding; nan otherwise)."""
    steps = case.steps
    ratio = np.full((steps, 2), np.nan)
    std = np.full((steps, 2), np.nan)
    cos = np.full((steps, 2), np.nan)
    ratio[0, :] = 1.0
    state = {"cnt": 0, "residual_cache": [None, None]}

    def call(step, branch, x, t, text):
        cnt = state["cnt"]
        c = model.embed(x, t, text)
        ori_x = c.tokens
        tokens = ori_x
        for layer in range(model.num_layers):
            tokens = model.block(layer, c, tokens)
        residual_x = tokens - ori_x
        if cnt >= 2:
            prev = state["residual_cache"][cnt % 2]
            q = residual_x.norm(dim=-1) / prev.norm(dim=-1)
            ratio[step, branch] = q.mean().item()
            std[step, branch] = q.std().item()
            cos[step, branch] = (1 - F.cosine_similarity(residual_x, prev, dim=-1, eps=1e-8)).mean().item()
        state["residual_cache"][cnt % 2] = residual_x
        state["cnt"] = cnt + 1
        return model.head(c, tokens)

    R.sample(case, call)
    return ratio, std, cos


def replay(case, model, mag_ratios, thresh, K, retention_ratio, power):
    """magcache_forward over the whole run. Returns decisions [steps, 2] (1 computed, 0 skipped), the accumulated error
    each skip test compared with thresh [steps, 2] (nan in retention), gamma [steps, 2] and the latents."""
    steps = case.steps
    mag_ratios = np.asarray(mag_ratios, dtype=np.float64) ** power if power != 1.0 else np.asarray(mag_ratios)
    if len(mag_ratios) != steps * 2:
        con = nearest_interp(mag_ratios[0::2], steps)
        ucon = nearest_interp(mag_ratios[1::2], steps)
        mag_ratios = np.concatenate([con.reshape(-1, 1), ucon.reshape(-1, 1)], axis=1).reshape(-1)
    num_steps = steps * 2
    st = {"cnt": 0, "acc_ratio": [1.0, 1.0], "acc_err": [0.0, 0.0], "acc_steps": [0, 0],
          "residual_cache": [None, None]}
    decisions = np.ones((steps, 2))
    tested = np.full((steps, 2), np.nan)
    gammas = np.full((steps, 2), np.nan)

    def call(step, branch, x, t, text):
        cnt = st["cnt"]
        b = cnt % 2
        assert b == branch
        c = model.embed(x, t, text)
        ori_x = c.tokens
        skip_forward = False
        if cnt >= int(num_steps * retention_ratio):
            cur = mag_ratios[cnt]
            gammas[step, b] = cur
            st["acc_ratio"][b] = st["acc_ratio"][b] * cur
            st["acc_steps"][b] += 1
            st["acc_err"][b] += np.abs(1 - st["acc_ratio"][b])
            tested[step, b] = st["acc_err"][b]
            if st["acc_err"][b] < thresh and st["acc_steps"][b] <= K:
                skip_forward = True
                residual_x = st["residual_cache"][b]
            else:
                st["acc_err"][b] = 0
                st["acc_steps"][b] = 0
                st["acc_ratio"][b] = 1.0
        if skip_forward:
            tokens = ori_x + residual_x
            decisions[step, b] = 0
        else:
            tokens = ori_x
            for layer in range(model.num_layers):
                tokens = model.block(layer, c, tokens)
            residual_x = tokens - ori_x
        st["residual_cache"][b] = residual_x
        st["cnt"] = cnt + 1
        return model.head(c, tokens)

    out = R.sample(case, call)
    return decisions, tested, gammas, out["latents"]


def main():
    cmd = sys.argv[1]
    if cmd == "interp":
        for pair in sys.argv[2:]:
            n, t = (int(v) for v in pair.split(":"))
            print(" ".join(str(int(v)) for v in nearest_interp(np.arange(n), t)))
        return
    global R  # the replay driver imports torch and the tiny model: only for the commands that run the model
    import strategy_replay as R
    if cmd == "check":  # both in one process (one torch import, one model load per case)
        cal_case, cal_out, rep_case, table, thresh, K, ret, power, rep_out = sys.argv[2:11]
        case = R.Case(cal_case)
        ratio, std, cos = calibrate(case, R.Tiny(case.weights))
        R.write(cal_out, ratio=ratio, std=std, cos_dis=cos)
        case = R.Case(rep_case)
        decisions, tested, gammas, latents = replay(case, R.Tiny(case.weights), read_table(table), float(thresh),
                                                    int(K), float(ret), float(power))
        R.write(rep_out, decisions=decisions, tested=tested, gamma=gammas, latents=latents)
    else:
        raise SystemExit("unknown command " + cmd)

if __name__ == "__main__":
    main()
