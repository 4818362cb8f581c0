/* UniPC (bh2, order 2, data prediction) on flow matching: Wan2.1's default sampler, FlowUniPCMultistepScheduler in
 * wan/utils/fm_solvers_unipc.py as wan/text2video.py drives it (constructed with shift 1, the real shift given to
 * set_timesteps; solver_order 2, predict_x0, lower_order_final, final_sigmas_type 'zero', no disabled corrector).
 *
 * Grid (flow_grid.h): sigma linearly spaced from sigma_max = float32(0.999) (the largest training sigma) towards 0,
 * shifted, plus a final 0; the model receives int64(1000 sigma'), truncated (50 steps, shift 5: 999, 995, ..., 92).
 * With alpha = 1 - sigma, lambda = log alpha - log sigma and the data prediction m_i = x_i - sigma_i v_i (x_i as the
 * model saw it), step i:
 *   1. corrector (i > 0), of the previous step's order p, from the previous corrected sample x^c_{i-1} to sigma_i:
 *        x^c_i = (sigma_i/sigma_{i-1}) x^c_{i-1} - alpha_i B m_{i-1} - alpha_i B (rho_0 D + rho_last (m_i - m_{i-1}))
 *      with h = lambda_i - lambda_{i-1}, B = expm1(-h) (bh2; also h*phi_1), D = (m_{i-2} - m_{i-1}) / r,
 *      r = (lambda_{i-2} - lambda_{i-1}) / h; p = 1: rho_last = 1/2, no D term; p = 2: rho solves
 *      [1 1; r 1] rho = [g1, g2], g1 = (B/(-h) - 1)/B, g2 = 2 ((B/(-h) - 1)/(-h) - 1/2)/B.
 *      i = 0: x^c_0 = x_0.
 *   2. predictor of order p_i = min(2, steps - i, i + 1) (1 at the first and the last step) from x^c_i to sigma_{i+1}:
 *        x_{i+1} = (sigma_{i+1}/sigma_i) x^c_i - alpha_{i+1} B m_i [- alpha_{i+1} B (1/2) (m_{i-1} - m_i) / r]
 *      with h = lambda_{i+1} - lambda_i, r = (lambda_{i-1} - lambda_i) / h. At sigma = 0 (the last step) this is m_i.
 * Scalars are computed in double (the official code uses float32 torch scalars); the tensors are float32, updated
 * with VecOps only. The official scheduler finds its first step by looking the first timestep up in the grid and
 * takes the second match when it repeats (steps >= 251 at shift 5), which then runs off the grid; here step i is
 * always grid index i. */
#include "harness/solvers/solver.h"

#include <math.h>
#include <stdlib.h>

#include "harness/solvers/flow_grid.h"

struct Solver {
    const VecOps *ops;
    size_t n;
    const float *sigmas;
    int steps;
    int last_order;             /* order of the previous predictor: the order of this step's corrector */
    float *m, *m1, *m2;         /* data predictions of this step and the two before (rotated, never copied) */
    float *corrected;           /* x^c of the latest step: the predictor's starting point */
    float *diff, *diff2;        /* scratch */
};

/* sigma_max = float32(0.999): the scheduler's training sigmas are 1 - linspace(1, 1/1000, 1000) reversed, in float32,
 * and sigma_max is their first, read back as a Python float. */
static void unipc_schedule(int steps, float shift, float *sigmas, float *timesteps) {
    flow_grid(steps, (double)0.999f, shift, sigmas, timesteps);
}

static void unipc_destroy(Solver *s) {
    if (!s) return;
    float *bufs[] = {s->m, s->m1, s->m2, s->corrected, s->diff, s->diff2};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) s->ops->release(s->ops->ctx, bufs[i]);
    free(s);
}

static Solver *unipc_create(const VecOps *ops, size_t n, const float *sigmas, int steps, Error *err) {
    Solver *s = calloc(1, sizeof *s);
    if (!s) {
        error_set(err, "out of memory for the UniPC solver");
        return NULL;
    }
    *s = (Solver){.ops = ops, .n = n, .sigmas = sigmas, .steps = steps};
    s->m = ops->alloc(ops->ctx, n), s->m1 = ops->alloc(ops->ctx, n), s->m2 = ops->alloc(ops->ctx, n);
    s->corrected = ops->alloc(ops->ctx, n);
    s->diff = ops->alloc(ops->ctx, n), s->diff2 = ops->alloc(ops->ctx, n);
    if (!s->m || !s->m1 || !s->m2 || !s->corrected || !s->diff || !s->diff2) {
        unipc_destroy(s);
        error_set(err, "out of memory for the UniPC solver's state (6 x %zu floats)", n);
        return NULL;
    }
    return s;
}

