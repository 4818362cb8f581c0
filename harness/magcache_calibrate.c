#include "harness/magcache_calibrate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    Engine *engine;
    const VecOps *ops;
    MagTable *table;
    size_t dim, t_n;
    float *dev[BRANCH_COUNT];   /* block-stack input of the call, then its residual (engine memory) */
    float *prev[BRANCH_COUNT];  /* the branch's previous residual (host) */
    float *cur;                 /* this call's residual (host) */
    int have_prev[BRANCH_COUNT];
} MagObserver;

void magcache_residual_stats(const float *r, const float *p, size_t rows, size_t dim, double *ratio, double *std,
                             double *cos_dis) {
    const double eps = 1e-8;
    double sum = 0.0, sum_cos = 0.0;
    double *q = malloc(rows * sizeof *q);
    for (size_t i = 0; i < rows; i++) {
        const float *a = r + i * dim, *b = p + i * dim;
        double aa = 0.0, bb = 0.0, ab = 0.0;
        for (size_t j = 0; j < dim; j++) {
            aa += (double)a[j] * a[j];
            bb += (double)b[j] * b[j];
            ab += (double)a[j] * b[j];
        }
        double na = sqrt(aa), nb = sqrt(bb);
        double v = na / nb;
        if (q) q[i] = v;
        sum += v;
        sum_cos += 1.0 - ab / (fmax(na, eps) * fmax(nb, eps));
    }
    double mean = sum / (double)rows, ss = 0.0;
    for (size_t i = 0; q && i < rows; i++) ss += (q[i] - mean) * (q[i] - mean);
    *ratio = mean;
    *std = q && rows > 1 ? sqrt(ss / (double)(rows - 1)) : NAN;
    *cos_dis = sum_cos / (double)rows;
    free(q);
}

static int observe_begin(Strategy *s, const StepInfo *st, const BlockInputs *in, BranchTrace *trace) {
    (void)trace;
    MagObserver *o = s->state;
    int b = st->branch;
    if (o->t_n != in->n_tokens) return STRATEGY_COMPUTE; /* another geometry than the one prepared: not measured */
    if (!o->dev[b]) o->dev[b] = o->ops->alloc(o->ops->ctx, o->t_n);
    if (o->dev[b]) o->ops->copy(o->ops->ctx, o->dev[b], in->tokens, o->t_n);
    return STRATEGY_COMPUTE;
}

static void observe_end(Strategy *s, const StepInfo *st, const float *tokens_out, size_t n) {
    MagObserver *o = s->state;
    int b = st->branch;
    if (n != o->t_n || !o->dev[b]) return;
    if (!o->prev[b]) o->prev[b] = malloc(n * sizeof(float));
    if (!o->cur) o->cur = malloc(n * sizeof(float));
    if (!o->prev[b] || !o->cur) return;
    o->ops->sub(o->ops->ctx, o->dev[b], tokens_out, o->dev[b], n);
    o->engine->download(o->engine, o->cur, o->dev[b], n);
    if (o->have_prev[b] && st->step < o->table->steps)
        magcache_residual_stats(o->cur, o->prev[b], n / o->dim, o->dim, &o->table->ratio[b][st->step],
                                &o->table->std[b][st->step], &o->table->cos_dis[b][st->step]);
    float *t = o->prev[b];
    o->prev[b] = o->cur;
    o->cur = t;
    o->have_prev[b] = 1;
}

static void observer_destroy(Strategy *s) {
    MagObserver *o = s->state;
    if (!o) return;
    for (int b = 0; b < BRANCH_COUNT; b++) {
        if (o->dev[b]) o->ops->release(o->ops->ctx, o->dev[b]);
        free(o->prev[b]);
    }
    free(o->cur);
    free(o);
    s->state = NULL;
}

int magcache_observer_create(Strategy *s, const StrategyEnv *env, Engine *engine, MagTable *table, Error *err) {
    memset(s, 0, sizeof *s);
    if (env->dim < 1 || env->tokens_numel % (size_t)env->dim)
        return error_set(err, "magcache calibration: %zu token values are not rows of dim %d", env->tokens_numel,
                         env->dim);
    MagObserver *o = calloc(1, sizeof *o);
    if (!o) return error_set(err, "out of memory");
    o->engine = engine;
    o->ops = env->ops;
    o->table = table;
    o->dim = (size_t)env->dim;
    o->t_n = env->tokens_numel;
    s->state = o;
    s->ops = env->ops;
    snprintf(s->spec, sizeof s->spec, "none");
    s->blocks_begin = observe_begin;
    s->blocks_end = observe_end;
    s->destroy = observer_destroy;
    return 0;
}
