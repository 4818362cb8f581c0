/* taylorseer — forecast features from their Taylor expansion at the last fully computed step (TaylorSeer: Liu et
 * al., ICCV 2025, "From Reusing to Forecasting: Accelerating Diffusion Models with TaylorSeers", arXiv:2503.06923),
 * as its official Wan2.1 code does it (TaylorSeer-Wan2.1/wan/taylorseer/, read at ywlq/TaylorSeer 1377310, the
 * snapshot of Shenyi-Z/TaylorSeer stored for that folder).
 *
 * Schedule (official cal_type with force_scheduler's linear step weight 0), decided on the cond call of each step
 * and shared by the uncond call (N = interval, W = warmup = first_enhance):
 *     step 0:                          counter = 0, activated = [0]
 *     step < W or counter == N - 1:    full;   counter = 0, activated += [step]
 *     otherwise:                       Taylor; counter += 1
 * so with N = 5, W = 1: full at 0, 5, 10, ... (W > 1: 0..W-1, then every N steps after W - 1).
 *
 * Official mode (lite=0), per branch × layer × module m ∈ {self-attention, cross-attention, FFN}, on the module's
 * output y before its gate (interface v2 module_plan, H2):
 *     full step:   every module runs; its factors become F0 = y, F_{i+1} = (F_i(new) - F_i(old)) / Δ for i < O while
 *                  the old F_i exists and step > W - 2 (official derivative_approximation), with Δ = activated[-1]
 *                  - activated[-2]. At step 0 the factors are dropped first (taylor_cache_init), so F0 alone.
 *     Taylor step: no module runs; each is supplied with Σ_i F_i k^i / i!, k = step - activated[-1]; the engine
 *                  applies this step's modulation, gates and residual adds (official wan_attention_cache_forward).
 * Lite mode (lite=1): one tensor per branch, the block-stack residual R = tokens_out - tokens_in, with the same
 * schedule and update, and the derivative guard of cache-dit's single-tensor TaylorSeerState (derivatives only from
 * step 2 on; vipshop/cache-dit src/cache_dit/caching/cache_contexts/calibrators/taylorseer.py): Taylor steps skip the
 * stack with tokens += Σ_i F_i k^i / i!.
 *
 * Memory, fp32 [L][dim] tensors of tokens_numel floats: official (branches · layers · 3 · (O+1) + 3 if O >= 1) (the
 * 3: a Taylor step's forecasts); lite branches · (O+1). A branch's tensors are allocated at its first call. When they
 * cannot be, the run fails with a message saying so (s->failure, read by the runner after the call).
 *
 * Trace: signal = k, the steps since the last full step (0 on a full step); threshold NAN (there is none); computed
 * = 0 on Taylor steps. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strategies/strategy.h"

#define TS_MAX_ORDER 4

/* The Taylor factors of one feature: f[0..count-1] hold F_0..F_{count-1}; f[count..order] are spare buffers. */
typedef struct {
    float *f[TS_MAX_ORDER + 1];
} TsFactors;

typedef enum { CALL_FULL, CALL_TAYLOR } TsCall;

typedef struct {
    int interval, order, warmup, lite;
    int num_layers, groups;         /* groups per branch: num_layers · 3 (official) or 1 (lite) */
    size_t n;                       /* tokens numel */
    /* Shared schedule (official cal_type state). */
    int counter;
    int last_full, prev_full;       /* activated_steps[-1], activated_steps[-2] */
    int decided_step, decided_full; /* the cond call's decision, for the uncond call of the same step */
    /* Per branch. */
    TsFactors *factors[BRANCH_COUNT]; /* [groups] each, NULL until the branch's first call */
    int count[BRANCH_COUNT];        /* factors held (the same for every group of a branch) */
    float *forecast[MODULE_COUNT];  /* official, order >= 1: a Taylor step's supplied outputs */
    /* The current call. */
    TsCall call;
    int call_step, call_k;
    Branch call_branch;
    int failed;                     /* a buffer could not be allocated: the run fails */
} TsState;

static size_t ts_buffers_per_branch(const TsState *S) { return (size_t)S->groups * (S->order + 1); }
static int ts_forecast_buffers(const TsState *S) { return !S->lite && S->order >= 1 ? MODULE_COUNT : 0; }

static void ts_release(const VecOps *ops, float **p) {
    if (*p) ops->release(ops->ctx, *p);
    *p = NULL;
}