/* UniC: moves s->corrected (x^c_{i-1}) to x^c_i with the model output at the predicted x_i (s->m). */
static void unipc_correct(Solver *s, int i) {
    const VecOps *o = s->ops;
    const double sigma_t = s->sigmas[i], sigma_s = s->sigmas[i - 1], alpha_t = 1.0 - sigma_t;
    const double lambda_s = flow_lambda(s->sigmas[i - 1]);
    const double h = flow_lambda(s->sigmas[i]) - lambda_s, hh = -h;
    const double b_h = expm1(hh); /* bh2; also h*phi_1 */
    /* diff = rho_0 D + rho_last (m_i - m_{i-1}) */
    o->sub(o->ctx, s->diff, s->m, s->m1, s->n);
    double rho_last = 0.5;
    if (s->last_order == 2) {
        const double r = (flow_lambda(s->sigmas[i - 2]) - lambda_s) / h;
        const double phi_k1 = b_h / hh - 1.0, phi_k2 = phi_k1 / hh - 0.5;
        const double g1 = phi_k1 / b_h, g2 = 2.0 * phi_k2 / b_h;
        const double rho0 = (g1 - g2) / (1.0 - r); /* [1 1; r 1] rho = [g1 g2] */
        rho_last = g1 - rho0;
        o->sub(o->ctx, s->diff2, s->m2, s->m1, s->n);
        o->axpby(o->ctx, s->diff, (float)(rho0 / r), s->diff2, (float)rho_last, s->diff, s->n);
        rho_last = 1.0;
    }
    o->axpby(o->ctx, s->corrected, (float)(sigma_t / sigma_s), s->corrected, (float)(-alpha_t * b_h), s->m1, s->n);
    o->axpby(o->ctx, s->corrected, 1.0f, s->corrected, (float)(-alpha_t * b_h * rho_last), s->diff, s->n);
}

static void unipc_step(Solver *s, int i, float *x, const float *v) {
    const VecOps *o = s->ops;
    float *const oldest = s->m2;
    s->m2 = s->m1, s->m1 = s->m, s->m = oldest;
    o->axpby(o->ctx, s->m, 1.0f, x, -s->sigmas[i], v, s->n);
    if (i > 0) unipc_correct(s, i);
    else o->copy(o->ctx, s->corrected, x, s->n);

    int order = s->steps - i < 2 ? s->steps - i : 2;
    if (i + 1 < order) order = i + 1;
    s->last_order = order;
    const double sigma_t = s->sigmas[i + 1], sigma_s = s->sigmas[i];
    if (sigma_t == 0.0) { /* lambda_t = inf: e^{-h} = 0, the step lands on the data prediction */
        o->copy(o->ctx, x, s->m, s->n);
        return;
    }
    const double alpha_t = 1.0 - sigma_t, lambda_s = flow_lambda(s->sigmas[i]);
    const double h = flow_lambda(s->sigmas[i + 1]) - lambda_s, b_h = expm1(-h);
    o->axpby(o->ctx, x, (float)(sigma_t / sigma_s), s->corrected, (float)(-alpha_t * b_h), s->m, s->n);
    if (order == 2) {
        const double r = (flow_lambda(s->sigmas[i - 1]) - lambda_s) / h;
        o->sub(o->ctx, s->diff, s->m1, s->m, s->n);
        o->axpby(o->ctx, x, 1.0f, x, (float)(-alpha_t * b_h * 0.5 / r), s->diff, s->n);
    }
}

static void unipc_copy(Solver *dst, const Solver *src) {
    const VecOps *o = src->ops;
    o->copy(o->ctx, dst->m, src->m, src->n);
    o->copy(o->ctx, dst->m1, src->m1, src->n);
    o->copy(o->ctx, dst->m2, src->m2, src->n);
    o->copy(o->ctx, dst->corrected, src->corrected, src->n);
    dst->last_order = src->last_order;
}

const SolverKind solver_unipc = {
    .name = "unipc",
    .summary = "UniPC bh2 order 2 (Wan's default): grid from sigma 0.999, model timestep int(1000*sigma)",
    .schedule = unipc_schedule,
    .create = unipc_create,
    .step = unipc_step,
    .destroy = unipc_destroy,
    .copy = unipc_copy,
};
