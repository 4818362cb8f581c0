#!/usr/bin/env python3
"""Reference for harness/solvers/unipc.c and dpmpp.c, written for the tests from Wan2.1's own schedulers
(wan/utils/fm_solvers_unipc.py FlowUniPCMultistepScheduler, wan/utils/fm_solvers.py FlowDPMSolverMultistepScheduler,
get_sampling_sigmas, retrieve_timesteps) as wan/text2video.py drives them. numpy only; every scalar and tensor in
float64 (the grid itself as the official code builds it: float64 numpy, sigmas stored as float32, timesteps
truncated to int64). The update rules keep the official structure (model output history, warm-up order count,
the R/b system of UniPC solved with numpy) so that they check the C code's closed forms.

  solver_reference.py grid SOLVER STEPS SHIFT
      prints "sigmas" and the steps + 1 float32 sigmas (%.9g), then "timesteps" and the steps integers
  solver_reference.py trajectory SOLVER STEPS SHIFT FIELD IN OUT
      reads x_0 (float32, native order) from IN, runs the solver with the velocity field FIELD (below) and writes
      x after every step (steps x n float64) to OUT

SOLVER is unipc or dpm++. FIELD is the model: 'wavy' v(x, sigma) = 0.8 tanh(x) - 0.3 x + 0.5 sin(2 sigma + x)
(smooth, nonlinear; the C test evaluates the same formula), or 'point' v = (x - 0.25) / sigma (data all at 0.25).
"""
import sys

import numpy as np

NUM_TRAIN_TIMESTEPS = 1000


def training_sigma_range():
    """sigma_max and sigma_min of a scheduler constructed with shift 1: its training sigmas in float32."""
    alphas = np.linspace(1, 1 / NUM_TRAIN_TIMESTEPS, NUM_TRAIN_TIMESTEPS)[::-1].copy()
    sigmas = (1.0 - alphas).astype(np.float32)
    sigmas = 1.0 * sigmas / (1 + (1.0 - 1) * sigmas)  # shift 1 at construction, as text2video.py builds it
    return float(sigmas[0]), float(sigmas[-1])


def set_timesteps(sigmas, shift):
    """set_timesteps(sigmas=..., shift=...) with final_sigmas_type 'zero': float32 sigmas + [0], int64 timesteps."""
    sigmas = np.asarray(sigmas, dtype=np.float64)
    sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
    timesteps = (sigmas * NUM_TRAIN_TIMESTEPS).astype(np.int64)  # torch .to(int64) truncates like numpy
    return np.concatenate([sigmas, [0.0]]).astype(np.float32), timesteps


def grid(solver, steps, shift):
    if solver == "unipc":
        # FlowUniPCMultistepScheduler(shift=1).set_timesteps(steps, shift=shift)
        sigma_max, sigma_min = training_sigma_range()
        base = np.linspace(sigma_max, sigma_min, steps + 1).copy()[:-1]
        return set_timesteps(base, shift)
    if solver == "dpm++":
        # get_sampling_sigmas(steps, shift), then retrieve_timesteps(sigmas=...): set_timesteps with the
        # scheduler's own shift, 1
        sampling = np.linspace(1, 0, steps + 1)[:steps]
        sampling = shift * sampling / (1 + (shift - 1) * sampling)
        return set_timesteps(sampling, 1.0)
    raise SystemExit(f"unknown solver {solver}")


def lam(sigma):
    sigma = np.float64(sigma)
    with np.errstate(divide="ignore"):
        return np.log(1.0 - sigma) - np.log(sigma)


class Multistep:
    """What both schedulers keep between steps (solver_order 2); the scheduler's first step is grid index 0."""

    order = 2

    def __init__(self, sigmas):
        self.sigmas = sigmas.astype(np.float64)
        self.num_steps = len(sigmas) - 1
        self.model_outputs = [None] * self.order
        self.lower_order_nums = 0
        self.step_index = 0


