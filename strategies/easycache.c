/* easycache — reuse the model's last transformation Δ = y - x while the predicted output change, accumulated from
 * the transformation rate k, stays below a threshold (EasyCache: Zhou et al. 2025, "Less is Enough: Training-Free
 * Video Diffusion Acceleration via Runtime-Adaptive Caching", arXiv:2507.02860).
 *
 * Decided on the cond call of each step; the uncond call of the same step follows that decision. At step t
 * (S = num_steps, R = warmup, τ = thresh), on the cond call with input x_t:
 *     t < R or t = S - 1:          compute, E = 0
 *     otherwise, k unknown:        compute, E = 0
 *     otherwise:                   E += k · mean|x_t - x_prev| / mean|y_last|
 *                                  reuse while E < τ, else compute and E = 0
 *     x_prev = x_t                 (every cond call, computed or not)
 * After a computed cond call (model output y_t):
 *     k = mean|y_t - y_last| / mean|x_t - x_last|     (between consecutive COMPUTED cond calls)
 *     x_last = x_t, y_last = y_t, Δ_cond = y_t - x_t
 * After a computed uncond call: Δ_uncond = y_t - x_t.
 * Reuse: y_t = x_t + Δ_branch. k becomes known after the second computed cond call.
 *
 * Parameters (spec "easycache:thresh=0.05,warmup=10"):
 *     thresh   τ >= 0                   default 0.05
 *     warmup   R >= 0 steps computed    default round(0.2 · num_steps): 10 of 50, as in the Wan2.1 script
 * (the HunyuanVideo script uses τ = 0.025, R = 5 of 50: "easycache:thresh=0.025,warmup=5").
 *
 * Published script: EasyCache4Wan2.1/easycache_generate.py (H-EmbodVis/EasyCache), which this follows: decision on the even (cond)
 * call shared by the odd (uncond) call, x_prev = previous cond input, k from the previous computed cond input
 * and output, ret_steps = R steps, cutoff = the last step; its warm-up counts model calls (2 per step), ours steps.
 *
 * Choices where DESIGN §4 is silent:
 *   - Trace of a computed step: accumulator 0 (E after the reset, as BranchTrace's "after this step" says); the
 *     value that crossed τ is the previous step's accumulator plus this step's signal, both recorded.
 *   - signal = the increment k · mean|x_t - x_prev| / mean|y_last|; NAN in warm-up, on the last step and while
 *     k is unknown (nothing is measured then). k = the value the decision used (NAN while unknown); the update
 *     from this step's output shows from the next step on.
 *   - The uncond trace repeats the cond call's signal, accumulator, threshold and k: the decision is shared.
 *   - An uncond call computes when its step had no cond call deciding reuse or when it has no Δ_uncond yet
 *     (guidance switched on mid-run); that never changes the cond decision.
 *   - mean|x_t - x_last| = 0 leaves k unchanged (the rate is undefined); mean|y_last| = 0 computes (signal NAN).
 *   - τ = 0 computes every step: increments are >= 0, so E >= τ always.
 *   - Guidance off (StepInfo.guidance_on == 0): only cond calls happen; nothing else changes. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strategies/strategy.h"

typedef struct {
    float *delta;   /* [n] y - x of the branch's last computed call */
    int have;
} EcBranch;

typedef struct {
    double thresh;
    int warmup;
    size_t n;                       /* model numel all buffers were allocated for; 0 before the first call */
    EcBranch br[BRANCH_COUNT];
    float *x_prev, *x_last, *y_last;
    int have_prev, have_last, have_k;
    double k, E;
    /* The cond decision of step decided_step, for the uncond call of that step to follow, with its trace. */
    int decided_step, cond_reuse;
    BranchTrace cond_trace;
} EcState;

static void ec_release(const VecOps *ops, float **p) {
    if (*p) ops->release(ops->ctx, *p);
    *p = NULL;
}

