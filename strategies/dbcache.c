/* dbcache — cache-dit's Dual Block Cache (DBCache): decide after the first Fn blocks whether the middle blocks
 * [Fn, N-Bn) can be replaced by their residual from the last computed step, then run the last Bn blocks.
 * Official code: vipshop/cache-dit f86744a (strategies-2.md §3.2), src/cache_dit/caching/:
 * cache_blocks/pattern_base.py `forward`, cache_contexts/cache_manager.py `can_cache` and `similarity`,
 * cache_context.py `mark_step_begin`, `add_cached_step`, `add_residual_diff`, cache_config.py (defaults),
 * calibrators/taylorseer.py (the TaylorSeer calibrator). The same engine serves fbcache (strategies/fbcache.c,
 * ParaAttention's First-Block-Cache = F1B0 with its own two differences, strategies/dbcache.h).
 *
 * Per model call of branch b at step t (h_l: tokens entering layer l; N layers; τ = thresh):
 *   after layer Fn-1:  r = h_Fn - h_0; decide (can_cache):
 *     compute when  t in range(0, warmup, warmup_interval)                          (warm-up)
 *               or  cached_steps[b] >= max_cached >= 0                               (cap on cached steps)
 *               or  continuous[b] >= max_continuous >= 0, which also sets continuous[b] = 0
 *               or  acc[b] >= max_accumulated > 0                                    (whole-run diff budget)
 *               or  τ <= 0, or no reference yet
 *     otherwise     d = mean|ref[b] - r| / mean|ref[b]| (with separate_cfg_diff = 0 the uncond call takes the
 *                   cond call's d of this step when it measured one), acc[b] += d when d > 0;
 *                   cache when d < τ, and always when τ >= 1 (no diff measured then)
 *   hit:   h = h_Fn + R_M[b] (or the TaylorSeer forecast), jump to layer N-Bn; add_cached_step's counter:
 *          continuous[b] += 1 on the first cached step ever, += 2 when the previous cached step is t-1 and
 *          continuous[b] = 0, += 1 when it is t-1 otherwise, unchanged after a gap; never reset by a compute
 *   miss:  ref[b] = r (so the reference is always the LAST COMPUTED step's), run the middle, then
 *          R_M[b] = h_{N-Bn} - h_Fn (or feed it to the TaylorSeer), run the last Bn blocks.
 * The head always runs. Branches keep separate state (cache-dit's enable_separate_cfg, which its Wan adapter sets).
 *
 * TaylorSeer calibrator (calibrators/taylorseer.py TaylorSeerState, order k): per branch the derivatives
 * D_0..D_k of R_M at the last computed step. Its step counter c advances once per call of the branch (before the
 * decision), but only once the state exists: cache-dit creates it at its first update, so c = t-1 at step t when
 * the first update was at step 0; ParaAttention creates it with the context, so c = t (paraattention = 1).
 *   update(Y):    D'_0 = Y; D'_{i+1} = (D'_i - D_i) / (c - c_last) while D_i exists and c > 1; c_last = c
 *   forecast:     sum_i D_i (c - c_last)^i / i!
 *
 * Choices where the official code has no counterpart here:
 *   - The step is StepInfo.step and the branch StepInfo.branch. cache-dit counts transformer calls instead
 *     (executed_steps, odd calls are the uncond branch), which is the same under the runner's cond-then-uncond
 *     order with guidance on; with guidance off (one call per step) it would pair steps as branches, which is
 *     cache-dit's behaviour for a pipeline without CFG under its Wan adapter and not worth copying.
 *   - Step 0 of a branch starts afresh (references, residuals, counters, calibrator): cache-dit refreshes its
 *     context once num_inference_steps calls are done, and a run is one inference here.
 *   - Trace: signal = d (NAN when no diff was measured: warm-up, a cap, τ <= 0, τ >= 1, no reference),
 *     threshold = τ, accumulator = acc[b] after the call (cache-dit's accumulated_residual_diff, the quantity
 *     max_accumulated caps), k = continuous[b] after the call (dbcache; NAN for fbcache, which has no such cap).
 *   - Not implemented: steps_computation_mask / policy (SCM), important_condition_threshold, downsample_factor,
 *     the hidden-state L1 variant, FoCa/DMD calibrators, cfg_compute_first (the uncond call never runs first here).
 *   - When a buffer cannot be allocated the run fails with a message (Strategy.failure). */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strategies/dbcache.h"