static void ts_free_branch(TsState *S, const VecOps *ops, int b) {
    if (!S->factors[b]) return;
    for (int g = 0; g < S->groups; g++)
        for (int i = 0; i <= S->order; i++) ts_release(ops, &S->factors[b][g].f[i]);
    free(S->factors[b]);
    S->factors[b] = NULL;
    S->count[b] = 0;
}

/* Allocates branch b's factor buffers (and the forecast buffers, once). -1 when the memory is not there. */
static int ts_alloc_branch(TsState *S, const VecOps *ops, int b) {
    if (S->factors[b]) return 0;
    S->factors[b] = calloc((size_t)S->groups, sizeof *S->factors[b]);
    if (!S->factors[b]) return -1;
    for (int g = 0; g < S->groups; g++)
        for (int i = 0; i <= S->order; i++)
            if (!(S->factors[b][g].f[i] = ops->alloc(ops->ctx, S->n))) {
                ts_free_branch(S, ops, b);
                return -1;
            }
    for (int m = 0; m < ts_forecast_buffers(S); m++)
        if (!S->forecast[m] && !(S->forecast[m] = ops->alloc(ops->ctx, S->n))) return -1;
    return 0;
}

/* The official schedule, on the cond call of step: 1 full, 0 Taylor. */
static int ts_decide(TsState *S, int step) {
    if (step == 0) {
        S->counter = 0;
        S->last_full = S->prev_full = 0;
    }
    if (step < S->warmup || S->counter == S->interval - 1) {
        S->counter = 0;
        S->prev_full = S->last_full;
        S->last_full = step;
        return 1;
    }
    S->counter++;
    return 0;
}

/* Where a full step writes the new feature: the first spare buffer, or the highest-order factor, which the update
 * does not read. */
static int ts_new_slot(const TsState *S, int b) { return S->count[b] <= S->order ? S->count[b] : S->order; }

/* The factor update of one feature whose new value y sits in f->f[ts_new_slot]: F0 = y, F_{i+1} = (F_i(new) -
 * F_i(old)) / Δ, each new factor written over the old one it replaces; then the buffers are renamed into order.
 * Returns the new count. */
static int ts_update(const TsState *S, const VecOps *ops, TsFactors *f, int count, int derive) {
    const int O = S->order, ys = count <= O ? count : O;
    const float inv = 1.0f / (float)(S->last_full - S->prev_full);
    float *next[TS_MAX_ORDER + 1];
    int have = 1;
    next[0] = f->f[ys];
    for (int i = 0; i < O && i < count && derive; i++) {
        ops->axpby(ops->ctx, f->f[i], inv, next[i], -inv, f->f[i], S->n);
        next[have++] = f->f[i];
    }
    /* next[0] = old slot ys, next[i >= 1] = old slot i - 1: the spare buffers are old slots have - 1 .. O but ys. */
    int at = have;
    for (int j = have - 1; j <= O; j++)
        if (j != ys) next[at++] = f->f[j];
    memcpy(f->f, next, (size_t)(O + 1) * sizeof *next);
    return have;
}

/* Σ_i F_i k^i / i! into out (out += it when accumulate). */
static void ts_forecast(const TsState *S, const VecOps *ops, const TsFactors *f, int count, int k, float *out,
                        int accumulate) {
    double coef = 1.0;
    for (int i = 0; i < count; i++) {
        if (i > 0) coef *= (double)k / i;
        if (i == 0 && !accumulate) ops->copy(ops->ctx, out, f->f[0], S->n);
        else ops->axpby(ops->ctx, out, 1.0f, out, (float)coef, f->f[i], S->n);
    }
}

/* Decides the call (shared schedule), allocates the branch's buffers on its first call, resets its factors at
 * step 0, and writes the trace. */
static TsCall ts_begin_call(Strategy *s, const StepInfo *st, BranchTrace *trace) {
    TsState *S = s->state;
    int full;
    if (st->branch == BRANCH_COND) {
        full = ts_decide(S, st->step);
        S->decided_step = st->step;
        S->decided_full = full;
    } else {
        full = S->decided_step != st->step || S->decided_full; /* no cond call this step: compute */
    }
    const int b = st->branch;
    if (!S->factors[b] && ts_alloc_branch(S, s->ops, b)) {
        S->failed = 1;
        snprintf(s->failure, sizeof s->failure, "cannot allocate the %.3g GB of Taylor factors of branch %d",
                 (double)S->groups * (S->order + 1) * S->n * sizeof(float) / 1e9, b);
    }
    if (st->step == 0) S->count[b] = 0;
    if (!full && S->count[b] == 0) full = 1; /* nothing to forecast from (not reached on the official schedule) */
    S->call = full ? CALL_FULL : CALL_TAYLOR;
    S->call_step = st->step;
    S->call_branch = st->branch;
    S->call_k = full ? 0 : st->step - S->last_full;
    trace->computed = full;
    trace->signal = (float)S->call_k;
    trace->threshold = NAN;
    return S->call;
}