static void ec_free_buffers(Strategy *s) {
    EcState *E = s->state;
    ec_release(s->ops, &E->x_prev);
    ec_release(s->ops, &E->x_last);
    ec_release(s->ops, &E->y_last);
    for (int i = 0; i < BRANCH_COUNT; i++) ec_release(s->ops, &E->br[i].delta);
}

/* Allocates every buffer at n floats on first use (or when the model size changes, which starts afresh).
 * Returns -1 when allocation failed: every call then computes, which is always correct. */
static int ec_buffers(Strategy *s, size_t n) {
    EcState *E = s->state;
    if (E->n == n && E->x_prev) return 0;
    ec_free_buffers(s);
    E->have_prev = E->have_last = E->have_k = 0;
    E->br[0].have = E->br[1].have = 0;
    E->E = 0.0;
    E->n = n;
    const VecOps *ops = s->ops;
    E->x_prev = ops->alloc(ops->ctx, n);
    E->x_last = ops->alloc(ops->ctx, n);
    E->y_last = ops->alloc(ops->ctx, n);
    for (int i = 0; i < BRANCH_COUNT; i++) E->br[i].delta = ops->alloc(ops->ctx, n);
    if (E->x_prev && E->x_last && E->y_last && E->br[0].delta && E->br[1].delta) return 0;
    ec_free_buffers(s);
    E->n = 0;
    return -1;
}

/* x_prev, x_last, y_last and the two branches' deltas, once allocated. */
static size_t ec_bytes_held(const Strategy *s) {
    const EcState *E = s->state;
    return E->x_prev ? 5 * E->n * sizeof(float) : 0;
}

static int ec_model_begin(Strategy *s, const StepInfo *st, const float *x, size_t n, BranchTrace *trace) {
    EcState *E = s->state;
    const VecOps *ops = s->ops;
    if (st->branch == BRANCH_UNCOND) {
        int paired = E->decided_step == st->step;
        int reuse = paired && E->cond_reuse && E->n == n && E->br[BRANCH_UNCOND].have;
        if (paired) {
            *trace = E->cond_trace;
        } else {
            trace->signal = trace->accumulator = trace->k = NAN;
            trace->threshold = (float)E->thresh;
        }
        trace->computed = !reuse;
        return reuse ? STRATEGY_REUSE : STRATEGY_COMPUTE;
    }

    int ok = ec_buffers(s, n) == 0;
    int forced = st->step < E->warmup || st->step == st->num_steps - 1;
    double inc = NAN;
    int compute = 1;
    if (ok && !forced && E->have_k && E->have_prev) {
        double out_norm = ops->mean_abs(ops->ctx, E->y_last, n);
        if (out_norm > 0.0) {
            inc = E->k * ops->mean_abs_diff(ops->ctx, x, E->x_prev, n) / out_norm;
            E->E += inc;
            compute = !(E->E < E->thresh) || !E->br[BRANCH_COND].have;
        }
    }
    if (compute) E->E = 0.0;
    if (ok) {
        ops->copy(ops->ctx, E->x_prev, x, n);
        E->have_prev = 1;
    }

    trace->computed = compute;
    trace->signal = (float)inc;
    trace->accumulator = (float)E->E;
    trace->threshold = (float)E->thresh;
    trace->k = E->have_k ? (float)E->k : NAN;
    E->decided_step = st->step;
    E->cond_reuse = !compute;
    E->cond_trace = *trace;
    return compute ? STRATEGY_COMPUTE : STRATEGY_REUSE;
}

static void ec_model_reuse(Strategy *s, const StepInfo *st, const float *x, float *y, size_t n) {
    EcState *E = s->state;
    s->ops->add(s->ops->ctx, y, x, E->br[st->branch].delta, n);
}