typedef struct {
    float *bank[2][DBCACHE_MAX_ORDER + 1]; /* derivatives: bank[cur] the latest update's, bank[!cur] the one before */
    int valid[2];                          /* how many leading derivatives of each bank exist */
    int cur;
    int exists;                            /* cache-dit creates the state at its first update */
    int step, last_step;                   /* current_step, last_non_approximated_step */
} Taylor;

typedef struct {
    float *ref;             /* Fn residual of the last computed call */
    float *resid;           /* R_M of the last computed call (no calibrator) */
    int have_ref, have_resid;
    double ref_norm;        /* mean|ref|, NAN until a decision needs it (one reduction per reference, not per call) */
    Taylor ts;
    int cached_count, last_cached, continuous;
    double acc;             /* sum of the positive diffs measured */
} Branch_;

typedef struct {
    DbcacheConfig c;
    int num_layers;
    size_t n;               /* tokens numel the buffers hold; 0 before the first call */
    int broken;             /* a buffer could not be allocated: s->failure says so, the runner fails the run */
    float *h;               /* scratch: h_0 until layer Fn-1, then h_Fn */
    Branch_ br[BRANCH_COUNT];
    /* The call in progress. */
    Branch b;
    int step, miss;
    /* The cond call's diff of step cond_diff_step, for separate_cfg_diff = 0. */
    int cond_diff_step;
    double cond_diff;
} Db;

/* ------------------------------------------------------------------------------------------------ buffers */

static void release(const VecOps *ops, float **p) {
    if (*p) ops->release(ops->ctx, *p);
    *p = NULL;
}

static int ensure(const VecOps *ops, float **p, size_t n) {
    if (!*p) *p = ops->alloc(ops->ctx, n);
    return *p ? 0 : -1;
}

static void free_buffers(Strategy *s) {
    Db *D = s->state;
    release(s->ops, &D->h);
    for (int b = 0; b < BRANCH_COUNT; b++) {
        release(s->ops, &D->br[b].ref);
        release(s->ops, &D->br[b].resid);
        for (int k = 0; k < 2; k++)
            for (int i = 0; i <= DBCACHE_MAX_ORDER; i++) release(s->ops, &D->br[b].ts.bank[k][i]);
    }
}

static void branch_reset(Branch_ *B) {
    B->have_ref = B->have_resid = 0;
    B->ref_norm = NAN;
    B->cached_count = 0, B->last_cached = -1, B->continuous = 0;
    B->acc = 0.0;
    Taylor *T = &B->ts;
    T->valid[0] = T->valid[1] = 0;
    T->cur = 0;
    T->exists = 0;
    T->step = T->last_step = -1;
}

/* ------------------------------------------------------------------------------------------------ TaylorSeer */

static void taylor_mark_step(Taylor *T, int eager) {
    if (T->exists || eager) T->step++;
}

static int taylor_update(const VecOps *ops, Taylor *T, const float *y, int order, size_t n) {
    T->exists = 1;
    T->cur ^= 1; /* the previous "current" bank becomes "prev"; its old prev bank is overwritten */
    float **cur = T->bank[T->cur], **prev = T->bank[T->cur ^ 1];
    if (ensure(ops, &cur[0], n)) return -1;
    ops->copy(ops->ctx, cur[0], y, n);
    int valid = 1;
    const double window = T->step - T->last_step;
    for (int i = 0; i < order; i++) {
        if (i >= T->valid[T->cur ^ 1] || T->step <= 1) break;
        if (ensure(ops, &cur[i + 1], n)) return -1;
        ops->axpby(ops->ctx, cur[i + 1], (float)(1.0 / window), cur[i], (float)(-1.0 / window), prev[i], n);
        valid++;
    }
    T->valid[T->cur] = valid;
    T->last_step = T->step;
    return 0;
}

/* tokens += sum_i D_i e^i / i! (added term by term into the tokens: one pass fewer than forming the sum first). */
static void taylor_apply(const VecOps *ops, const Taylor *T, float *tokens, size_t n) {
    float *const *d = T->bank[T->cur];
    const double elapsed = T->step - T->last_step;
    ops->add(ops->ctx, tokens, d[0], tokens, n);
    double coef = 1.0;
    for (int i = 1; i < T->valid[T->cur]; i++) {
        coef *= elapsed / i;
        ops->axpby(ops->ctx, tokens, 1.0f, tokens, (float)coef, d[i], n);
    }
}

/* ------------------------------------------------------------------------------------------------ hooks */

/* A buffer could not be allocated: the runner fails the run with this message (strategy.h), and the hooks do
 * nothing more in the meantime (every layer runs). */