/* ---- official mode: module plans ---------------------------------------------------------------------------- */

static int ts_blocks_begin(Strategy *s, const StepInfo *st, const BlockInputs *in, BranchTrace *trace) {
    TsState *S = s->state;
    TsCall call = ts_begin_call(s, st, trace);
    if (S->failed || !S->lite) return STRATEGY_COMPUTE;
    if (call == CALL_TAYLOR) return STRATEGY_REUSE;
    /* Lite full call: keep the stack input in the spare buffer; blocks_end turns it into the residual. */
    TsFactors *f = &S->factors[st->branch][0];
    s->ops->copy(s->ops->ctx, f->f[ts_new_slot(S, st->branch)], in->tokens, S->n);
    return STRATEGY_COMPUTE;
}

static void ts_module_plan(Strategy *s, const StepInfo *st, int layer, ModulePlan *plan) {
    TsState *S = s->state;
    if (S->failed) return;
    const int b = st->branch;
    for (int m = 0; m < MODULE_COUNT; m++) {
        TsFactors *f = &S->factors[b][layer * MODULE_COUNT + m];
        if (S->call == CALL_FULL) {
            plan->out[m] = f->f[ts_new_slot(S, b)];
        } else {
            plan->mode[m] = MODULE_SUPPLY;
            if (S->count[b] == 1) {
                plan->out[m] = f->f[0];
            } else {
                ts_forecast(S, s->ops, f, S->count[b], S->call_k, S->forecast[m], 0);
                plan->out[m] = S->forecast[m];
            }
        }
    }
}

static int ts_layer_end(Strategy *s, const StepInfo *st, int layer, float *tokens, size_t n, BranchTrace *trace) {
    (void)tokens, (void)n, (void)trace;
    TsState *S = s->state;
    if (S->failed) return S->num_layers; /* s->failure says why: the runner fails the run after this call */
    if (S->lite || S->call != CALL_FULL) return layer + 1;
    const int b = st->branch, derive = st->step > S->warmup - 2;
    int count = S->count[b];
    for (int m = 0; m < MODULE_COUNT; m++)
        count = ts_update(S, s->ops, &S->factors[b][layer * MODULE_COUNT + m], S->count[b], derive);
    if (layer == S->num_layers - 1) S->count[b] = count;
    return layer + 1;
}

/* ---- lite mode: the block-stack residual --------------------------------------------------------------------- */

static void ts_blocks_reuse(Strategy *s, const StepInfo *st, float *tokens, size_t n) {
    (void)n;
    TsState *S = s->state;
    ts_forecast(S, s->ops, &S->factors[st->branch][0], S->count[st->branch], S->call_k, tokens, 1);
}

static void ts_blocks_end(Strategy *s, const StepInfo *st, const float *tokens_out, size_t n) {
    (void)n;
    TsState *S = s->state;
    if (S->failed || !S->lite || S->call != CALL_FULL) return;
    const int b = st->branch;
    TsFactors *f = &S->factors[b][0];
    float *r = f->f[ts_new_slot(S, b)];
    s->ops->axpby(s->ops->ctx, r, 1.0f, tokens_out, -1.0f, r, S->n); /* exact: R = out - in */
    S->count[b] = ts_update(S, s->ops, f, S->count[b], st->step > 1);
}

/* ---- bookkeeping ---------------------------------------------------------------------------------------------- */

static size_t ts_bytes_held(const Strategy *s) {
    const TsState *S = s->state;
    size_t buffers = 0;
    for (int b = 0; b < BRANCH_COUNT; b++)
        if (S->factors[b]) buffers += ts_buffers_per_branch(S);
    for (int m = 0; m < MODULE_COUNT; m++) buffers += S->forecast[m] != NULL;
    return buffers * S->n * sizeof(float);
}

