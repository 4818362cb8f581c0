/* Euler on the flow-matching ODE (DESIGN §3): sigma linearly spaced from 1 towards 0 over the steps, shifted by
 * sigma' = shift*sigma / (1 + (shift-1)*sigma), with a final 0; the model timestep is sigma' * 1000 (not truncated).
 * Step: x <- x + (sigma_next - sigma) * v. The tiny model's default. */
#include "harness/solvers/solver.h"

#include <stdlib.h>

struct Solver {
    const VecOps *ops;
    size_t n;
    const float *sigmas;
};

static void euler_schedule(int steps, float shift, float *sigmas, float *timesteps) {
    for (int i = 0; i < steps; i++) {
        double s = 1.0 - (double)i / steps;
        sigmas[i] = (float)(shift * s / (1.0 + (shift - 1.0) * s));
        timesteps[i] = sigmas[i] * 1000.0f;
    }
    sigmas[steps] = 0.0f;
}

static Solver *euler_create(const VecOps *ops, size_t n, const float *sigmas, int steps, Error *err) {
    (void)steps;
    Solver *s = malloc(sizeof *s);
    if (!s) {
        error_set(err, "out of memory for the Euler solver");
        return NULL;
    }
    *s = (Solver){.ops = ops, .n = n, .sigmas = sigmas};
    return s;
}

static void euler_step(Solver *s, int i, float *x, const float *v) {
    s->ops->axpby(s->ops->ctx, x, 1.0f, x, s->sigmas[i + 1] - s->sigmas[i], v, s->n);
}

static void euler_destroy(Solver *s) { free(s); }

static void euler_copy(Solver *dst, const Solver *src) { (void)dst, (void)src; } /* no history */

const SolverKind solver_euler = {
    .name = "euler",
    .summary = "Euler steps on the shifted flow-matching schedule, model timestep 1000*sigma",
    .schedule = euler_schedule,
    .create = euler_create,
    .step = euler_step,
    .destroy = euler_destroy,
    .copy = euler_copy,
};