class UniPC(Multistep):
    """bh2, solver_order 2, predict_x0, lower_order_final, no disabled corrector, no solver_p."""

    def __init__(self, sigmas):
        super().__init__(sigmas)
        self.last_sample = None
        self.this_order = None

    def coefficients(self, h, order, rks):
        hh = -h
        h_phi_1 = np.expm1(hh)
        h_phi_k = h_phi_1 / hh - 1
        b_h = np.expm1(hh)
        rks = np.array(rks + [1.0])
        R, b, factorial = [], [], 1
        for i in range(1, order + 1):
            R.append(rks ** (i - 1))
            b.append(h_phi_k * factorial / b_h)
            factorial *= i + 1
            h_phi_k = h_phi_k / hh - 1 / factorial
        return h_phi_1, b_h, np.stack(R), np.array(b)

    def predictor(self, x, order):
        i = self.step_index
        s_t, s_s0 = self.sigmas[i + 1], self.sigmas[i]
        a_t = 1 - s_t
        m0 = self.model_outputs[-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            h = lam(s_t) - lam(s_s0)
            rks, d1s = [], []
            for k in range(1, order):
                rk = (lam(self.sigmas[i - k]) - lam(s_s0)) / h
                rks.append(rk)
                d1s.append((self.model_outputs[-(k + 1)] - m0) / rk)
            h_phi_1, b_h, _, _ = self.coefficients(h, order, rks)
        x_t = s_t / s_s0 * x - a_t * h_phi_1 * m0
        if d1s:
            rhos_p = [0.5]  # order 2: the official simplified version
            x_t = x_t - a_t * b_h * sum(r * d for r, d in zip(rhos_p, d1s))
        return x_t

    def corrector(self, m_t, last, order):
        i = self.step_index
        s_t, s_s0 = self.sigmas[i], self.sigmas[i - 1]
        a_t = 1 - s_t
        m0 = self.model_outputs[-1]
        h = lam(s_t) - lam(s_s0)
        rks, d1s = [], []
        for k in range(1, order):
            rk = (lam(self.sigmas[i - (k + 1)]) - lam(s_s0)) / h
            rks.append(rk)
            d1s.append((self.model_outputs[-(k + 1)] - m0) / rk)
        h_phi_1, b_h, R, b = self.coefficients(h, order, rks)
        rhos_c = np.array([0.5]) if order == 1 else np.linalg.solve(R, b)
        x_t = s_t / s_s0 * last - a_t * h_phi_1 * m0
        corr = sum(r * d for r, d in zip(rhos_c[:-1], d1s)) if d1s else 0
        return x_t - a_t * b_h * (corr + rhos_c[-1] * (m_t - m0))

    def step(self, v, x):
        i = self.step_index
        m = x - self.sigmas[i] * v
        if i > 0 and self.last_sample is not None:
            x = self.corrector(m, self.last_sample, self.this_order)
        self.model_outputs = self.model_outputs[1:] + [m]
        this_order = min(self.order, self.num_steps - i)  # lower_order_final
        self.this_order = min(this_order, self.lower_order_nums + 1)
        self.last_sample = x
        x_next = self.predictor(x, self.this_order)
        self.lower_order_nums = min(self.lower_order_nums + 1, self.order)
        self.step_index += 1
        return x_next


class DPMpp(Multistep):
    """dpmsolver++, midpoint, solver_order 2, lower_order_final, euler_at_final off, final_sigmas_type 'zero'."""

    def step(self, v, x):
        i = self.step_index
        # lower_order_final of step(): the last step, since final_sigmas_type is 'zero' (whatever the step count)
        final = i == self.num_steps - 1
        m = x - self.sigmas[i] * v
        self.model_outputs = self.model_outputs[1:] + [m]
        s_t, s_s0 = self.sigmas[i + 1], self.sigmas[i]
        a_t = 1 - s_t
        with np.errstate(divide="ignore", invalid="ignore"):
            h = lam(s_t) - lam(s_s0)
            if self.lower_order_nums < 1 or final:
                x_next = (s_t / s_s0) * x - (a_t * (np.exp(-h) - 1.0)) * m
            else:
                s_s1 = self.sigmas[i - 1]
                h_0 = lam(s_s0) - lam(s_s1)
                r0 = h_0 / h
                d0, d1 = m, (1.0 / r0) * (m - self.model_outputs[-2])
                x_next = ((s_t / s_s0) * x - (a_t * (np.exp(-h) - 1.0)) * d0 -
                          0.5 * (a_t * (np.exp(-h) - 1.0)) * d1)
        self.lower_order_nums = min(self.lower_order_nums + 1, self.order)
        self.step_index += 1
        return x_next


def velocity(field, x, sigma):
    if field == "wavy":
        return 0.8 * np.tanh(x) - 0.3 * x + 0.5 * np.sin(2.0 * sigma + x)
    if field == "point":
        return (x - 0.25) / sigma
    raise SystemExit(f"unknown field {field}")


def main(argv):
    if len(argv) == 4 and argv[0] == "grid":
        sigmas, timesteps = grid(argv[1], int(argv[2]), float(argv[3]))
        print("sigmas", " ".join("%.9g" % s for s in sigmas))
        print("timesteps", " ".join(str(int(t)) for t in timesteps))
        return 0
    if len(argv) == 7 and argv[0] == "trajectory":
        solver, steps, shift, field = argv[1], int(argv[2]), float(argv[3]), argv[4]
        sigmas, _ = grid(solver, steps, shift)
        x = np.fromfile(argv[5], dtype=np.float32).astype(np.float64)
        sched = UniPC(sigmas) if solver == "unipc" else DPMpp(sigmas)
        out = np.empty((steps, x.size))
        for i in range(steps):
            # the model sees x at the grid's float32 sigma (the C runner gives the solver's own sigmas[i])
            x = sched.step(velocity(field, x, np.float64(sigmas[i])), x)
            out[i] = x
        out.tofile(argv[6])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
