/* DPM-Solver++ (2M, midpoint, data prediction) on flow matching: Wan2.1's 'dpm++' sampler,
 * FlowDPMSolverMultistepScheduler in wan/utils/fm_solvers.py as wan/text2video.py drives it (constructed with
 * shift 1, solver_order 2, algorithm_type dpmsolver++, solver_type midpoint, lower_order_final, final_sigmas_type
 * 'zero'; its sigmas from get_sampling_sigmas(steps, shift) through retrieve_timesteps, where the scheduler's own
 * shift of 1 leaves them as they are).
 *
 * Grid (flow_grid.h): sigma linearly spaced from 1 towards 0, shifted, plus a final 0; the model receives
 * int64(1000 sigma'), truncated: the first timestep is 1000. With alpha = 1 - sigma, lambda = log alpha - log sigma,
 * m_i = x_i - sigma_i v_i and h = lambda_{i+1} - lambda_i, step i is
 *   order 1 (the first step, and the last: final sigma 0):
 *     x_{i+1} = (sigma_{i+1}/sigma_i) x_i - alpha_{i+1} (e^{-h} - 1) m_i
 *   order 2 (otherwise): the same - (1/2) alpha_{i+1} (e^{-h} - 1) (m_i - m_{i-1}) / r,
 *     r = (lambda_i - lambda_{i-1}) / h.
 * The last step lands on m_i. At step 1, lambda_0 = -inf (sigma_0 = 1), so 1/r = 0 and the step is first order in
 * effect, as in the official code. Scalars are computed in double (e^{-h} - 1 as expm1(-h); the official code uses
 * float32 torch scalars), the tensors are float32 and updated with VecOps only. */
#include "harness/solvers/solver.h"

#include <math.h>
#include <stdlib.h>

#include "harness/solvers/flow_grid.h"

struct Solver {
    const VecOps *ops;
    size_t n;
    const float *sigmas;
    int steps;
    float *m, *m1;              /* data predictions of this step and the one before (swapped, never copied) */
    float *diff;                /* scratch */
};

static void dpmpp_schedule(int steps, float shift, float *sigmas, float *timesteps) {
    flow_grid(steps, 1.0, shift, sigmas, timesteps);
}

static void dpmpp_destroy(Solver *s) {
    if (!s) return;
    float *bufs[] = {s->m, s->m1, s->diff};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) s->ops->release(s->ops->ctx, bufs[i]);
    free(s);
}

static Solver *dpmpp_create(const VecOps *ops, size_t n, const float *sigmas, int steps, Error *err) {
    Solver *s = calloc(1, sizeof *s);
    if (!s) {
        error_set(err, "out of memory for the DPM++ solver");
        return NULL;
    }
    *s = (Solver){.ops = ops, .n = n, .sigmas = sigmas, .steps = steps};
    s->m = ops->alloc(ops->ctx, n), s->m1 = ops->alloc(ops->ctx, n), s->diff = ops->alloc(ops->ctx, n);
    if (!s->m || !s->m1 || !s->diff) {
        dpmpp_destroy(s);
        error_set(err, "out of memory for the DPM++ solver's state (3 x %zu floats)", n);
        return NULL;
    }
    return s;
}

static void dpmpp_step(Solver *s, int i, float *x, const float *v) {
    const VecOps *o = s->ops;
    float *const older = s->m1;
    s->m1 = s->m, s->m = older;
    o->axpby(o->ctx, s->m, 1.0f, x, -s->sigmas[i], v, s->n);
    const double sigma_t = s->sigmas[i + 1], sigma_s = s->sigmas[i];
    if (sigma_t == 0.0) { /* lambda_t = inf: e^{-h} = 0, the step lands on the data prediction */
        o->copy(o->ctx, x, s->m, s->n);
        return;
    }
    const double alpha_t = 1.0 - sigma_t, lambda_s = flow_lambda(s->sigmas[i]);
    const double h = flow_lambda(s->sigmas[i + 1]) - lambda_s, phi = expm1(-h);
    o->axpby(o->ctx, x, (float)(sigma_t / sigma_s), x, (float)(-alpha_t * phi), s->m, s->n);
    if (i > 0) { /* second order; the last step (sigma_t = 0) returned above */
        const double inv_r = h / (lambda_s - flow_lambda(s->sigmas[i - 1])); /* 0 when lambda_{i-1} = -inf */
        o->sub(o->ctx, s->diff, s->m, s->m1, s->n);
        o->axpby(o->ctx, x, 1.0f, x, (float)(-0.5 * alpha_t * phi * inv_r), s->diff, s->n);
    }
}

static void dpmpp_copy(Solver *dst, const Solver *src) {
    src->ops->copy(src->ops->ctx, dst->m, src->m, src->n);
    src->ops->copy(src->ops->ctx, dst->m1, src->m1, src->n);
}

const SolverKind solver_dpmpp = {
    .name = "dpm++",
    .summary = "DPM-Solver++ 2M midpoint (Wan's 'dpm++'): grid from sigma 1, model timestep int(1000*sigma)",
    .schedule = dpmpp_schedule,
    .create = dpmpp_create,
    .step = dpmpp_step,
    .destroy = dpmpp_destroy,
    .copy = dpmpp_copy,
};
