/* mycache: a caching strategy plug-in for cachebench, written by `cachebench new-strategy mycache`.
 *
 * Build and try it (PREFIX: where `make install PREFIX=...` put cachebench; in a cachebench checkout use -Iinclude):
 *     cc -O2 -shared -fPIC -I$PREFIX/include mycache.c -o mycache.so
 *     cachebench sweep --plugin ./mycache.so --prompts prompts.txt --steps 20 --out sweep \
 *         --strategy 'mycache:thresh=0.05|0.1|0.2' --strategy 'easycache:thresh=0.05|0.1|0.2'
 *     cachebench compare sweep --strategy mycache --against easycache
 *
 * The idea as written (replace it with yours): reuse the model's last transformation while the model input has
 * changed little. Per branch (cond / uncond):
 *     change_t = mean|x_t - x_{t-1}| / mean|x_{t-1}|         (relative L1 change of the input since the last call)
 *     acc     += change_t;  reuse while acc < thresh, else compute and reset acc to 0
 *     reuse:   y_t = x_t + Δ,   Δ = y_c - x_c of the branch's last computed call c
 * The first `warmup` steps and the last step always compute. Parameters: thresh (default 0.1), warmup (default 2).
 *
 * Rules of the interface (include/cachebench/strategy.h has the details):
 *   - Buffers (x, y) live in backend memory, the GPU under --backend cuda: read and write them only through the
 *     VecOps table s->ops, never by dereferencing them.
 *   - Computing is always correct, only slower: when in doubt (no cached Δ yet, a failed allocation), compute.
 *   - create() writes the canonical spec with every parameter into s->spec, so that a run records exactly what ran.
 *   - The trace (signal, accumulator, threshold, k) is recorded per step and plotted; NAN where it has no meaning. */
#include <cachebench/strategy.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    float *prev_x;      /* [n] the branch's last input; NULL until the first call */
    float *delta;       /* [n] y - x of the last computed call; NULL until the first model_end */
    size_t n;
    double acc;
} Branchmycache;

typedef struct {
    double thresh;
    int warmup;
    Branchmycache br[BRANCH_COUNT];
} Statemycache;

static int mycache_model_begin(Strategy *s, const StepInfo *st, const float *x, size_t n, BranchTrace *trace) {
    Statemycache *S = s->state;
    Branchmycache *b = &S->br[st->branch];
    const VecOps *ops = s->ops;
    if (b->n != n) { /* first call, or the geometry changed: start this branch afresh */
        ops->release(ops->ctx, b->prev_x);
        ops->release(ops->ctx, b->delta);
        b->prev_x = ops->alloc(ops->ctx, n);
        b->delta = NULL;
        b->n = n;
        b->acc = 0;
        if (b->prev_x) ops->copy(ops->ctx, b->prev_x, x, n);
        trace->computed = 1;
        return STRATEGY_COMPUTE;
    }
    double ref = b->prev_x ? ops->mean_abs(ops->ctx, b->prev_x, n) : 0;
    double change = ref > 0 ? ops->mean_abs_diff(ops->ctx, x, b->prev_x, n) / ref : INFINITY;
    if (b->prev_x) ops->copy(ops->ctx, b->prev_x, x, n);
    int must = st->step < S->warmup || st->step == st->num_steps - 1 || !b->delta;
    b->acc += change;
    int compute = must || b->acc >= S->thresh;
    if (compute) b->acc = 0;
    trace->computed = compute;
    trace->signal = (float)change;
    trace->accumulator = (float)b->acc;
    trace->threshold = (float)S->thresh;
    trace->k = NAN;
    return compute ? STRATEGY_COMPUTE : STRATEGY_REUSE;
}

static void mycache_model_reuse(Strategy *s, const StepInfo *st, const float *x, float *y, size_t n) {
    Statemycache *S = s->state;
    s->ops->add(s->ops->ctx, y, x, S->br[st->branch].delta, n);
}

static void mycache_model_end(Strategy *s, const StepInfo *st, const float *x, const float *y, size_t n) {
    Statemycache *S = s->state;
    Branchmycache *b = &S->br[st->branch];
    if (!b->delta) b->delta = s->ops->alloc(s->ops->ctx, n);
    if (b->delta) s->ops->sub(s->ops->ctx, b->delta, y, x, n);
}

static void mycache_destroy(Strategy *s) {
    Statemycache *S = s->state;
    if (!S) return;
    for (int i = 0; i < BRANCH_COUNT; i++) {
        s->ops->release(s->ops->ctx, S->br[i].prev_x);
        s->ops->release(s->ops->ctx, S->br[i].delta);
    }
    free(S);
    s->state = NULL;
}

/* A copy with its whole state (a sweep that shares computation between settings forks trajectories with it). */
static int mycache_clone(Strategy *dst, const Strategy *src, Error *err) {
    const Statemycache *S = src->state;
    const VecOps *ops = src->ops;
    Statemycache *D = malloc(sizeof *D);
    if (!D) return error_set(err, "mycache: out of memory");
    *D = *S;
    dst->state = D;
    int ok = 1;
    for (int i = 0; i < BRANCH_COUNT; i++) {
        float **bufs[2] = {&D->br[i].prev_x, &D->br[i].delta};
        for (int j = 0; j < 2; j++) {
            const float *from = *bufs[j];
            *bufs[j] = from ? ops->alloc(ops->ctx, D->br[i].n) : NULL;
            if (from && *bufs[j]) ops->copy(ops->ctx, *bufs[j], from, D->br[i].n);
            ok &= !from || *bufs[j] != NULL;
        }
    }
    if (!ok) {
        mycache_destroy(dst);
        return error_set(err, "mycache: out of memory for a copy of the cache");
    }
    return 0;
}

static int mycache_create(Strategy *s, const StrategyParams *p, const StrategyEnv *env, Error *err) {
    (void)env; /* env: num_steps, model sizes, the weights' path (for data files beside them) */
    Statemycache *S = calloc(1, sizeof *S);
    if (!S) return error_set(err, "mycache: out of memory");
    s->state = S;
    s->destroy = mycache_destroy; /* set first: a failed create is cleaned up through it */
    if (strategy_param_double(p, "thresh", 0.1, 0.0, 1e6, &S->thresh, err) ||
        strategy_param_int(p, "warmup", 2, 0, 100000, &S->warmup, err))
        return -1;
    s->model_begin = mycache_model_begin;
    s->model_reuse = mycache_model_reuse;
    s->model_end = mycache_model_end;
    s->clone = mycache_clone;
    char t[32];
    strategy_format_double(S->thresh, t, sizeof t);
    snprintf(s->spec, sizeof s->spec, "mycache:thresh=%s,warmup=%d", t, S->warmup);
    return 0;
}

static const char *const mycache_params[] = {"thresh", "warmup", NULL};

static const StrategyInfo mycache_info = {
    .name = "mycache",
    .summary = "reuse the last transformation while the input changes little (plug-in)",
    .params_help = "thresh  accumulated relative input change that forces a compute, >= 0 (default 0.1)\n"
                   "warmup  leading steps always computed, >= 0 (default 2)",
    .param_names = mycache_params,
    .create = mycache_create,
};

CACHEBENCH_STRATEGY_PLUGIN(mycache_info)
