#!/usr/bin/env python3
"""An independent transcription of the official TaylorSeer Wan2.1 code, for tests/test_taylorseer.c, on the tiny model
through the shared replay driver (tests/strategy_replay.py, float64).

Source: TaylorSeer-Wan2.1/wan/taylorseer/ (Shenyi-Z/TaylorSeer; read at the ywlq/TaylorSeer snapshot 1377310):
  cache_functions/cache_init.py        cache_init, mode 'Taylor': fresh_threshold 5, max_order 1, first_enhance 1
  cache_functions/cal_type.py          cal_type (first_step = step < first_enhance; full when counter == interval - 1)
  force_scheduler (linear_step_weight 0): cal_threshold = round(fresh_threshold / 1)
  taylorseer_utils/__init__.py         derivative_approximation, taylor_formula, taylor_cache_init
  forwards/wan_forward.py              cal_type only on the cond stream; current['layer'] per block
  forwards/wan_attention_forward.py    full: per module taylor_cache_init, module, derivative_approximation, gated add
  forwards/wan_attention_cache_forward.py  Taylor: taylor_formula per module, cache_add with this step's gates
The lite variant: one tensor per stream, the block-stack residual x_out - x_in, with the update and forecast of
cache-dit's TaylorSeerState (src/cache_dit/caching/cache_contexts/calibrators/taylorseer.py: derivatives only when
current_step > 1, window = current_step - last_non_approximated_step, reset at step 0) on the same official schedule.

Usage: taylorseer_official.py CASE CAPTURE_STEP OUT MODE INTERVAL ORDER FIRST_ENHANCE [OUT MODE ...]
(MODE official|lite; one run per group of five arguments, on the same case). Writes to each OUT: full [steps, 2] (1 full, 0 Taylor, per stream), latents [steps, C, F, H, W], and the forecasts made
at CAPTURE_STEP: official forecast [2, layers, 3, L, dim] (self-attention, cross-attention, FFN before their gates);
lite forecast [2, L, dim] (the residual added to the stack input).
"""
import math
import sys

import torch

import strategy_replay as R

STREAMS = ("cond_stream", "uncond_stream")
MODULES = ("self-attention", "cross-attention", "ffn")


# ---- cache_functions


def cache_init(num_layers, num_steps, interval, order, first_enhance):
    cache = {-1: {s: {j: {} for j in range(num_layers)} for s in STREAMS}}
    cache_dic = {"cache": cache, "cache_counter": 0, "taylor_cache": True, "fresh_ratio": 0.0,
                 "fresh_threshold": interval, "max_order": order, "first_enhance": first_enhance}
    current = {"activated_steps": [0], "step": 0, "num_steps": num_steps}
    return cache_dic, current


def force_scheduler(cache_dic, current):
    linear_step_weight = 0.0
    step_factor = 1 - linear_step_weight + 2 * linear_step_weight * current["step"] / current["num_steps"]
    cache_dic["cal_threshold"] = round(cache_dic["fresh_threshold"] / step_factor)


def cal_type(cache_dic, current):
    first_step = current["step"] < cache_dic["first_enhance"]
    fresh_interval = cache_dic["fresh_threshold"] if first_step else cache_dic["cal_threshold"]
    if first_step or cache_dic["cache_counter"] == fresh_interval - 1:
        current["type"] = "full"
        cache_dic["cache_counter"] = 0
        current["activated_steps"].append(current["step"])
        force_scheduler(cache_dic, current)
    else:
        cache_dic["cache_counter"] += 1
        current["type"] = "Taylor"


# ---- taylorseer_utils


def derivative_approximation(cache_dic, current, feature):
    difference_distance = current["activated_steps"][-1] - current["activated_steps"][-2]
    old = cache_dic["cache"][-1][current["stream"]][current["layer"]][current["module"]]
    updated = {0: feature}
    for i in range(cache_dic["max_order"]):
        if old.get(i, None) is not None and current["step"] > cache_dic["first_enhance"] - 2:
            updated[i + 1] = (updated[i] - old[i]) / difference_distance
        else:
            break
    cache_dic["cache"][-1][current["stream"]][current["layer"]][current["module"]] = updated


def taylor_formula(derivative_dict, distance):
    output = 0
    for i in range(len(derivative_dict)):
        output += (1 / math.factorial(i)) * derivative_dict[i] * (distance ** i)
    return output


def taylor_cache_init(cache_dic, current):
    if current["step"] == 0 and cache_dic["taylor_cache"]:
        cache_dic["cache"][-1][current["stream"]][current["layer"]][current["module"]] = {}


# ---- forwards