static void fail_alloc(Strategy *s, Db *D) {
    D->broken = 1;
    snprintf(s->failure, sizeof s->failure, "cannot allocate a %zu-float cache buffer", D->n);
}

static int in_warmup(const DbcacheConfig *c, int step) {
    return step < c->warmup && step % c->warmup_interval == 0;
}

static void trace_fill(const Db *D, const Branch_ *B, double diff, BranchTrace *trace) {
    trace->signal = (float)diff;
    trace->threshold = (float)D->c.thresh;
    trace->accumulator = (float)B->acc;
    trace->k = D->c.paraattention ? NAN : (float)B->continuous;
}

static int db_blocks_begin(Strategy *s, const StepInfo *st, const BlockInputs *in, BranchTrace *trace) {
    Db *D = s->state;
    const VecOps *ops = s->ops;
    D->b = st->branch;
    D->step = st->step;
    D->miss = 0;
    if (D->n != in->n_tokens) { /* first call, or another token count: start afresh */
        free_buffers(s);
        for (int b = 0; b < BRANCH_COUNT; b++) branch_reset(&D->br[b]);
        D->n = in->n_tokens;
        D->broken = 0;
        if (ensure(ops, &D->h, D->n)) fail_alloc(s, D);
    }
    Branch_ *B = &D->br[D->b];
    if (st->step == 0) branch_reset(B);
    if (!D->broken) ops->copy(ops->ctx, D->h, in->tokens, D->n);
    trace_fill(D, B, NAN, trace);
    return STRATEGY_COMPUTE;
}

/* cache-dit's can_cache (or ParaAttention's get_can_use_cache) on r = h - ref; *diff the diff measured, NAN if
 * none. */
static int can_cache(Db *D, Branch_ *B, const VecOps *ops, const float *r, double *diff) {
    const DbcacheConfig *c = &D->c;
    *diff = NAN;
    if (in_warmup(c, D->step)) return 0;
    if (c->max_cached >= 0 && B->cached_count >= c->max_cached) return 0;
    if (c->max_continuous >= 0 && B->continuous >= c->max_continuous) {
        B->continuous = 0;
        return 0;
    }
    if (c->max_accumulated > 0.0 && B->acc >= c->max_accumulated) return 0;
    if (c->thresh <= 0.0 || !B->have_ref) return 0;
    if (c->thresh >= 1.0 && !c->paraattention) return 1;
    double d;
    if (!c->separate_cfg_diff && D->b == BRANCH_UNCOND && D->cond_diff_step == D->step) {
        d = D->cond_diff;
    } else {
        if (isnan(B->ref_norm)) B->ref_norm = ops->mean_abs(ops->ctx, B->ref, D->n);
        d = ops->mean_abs_diff(ops->ctx, B->ref, r, D->n) / B->ref_norm; /* norm 0: inf or nan, never below τ */
    }
    if (D->b == BRANCH_COND) D->cond_diff_step = D->step, D->cond_diff = d;
    if (d > 0.0) B->acc += d;
    *diff = d;
    return d < c->thresh;
}

static void add_cached_step(Branch_ *B, int step) {
    if (B->cached_count == 0) B->continuous += 1;
    else if (step - B->last_cached == 1) B->continuous += B->continuous == 0 ? 2 : 1;
    B->cached_count++;
    B->last_cached = step;
}

/* R_M = tokens - h (h holds h_Fn), into the residual buffer or the calibrator. */
static int store_middle_residual(Db *D, Branch_ *B, const VecOps *ops, const float *tokens) {
    if (!D->c.taylorseer) {
        if (ensure(ops, &B->resid, D->n)) return -1;
        ops->sub(ops->ctx, B->resid, tokens, D->h, D->n);
        B->have_resid = 1;
        return 0;
    }
    ops->sub(ops->ctx, D->h, tokens, D->h, D->n);
    if (taylor_update(ops, &B->ts, D->h, D->c.taylorseer_order, D->n)) return -1;
    B->have_resid = 1;
    return 0;
}

