"""Independent transcription of DiCache's official Wan2.1 forward (Bujiazi/DiCache dd7f0de, WAN2.1/run_wan_dicache.py,
`dicache_forward` L69-224, wiring L544-557), replayed on the tiny model through tests/strategy_replay.py.

    dicache_official.py CASE OUT THRESH RET_RATIO PROBE_DEPTH

It keeps the official per-model state (a call counter over 2*steps calls, branch = cnt % 2, lists of two) and its
control flow as written, including what the C strategy departs from (see strategies/dicache.c): the retention test
`cnt >= int(num_steps * ret_ratio)`, the probe recorded at index probe_depth-1 of whichever block list runs, the
windows that append while they hold <= 2 entries and then shift [-2] <- [-1], [-1] <- new. The official code's
unused quantities (delta_x, previous_output) are left out. Writes, per call in order (step, cond then uncond):
computed (1/0), gamma (NaN unless a trajectory-aligned skip), delta_y and acc_test (the accumulator compared with the
threshold; NaN during retention), and the latents after every step.
"""
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import strategy_replay as R  # noqa: E402


class DiCacheOfficial:
    def __init__(self, model, steps, rel_l1_thresh, ret_ratio, probe_depth):
        self.model = model
        self.cnt = 0
        self.num_steps = steps * 2
        self.rel_l1_thresh = rel_l1_thresh
        self.ret_ratio = ret_ratio
        self.probe_depth = probe_depth
        self.accumulated_rel_l1_distance = [0.0, 0.0]
        self.residual_cache = [None, None]
        self.probe_residual_cache = [None, None]
        self.residual_window = [[], []]
        self.probe_residual_window = [[], []]
        self.previous_internal_states = [None, None]
        self.resume_flag = [False, False]
        self.log = {"computed": [], "gamma": [], "delta_y": [], "acc_test": []}

    def __call__(self, step, branch, x_lat, t, text):
        m = self.model
        b = self.cnt % 2
        assert b == branch, "the official counter pairs calls cond, uncond"
        c = m.embed(x_lat, t, text)
        x = c.tokens
        skip = False
        ori_x = x
        gamma, delta_y, acc_test = math.nan, math.nan, math.nan
        if self.cnt >= int(self.num_steps * self.ret_ratio):
            test_x = x.clone()
            for layer in range(self.probe_depth):
                test_x = m.block(layer, c, test_x)
            prev = self.previous_internal_states[b]
            delta_y = float((test_x - prev).abs().mean() / prev.abs().mean())
            self.accumulated_rel_l1_distance[b] += delta_y
            acc_test = self.accumulated_rel_l1_distance[b]
            if self.accumulated_rel_l1_distance[b] < self.rel_l1_thresh:
                skip = True
                self.resume_flag[b] = False
                residual_x = self.residual_cache[b]
            else:
                self.resume_flag[b] = True
                self.accumulated_rel_l1_distance[b] = 0
        if skip:
            ori_x = x.clone()
            rw, qw = self.residual_window[b], self.probe_residual_window[b]
            if len(rw) >= 2:
                q_now = test_x - x
                g = ((q_now - qw[-2]).abs().mean() / (qw[-1] - qw[-2]).abs().mean()).clip(1, 2)
                gamma = float(g)
                x = x + (rw[-2] + g * (rw[-1] - rw[-2]))
            else:
                x = x + residual_x
            self.previous_internal_states[b] = test_x
        else:
            if self.resume_flag[b]:
                x = test_x
                first = self.probe_depth
            else:
                first = 0
            for ind, layer in enumerate(range(first, m.num_layers)):
                x = m.block(layer, c, x)
                if ind == self.probe_depth - 1:
                    if self.cnt >= int(self.num_steps * self.ret_ratio):
                        self.previous_internal_states[b] = test_x
                    else:
                        self.previous_internal_states[b] = x
            residual_x = x - ori_x
            self.residual_cache[b] = residual_x
            self.probe_residual_cache[b] = self.previous_internal_states[b] - ori_x
            rw, qw = self.residual_window[b], self.probe_residual_window[b]
            if len(rw) <= 2:
                rw.append(residual_x)
                qw.append(self.probe_residual_cache[b])
            else:
                rw[-2], rw[-1] = rw[-1], residual_x
                qw[-2], qw[-1] = qw[-1], self.probe_residual_cache[b]
        out = m.head(c, x)
        self.cnt += 1
        if self.cnt >= self.num_steps:
            self.cnt = 0  # the official reset; nothing runs after the last call here
        self.log["computed"].append(0 if skip else 1)
        self.log["gamma"].append(gamma)
        self.log["delta_y"].append(delta_y)
        self.log["acc_test"].append(acc_test)
        return out


def main():
    case_path, out_path = sys.argv[1], sys.argv[2]
    thresh, ret_ratio, probe_depth = float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    case = R.Case(case_path)
    assert case.guidance != 1.0, "the official code counts two calls per step"
    model = R.Tiny(case.weights)
    dc = DiCacheOfficial(model, case.steps, thresh, ret_ratio, probe_depth)
    with torch.no_grad():
        out = R.sample(case, dc)
    R.write(out_path, latents=out["latents"], **dc.log)


if __name__ == "__main__":
    main()