class Official:
    def __init__(self, model, steps, interval, order, first_enhance, capture):
        self.model = model
        self.cache_dic, self.current = cache_init(model.num_layers, steps, interval, order, first_enhance)
        self.capture = capture
        self.forecast = torch.zeros(2, model.num_layers, 3, 1, 1, dtype=torch.float64)
        self.full = []

    def block_full(self, layer, c, x):
        m, cache_dic, current = self.model, self.cache_dic, self.current
        gate_msa, gate_mlp = m.gates(layer, c)
        modules = (lambda x: m.self_attn(layer, c, x), lambda x: m.cross_attn(layer, c, x),
                   lambda x: m.ffn(layer, c, x))
        for name, module, gate in zip(MODULES, modules, (gate_msa, None, gate_mlp)):
            current["module"] = name
            taylor_cache_init(cache_dic, current)
            y = module(x)
            derivative_approximation(cache_dic, current, y)
            x = x + (y * gate if gate is not None else y)
        return x

    def block_taylor(self, layer, c, x):
        current = self.current
        gate_msa, gate_mlp = self.model.gates(layer, c)
        d = self.cache_dic["cache"][-1][current["stream"]][layer]
        distance = current["step"] - current["activated_steps"][-1]
        seer = [taylor_formula(d[name], distance) for name in MODULES]
        if current["step"] == self.capture:
            if self.forecast.shape[3] == 1:
                self.forecast = torch.zeros((2, self.model.num_layers, 3) + tuple(seer[0].shape[1:]),
                                            dtype=torch.float64)
            b = STREAMS.index(current["stream"])
            for j in range(3):
                self.forecast[b, layer, j] = seer[j][0]
        x = x + seer[0] * gate_msa
        x = x + seer[1]
        return x + seer[2] * gate_mlp

    def __call__(self, step, branch, x, t, text):
        current = self.current
        current["step"] = step
        current["stream"] = STREAMS[branch]
        if branch == 0:
            cal_type(self.cache_dic, current)
            self.full.append([0, 0])
        self.full[step][branch] = int(current["type"] == "full")
        c = self.model.embed(x, t, text)
        tokens = c.tokens
        for layer in range(self.model.num_layers):
            current["layer"] = layer
            if current["type"] == "full":
                tokens = self.block_full(layer, c, tokens)
            else:
                tokens = self.block_taylor(layer, c, tokens)
        return self.model.head(c, tokens)


class TaylorSeerState:
    """cache-dit's single-tensor state: dY_current holds the factors of the last full step."""

    def __init__(self, n_derivatives):
        self.n_derivatives = n_derivatives
        self.reset()

    def reset(self):
        self.dY_prev = [None] * (self.n_derivatives + 1)
        self.dY_current = [None] * (self.n_derivatives + 1)
        self.current_step = -1
        self.last_non_approximated_step = -1

    def derivative(self, Y):
        dY = [None] * (self.n_derivatives + 1)
        dY[0] = Y
        window = self.current_step - self.last_non_approximated_step
        for i in range(self.n_derivatives):
            if self.dY_prev[i] is not None and self.current_step > 1:
                dY[i + 1] = (dY[i] - self.dY_prev[i]) / window
            else:
                break
        return dY

    def update(self, Y):
        self.dY_prev = self.dY_current
        self.dY_current = self.derivative(Y)
        self.last_non_approximated_step = self.current_step

    def approximate(self):
        elapsed = self.current_step - self.last_non_approximated_step
        output = 0
        for i, d in enumerate(self.dY_current):
            if d is None:
                break
            output += (1 / math.factorial(i)) * d * (elapsed ** i)
        return output


class Lite:
    def __init__(self, model, steps, interval, order, first_enhance, capture):
        self.model = model
        self.cache_dic, self.current = cache_init(model.num_layers, steps, interval, order, first_enhance)
        self.states = [TaylorSeerState(order), TaylorSeerState(order)]
        self.capture = capture
        self.forecast = None
        self.full = []

    def __call__(self, step, branch, x, t, text):
        current = self.current
        current["step"] = step
        if branch == 0:
            cal_type(self.cache_dic, current)
            self.full.append([0, 0])
        full = current["type"] == "full"
        self.full[step][branch] = int(full)
        state = self.states[branch]
        if step == 0:
            state.reset()
        state.current_step = step
        c = self.model.embed(x, t, text)
        x_in = c.tokens
        if full:
            tokens = x_in
            for layer in range(self.model.num_layers):
                tokens = self.model.block(layer, c, tokens)
            state.update(tokens - x_in)
        else:
            r = state.approximate()
            if step == self.capture:
                if self.forecast is None:
                    self.forecast = torch.zeros((2,) + tuple(r.shape[1:]), dtype=torch.float64)
                self.forecast[branch] = r[0]
            tokens = x_in + r
        return self.model.head(c, tokens)


def main():
    case = R.Case(sys.argv[1])
    capture = int(sys.argv[2])
    model = R.Tiny(case.weights)
    runs = sys.argv[3:]
    for at in range(0, len(runs), 5):
        out_path, mode = runs[at], runs[at + 1]
        interval, order, first_enhance = (int(v) for v in runs[at + 2:at + 5])
        kind = {"official": Official, "lite": Lite}[mode]
        strategy = kind(model, case.steps, interval, order, first_enhance, capture)
        out = R.sample(case, strategy)
        forecast = strategy.forecast if strategy.forecast is not None else torch.zeros(1)
        R.write(out_path, full=strategy.full, latents=out["latents"], forecast=forecast)


if __name__ == "__main__":
    main()