static int db_layer_end(Strategy *s, const StepInfo *st, int layer, float *tokens, size_t n, BranchTrace *trace) {
    Db *D = s->state;
    const VecOps *ops = s->ops;
    const int F = D->c.fn, M_end = D->num_layers - D->c.bn;
    (void)st;
    if (D->broken || n != D->n) return layer + 1;
    Branch_ *B = &D->br[D->b];
    if (layer == F - 1) {
        taylor_mark_step(&B->ts, D->c.paraattention);
        ops->sub(ops->ctx, D->h, tokens, D->h, n); /* h = r = h_Fn - h_0 */
        double diff;
        int hit = can_cache(D, B, ops, D->h, &diff) && B->have_resid;
        if (hit) {
            add_cached_step(B, D->step);
            if (D->c.taylorseer) taylor_apply(ops, &B->ts, tokens, n);
            else ops->add(ops->ctx, tokens, B->resid, tokens, n);
            trace->computed = 0;
            trace_fill(D, B, diff, trace);
            return M_end;
        }
        /* The new reference is r: swap it in; the old reference's buffer becomes the scratch h = h_Fn. */
        if (ensure(ops, &B->ref, n)) {
            fail_alloc(s, D);
            return layer + 1;
        }
        float *old = B->ref;
        B->ref = D->h, D->h = old;
        B->have_ref = 1;
        B->ref_norm = NAN;
        ops->copy(ops->ctx, D->h, tokens, n);
        D->miss = 1;
        trace_fill(D, B, diff, trace);
    }
    if (D->miss && layer == M_end - 1) {
        D->miss = 0;
        if (store_middle_residual(D, B, ops, tokens)) fail_alloc(s, D);
    }
    return layer + 1;
}

static size_t db_bytes_held(const Strategy *s) {
    const Db *D = s->state;
    size_t tensors = D->h != NULL;
    for (int b = 0; b < BRANCH_COUNT; b++) {
        const Branch_ *B = &D->br[b];
        tensors += (B->ref != NULL) + (B->resid != NULL);
        for (int k = 0; k < 2; k++)
            for (int i = 0; i <= DBCACHE_MAX_ORDER; i++) tensors += B->ts.bank[k][i] != NULL;
    }
    return tensors * D->n * sizeof(float);
}

static void db_destroy(Strategy *s) {
    if (!s->state) return;
    free_buffers(s);
    free(s->state);
    s->state = NULL;
}

