/* static — compute on a fixed schedule, reuse the last transformation in between.
 *
 * Schedule (steps counted from 0, N = interval, R = warmup, S = num_steps):
 *     compute step t  <=>  t < R  or  (t - R) mod N == 0  or  t == S - 1
 * i.e. the first R steps, then steps R, R+N, R+2N, ..., and the last step. N = 1 computes every step.
 * Reuse, per branch (cond / uncond), at model level:
 *     y_t = x_t + Δ,   Δ = y_c - x_c  of the branch's last computed call c (cached in model_end)
 * Parameters: interval (N >= 1, default 3), warmup (R >= 0, default 5). Spec: "static:interval=3,warmup=5".
 * Trace: signal NAN (nothing is measured), accumulator = steps since the branch's last computed step (0 on a
 * computed step), threshold = N.
 *
 * Published script: none follows exactly; this is the fixed-interval baseline of the caching literature (FORA's
 * "static caching" interval N, applied here to the whole model) with EasyCache's reuse rule y = x + Δ, so that
 * it differs from EasyCache only in *when* it computes.
 *
 * A branch that has no cached Δ (its first call, or a buffer that could not be allocated) computes: computing is
 * always correct, only slower. */
#include "strategies/strategy.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    float *delta;       /* [n] y - x of the last computed call; NULL until the first model_end */
    size_t n;
    int last_computed;  /* step of the last computed call */
} StaticBranch;

typedef struct {
    int interval, warmup;
    StaticBranch br[BRANCH_COUNT];
} StaticState;

static int static_model_begin(Strategy *s, const StepInfo *st, const float *x, size_t n, BranchTrace *trace) {
    (void)x;
    StaticState *S = s->state;
    StaticBranch *b = &S->br[st->branch];
    int scheduled = st->step < S->warmup || (st->step - S->warmup) % S->interval == 0 ||
                    st->step == st->num_steps - 1;
    int compute = scheduled || !b->delta || b->n != n;
    trace->computed = compute;
    trace->signal = NAN;
    trace->accumulator = compute ? 0.0f : (float)(st->step - b->last_computed);
    trace->threshold = (float)S->interval;
    trace->k = NAN;
    return compute ? STRATEGY_COMPUTE : STRATEGY_REUSE;
}

static void static_model_reuse(Strategy *s, const StepInfo *st, const float *x, float *y, size_t n) {
    StaticState *S = s->state;
    s->ops->add(s->ops->ctx, y, x, S->br[st->branch].delta, n);
}

static void static_model_end(Strategy *s, const StepInfo *st, const float *x, const float *y, size_t n) {
    StaticState *S = s->state;
    StaticBranch *b = &S->br[st->branch];
    if (b->delta && b->n != n) { /* the geometry changed: start this branch afresh */
        s->ops->release(s->ops->ctx, b->delta);
        b->delta = NULL;
    }
    if (!b->delta) {
        b->delta = s->ops->alloc(s->ops->ctx, n);
        b->n = n;
        if (!b->delta) return; /* no cache: this branch keeps computing */
    }
    s->ops->sub(s->ops->ctx, b->delta, y, x, n);
    b->last_computed = st->step;
}

static size_t static_bytes_held(const Strategy *s) {
    const StaticState *S = s->state;
    size_t bytes = 0;
    for (int i = 0; i < BRANCH_COUNT; i++)
        if (S->br[i].delta) bytes += S->br[i].n * sizeof(float);
    return bytes;
}

static void static_destroy(Strategy *s) {
    StaticState *S = s->state;
    if (!S) return;
    for (int i = 0; i < BRANCH_COUNT; i++) {
        if (S->br[i].delta) s->ops->release(s->ops->ctx, S->br[i].delta);
    }
    free(S);
    s->state = NULL;
}

static int static_clone(Strategy *dst, const Strategy *src, Error *err) {
    const StaticState *S = src->state;
    StaticState *D = malloc(sizeof *D);
    if (!D) return error_set(err, "static: out of memory");
    *D = *S;
    dst->state = D;
    int failed = 0;
    for (int i = 0; i < BRANCH_COUNT; i++) D->br[i].delta = strategy_copy_buffer(src->ops, S->br[i].delta, S->br[i].n, &failed);
    if (failed) {
        static_destroy(dst);
        return error_set(err, "static: out of memory for a copy of the cache");
    }
    return 0;
}

static const char *const static_params[] = {"interval", "warmup", NULL};

static int static_create(Strategy *s, const StrategyParams *p, const StrategyEnv *env, Error *err) {
    (void)env;
    int interval, warmup;
    if (strategy_param_int(p, "interval", 3, 1, INT_MAX, &interval, err)) return -1;
    if (strategy_param_int(p, "warmup", 5, 0, INT_MAX, &warmup, err)) return -1;
    StaticState *S = calloc(1, sizeof *S);
    if (!S) return error_set(err, "static: out of memory");
    S->interval = interval;
    S->warmup = warmup;
    s->state = S;
    s->destroy = static_destroy;
    s->bytes_held = static_bytes_held;
    s->clone = static_clone;
    s->model_begin = static_model_begin;
    s->model_reuse = static_model_reuse;
    s->model_end = static_model_end;
    snprintf(s->spec, sizeof s->spec, "static:interval=%d,warmup=%d", interval, warmup);
    return 0;
}

STRATEGY_REGISTER(strategy_static_info, 10) = {
    .name = "static",
    .summary = "compute the first R steps, then every N-th step and the last; reuse y = x + Δ in between",
    .params_help = "interval  N >= 1: compute every N-th step after the warm-up (default 3)\n"
                   "warmup    R >= 0: steps computed first (default 5)",
    .param_names = static_params,
    .create = static_create,
};