static void ec_model_end(Strategy *s, const StepInfo *st, const float *x, const float *y, size_t n) {
    EcState *E = s->state;
    const VecOps *ops = s->ops;
    if (E->n != n || !E->x_prev) return; /* no buffers (or an uncond call of another size): keep computing */
    if (st->branch == BRANCH_COND) {
        if (E->have_last) {
            double in_change = ops->mean_abs_diff(ops->ctx, x, E->x_last, n);
            if (in_change > 0.0) {
                E->k = ops->mean_abs_diff(ops->ctx, y, E->y_last, n) / in_change;
                E->have_k = 1;
            }
        }
        ops->copy(ops->ctx, E->x_last, x, n);
        ops->copy(ops->ctx, E->y_last, y, n);
        E->have_last = 1;
    }
    ops->sub(ops->ctx, E->br[st->branch].delta, y, x, n);
    E->br[st->branch].have = 1;
}

static void ec_destroy(Strategy *s) {
    if (!s->state) return;
    ec_free_buffers(s);
    free(s->state);
    s->state = NULL;
}

static int ec_clone(Strategy *dst, const Strategy *src, Error *err) {
    const EcState *S = src->state;
    EcState *D = malloc(sizeof *D);
    if (!D) return error_set(err, "easycache: out of memory");
    *D = *S;
    dst->state = D;
    int failed = 0;
    const VecOps *ops = src->ops;
    D->x_prev = strategy_copy_buffer(ops, S->x_prev, S->n, &failed);
    D->x_last = strategy_copy_buffer(ops, S->x_last, S->n, &failed);
    D->y_last = strategy_copy_buffer(ops, S->y_last, S->n, &failed);
    for (int i = 0; i < BRANCH_COUNT; i++) D->br[i].delta = strategy_copy_buffer(ops, S->br[i].delta, S->n, &failed);
    if (failed) {
        ec_destroy(dst);
        return error_set(err, "easycache: out of memory for a copy of the cache");
    }
    return 0;
}

static const char *const ec_params[] = {"thresh", "warmup", "defaults", NULL};

static int ec_create(Strategy *s, const StrategyParams *p, const StrategyEnv *env, Error *err) {
    double thresh;
    int warmup;
    /* defaults=official: EasyCache4Wan2.1's script warms up a fixed 10 steps whatever the step count. */
    int official;
    if (strategy_param_defaults(p, &official, err)) return -1;
    if (strategy_param_double(p, "thresh", 0.05, 0.0, INFINITY, &thresh, err)) return -1;
    if (strategy_param_int(p, "warmup", official ? 10 : (int)lround(0.2 * env->num_steps), 0, INT_MAX, &warmup, err))
        return -1;
    EcState *E = calloc(1, sizeof *E);
    if (!E) return error_set(err, "easycache: out of memory");
    E->thresh = thresh;
    E->warmup = warmup;
    E->decided_step = -1;
    s->state = E;
    s->destroy = ec_destroy;
    s->bytes_held = ec_bytes_held;
    s->clone = ec_clone;
    s->model_begin = ec_model_begin;
    s->model_reuse = ec_model_reuse;
    s->model_end = ec_model_end;
    char th[32];
    strategy_format_double(thresh, th, sizeof th);
    snprintf(s->spec, sizeof s->spec, "easycache:thresh=%s,warmup=%d", th, warmup);
    return 0;
}

STRATEGY_REGISTER(strategy_easycache_info, 30) = {
    .name = "easycache",
    .summary = "reuse the model's last transformation y = x + Δ while the k-predicted output change stays below τ",
    .params_help = "thresh    tau >= 0: reuse while the accumulated k-predicted change stays below it (default 0.05)\n"
                   "warmup    steps computed first, >= 0 (default round(0.2 * steps); the official EasyCache4Wan2.1\n"
                   "          script warms up a fixed 10 steps whatever the step count)\n"
                   "defaults  ours | official: official selects the official script's defaults (warmup 10)",
    .param_names = ec_params,
    .create = ec_create,
};