static int db_clone(Strategy *dst, const Strategy *src, Error *err) {
    const Db *S = src->state;
    Db *D = malloc(sizeof *D);
    if (!D) return error_set(err, "%s: out of memory", src->spec);
    *D = *S; /* settings and counters; every buffer pointer is replaced below */
    dst->state = D;
    const VecOps *ops = src->ops;
    int fail = 0;
    D->h = strategy_copy_buffer(ops, S->h, S->n, &fail);
    for (int b = 0; b < BRANCH_COUNT; b++) {
        D->br[b].ref = strategy_copy_buffer(ops, S->br[b].ref, S->n, &fail);
        D->br[b].resid = strategy_copy_buffer(ops, S->br[b].resid, S->n, &fail);
        for (int k = 0; k < 2; k++)
            for (int i = 0; i <= DBCACHE_MAX_ORDER; i++)
                D->br[b].ts.bank[k][i] = strategy_copy_buffer(ops, S->br[b].ts.bank[k][i], S->n, &fail);
    }
    if (fail) {
        db_destroy(dst);
        return error_set(err, "%s: out of memory copying its %zu-float buffers", src->spec, S->n);
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------------ setup */

int dbcache_setup(Strategy *s, const DbcacheConfig *cfg, const StrategyEnv *env, Error *err) {
    Db *D = calloc(1, sizeof *D);
    if (!D) return error_set(err, "%s: out of memory", s->info ? s->info->name : "dbcache");
    D->c = *cfg;
    D->num_layers = env->num_layers;
    D->cond_diff_step = -1;
    for (int b = 0; b < BRANCH_COUNT; b++) branch_reset(&D->br[b]);
    s->state = D;
    s->blocks_begin = db_blocks_begin;
    s->layer_end = db_layer_end;
    s->bytes_held = db_bytes_held;
    s->clone = db_clone;
    s->destroy = db_destroy;
    return 0;
}

int dbcache_parse_common(const StrategyParams *p, double thresh_default, int warmup_default, int order_default,
                         DbcacheConfig *cfg, Error *err) {
    if (strategy_param_double(p, "thresh", thresh_default, 0.0, INFINITY, &cfg->thresh, err)) return -1;
    if (strategy_param_int(p, "warmup", warmup_default, 0, INT_MAX, &cfg->warmup, err)) return -1;
    if (strategy_param_int(p, "taylorseer", 0, 0, 1, &cfg->taylorseer, err)) return -1;
    if (strategy_param_int(p, "taylorseer_order", order_default, 1, DBCACHE_MAX_ORDER, &cfg->taylorseer_order, err))
        return -1;
    return 0;
}

static const char *const db_params[] = {"thresh", "warmup", "fn", "bn", "warmup_interval", "max_cached",
                                        "max_continuous", "max_accumulated", "separate_cfg_diff", "taylorseer",
                                        "taylorseer_order", NULL};

static int db_create(Strategy *s, const StrategyParams *p, const StrategyEnv *env, Error *err) {
    DbcacheConfig c = {0};
    if (dbcache_parse_common(p, 0.08, 8, 1, &c, err)) return -1;
    const int N = env->num_layers;
    if (strategy_param_int(p, "bn", 0, 0, INT_MAX, &c.bn, err)) return -1;
    /* cache-dit's Fn = 8; a model with fewer layers gets all it has left after Bn (tiny: 4, which caches
     * nothing: give fn there). */
    int fn_default = 8 < N - c.bn ? 8 : N - c.bn;
    if (strategy_param_int(p, "fn", fn_default < 1 ? 1 : fn_default, 1, INT_MAX, &c.fn, err)) return -1;
    if (c.fn + c.bn > N)
        return error_set(err, "dbcache: fn + bn = %d + %d exceeds the %d layers of model %s", c.fn, c.bn, N,
                         env->model_name ? env->model_name : "(unnamed)");
    if (strategy_param_int(p, "warmup_interval", 1, 1, INT_MAX, &c.warmup_interval, err)) return -1;
    if (strategy_param_int(p, "max_cached", -1, -1, INT_MAX, &c.max_cached, err)) return -1;
    if (strategy_param_int(p, "max_continuous", -1, -1, INT_MAX, &c.max_continuous, err)) return -1;
    if (strategy_param_double(p, "max_accumulated", 0.0, 0.0, INFINITY, &c.max_accumulated, err)) return -1;
    if (strategy_param_int(p, "separate_cfg_diff", 1, 0, 1, &c.separate_cfg_diff, err)) return -1;
    if (dbcache_setup(s, &c, env, err)) return -1;
    char th[32], ma[32];
    strategy_format_double(c.thresh, th, sizeof th);
    strategy_format_double(c.max_accumulated, ma, sizeof ma);
    snprintf(s->spec, sizeof s->spec,
             "dbcache:thresh=%s,warmup=%d,fn=%d,bn=%d,warmup_interval=%d,max_cached=%d,max_continuous=%d,"
             "max_accumulated=%s,separate_cfg_diff=%d,taylorseer=%d,taylorseer_order=%d",
             th, c.warmup, c.fn, c.bn, c.warmup_interval, c.max_cached, c.max_continuous, ma, c.separate_cfg_diff,
             c.taylorseer, c.taylorseer_order);
    return 0;
}

STRATEGY_REGISTER(strategy_dbcache_info, 100) = {
    .name = "dbcache",
    .summary = "cache-dit DBCache: after the first fn blocks, reuse the middle blocks' residual while the fn-block "
               "residual stays within thresh of the last computed step's",
    .params_help =
        "thresh            residual_diff_threshold >= 0: cache while the rel-L1 diff of the fn-block residual to\n"
        "                  the last computed step's is below it; 0 never caches, >= 1 always caches (default 0.08)\n"
        "warmup            max_warmup_steps >= 0: steps range(0, warmup, warmup_interval) compute (default 8)\n"
        "fn                Fn_compute_blocks >= 1, always computed first (default 8; fewer when the model has\n"
        "                  fewer than 8 + bn layers: then all of them, which caches nothing)\n"
        "bn                Bn_compute_blocks >= 0, always computed last; fn + bn <= layers (default 0)\n"
        "warmup_interval   >= 1 (default 1)\n"
        "max_cached        max_cached_steps per branch, -1 no cap (default -1)\n"
        "max_continuous    max_continuous_cached_steps per branch, -1 no cap; cache-dit's counter quirk kept\n"
        "                  (default -1)\n"
        "max_accumulated   max_accumulated_residual_diff_threshold: no caching once the branch's summed diffs\n"
        "                  reach it, 0 no cap (default 0)\n"
        "separate_cfg_diff cfg_diff_compute_separate 0|1: 0 lets the uncond call reuse the cond call's diff\n"
        "                  (default 1)\n"
        "taylorseer        0|1: forecast the middle residual with cache-dit's TaylorSeer calibrator (default 0)\n"
        "taylorseer_order  1..4 (default 1, cache-dit's taylorseer_order)",
    .param_names = db_params,
    .create = db_create,
};