static void ts_destroy(Strategy *s) {
    TsState *S = s->state;
    if (!S) return;
    for (int b = 0; b < BRANCH_COUNT; b++) ts_free_branch(S, s->ops, b);
    for (int m = 0; m < MODULE_COUNT; m++) ts_release(s->ops, &S->forecast[m]);
    free(S);
    s->state = NULL;
}

static int ts_clone(Strategy *dst, const Strategy *src, Error *err) {
    const TsState *S = src->state;
    const VecOps *ops = src->ops;
    TsState *D = malloc(sizeof *D);
    if (!D) return error_set(err, "taylorseer: out of memory");
    *D = *S;
    memset(D->factors, 0, sizeof D->factors);
    memset(D->forecast, 0, sizeof D->forecast);
    dst->state = D;
    int ok = 1;
    for (int b = 0; b < BRANCH_COUNT && ok; b++) {
        if (!S->factors[b]) continue;
        ok = ts_alloc_branch(D, ops, b) == 0;
        for (int g = 0; g < S->groups && ok; g++)
            for (int i = 0; i < S->count[b]; i++)
                ops->copy(ops->ctx, D->factors[b][g].f[i], S->factors[b][g].f[i], S->n);
    }
    for (int m = 0; m < MODULE_COUNT && ok; m++)
        if (S->forecast[m] && !D->forecast[m]) ok = (D->forecast[m] = ops->alloc(ops->ctx, S->n)) != NULL;
    if (!ok) {
        ts_destroy(dst);
        return error_set(err, "taylorseer: cannot allocate %.3g GB for a copy of its factors",
                         (double)ts_bytes_held(src) / 1e9);
    }
    return 0;
}

static const char *const ts_params[] = {"interval", "order", "warmup", "lite", "defaults", NULL};

static int ts_create(Strategy *s, const StrategyParams *p, const StrategyEnv *env, Error *err) {
    int interval, order, warmup, lite, official;
    if (strategy_param_defaults(p, &official, err)) return -1; /* ours are the official ones */
    if (strategy_param_int(p, "interval", 5, 1, INT_MAX, &interval, err)) return -1;
    if (strategy_param_int(p, "order", 1, 0, TS_MAX_ORDER, &order, err)) return -1;
    if (strategy_param_int(p, "warmup", 1, 1, INT_MAX, &warmup, err)) return -1; /* step 0 is always full */
    if (strategy_param_int(p, "lite", 0, 0, 1, &lite, err)) return -1;
    if (!lite && env->num_layers < 1) return error_set(err, "taylorseer: the model has no layers");
    TsState *S = calloc(1, sizeof *S);
    if (!S) return error_set(err, "taylorseer: out of memory");
    S->interval = interval, S->order = order, S->warmup = warmup, S->lite = lite;
    S->num_layers = env->num_layers;
    S->groups = lite ? 1 : env->num_layers * MODULE_COUNT;
    S->n = env->tokens_numel;
    S->decided_step = -1;
    s->state = S;
    s->destroy = ts_destroy;
    s->blocks_begin = ts_blocks_begin;
    s->layer_end = ts_layer_end;
    s->blocks_end = ts_blocks_end;
    s->bytes_held = ts_bytes_held;
    s->clone = ts_clone;
    if (lite) s->blocks_reuse = ts_blocks_reuse;
    else s->module_plan = ts_module_plan;
    snprintf(s->spec, sizeof s->spec, "taylorseer:interval=%d,order=%d,warmup=%d,lite=%d", interval, order, warmup,
             lite);
    return 0;
}

STRATEGY_REGISTER(strategy_taylorseer_info, 80) = {
    .name = "taylorseer",
    .summary = "forecast every module's output (lite: the block-stack residual) by its Taylor series; full every N steps",
    .params_help = "interval  N >= 1: a full step every N steps after the warm-up (default 5, official)\n"
                   "order     O in [0, 4]: Taylor order, O = 0 reuses the last full step's features (default 1, official)\n"
                   "warmup    W >= 1: steps 0..W-1 are full (official first_enhance, default 1)\n"
                   "lite      0 | 1: 1 forecasts only the block-stack residual (cache-dit's single-tensor\n"
                   "          TaylorSeer): memory branches*(O+1) tokens tensors instead of\n"
                   "          branches*layers*3*(O+1)+3 (about 72 GB fp32 for Wan2.1-1.3B at 480p, O = 1) (default 0)\n"
                   "defaults  ours | official: the same here (the official Wan2.1 settings)\n"
                   "          (no thresh: the schedule is fixed, not data-driven)",
    .param_names = ts_params,
    .create = ts_create,
};
