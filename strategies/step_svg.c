/* easycache+svg, teacache+svg — a step strategy (EasyCache or TeaCache) decides which steps (or block stacks) are
 * computed, Sparse VideoGen runs the attention of the computed ones (DESIGN §4: an attention strategy under a step
 * strategy). No algorithm of its own: it creates the two strategies (strategies/easycache.c or teacache.c, and
 * strategies/svg.c, where the formulas and defaults are) and forwards each runner hook to the one that has it.
 *
 * Parameters (spec "easycache+svg:thresh=0.05,warmup=10,svg_version=5efea72,sparsity=0.75,...",
 * "teacache+svg:thresh=0.08,variant=e,warmup=1,cutoff=1,svg_version=5efea72,..."): the step strategy's parameters and
 * svg's svg_version, sparsity, dense_steps, dense_layers, rows, row_seed, band, each routed to its strategy with that
 * strategy's default and range. Step counts (warmup, dense_steps) are both counted from step 0 of the whole trajectory; a reused step runs
 * no attention at all (a TeaCache-reused block stack runs no block, hence no attention either).
 * Canonical spec: "<step>+svg:" + the step strategy's parameters + "," + svg's, as each strategy writes them. */
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

#include "strategies/strategy.h"

extern const StrategyInfo strategy_easycache_info, strategy_teacache_info, strategy_svg_info;

typedef struct {
    Strategy step;      /* easycache: model_* (and blocks_*) hooks */
    Strategy attn;      /* svg: attention_plan */
} Composite;

static Strategy *step_of(Strategy *s) { return &((Composite *)s->state)->step; }
static Strategy *attn_of(Strategy *s) { return &((Composite *)s->state)->attn; }

static int fwd_model_begin(Strategy *s, const StepInfo *st, const float *x, size_t n, BranchTrace *trace) {
    return step_of(s)->model_begin(step_of(s), st, x, n, trace);
}
static void fwd_model_reuse(Strategy *s, const StepInfo *st, const float *x, float *y, size_t n) {
    step_of(s)->model_reuse(step_of(s), st, x, y, n);
}
static void fwd_model_end(Strategy *s, const StepInfo *st, const float *x, const float *y, size_t n) {
    step_of(s)->model_end(step_of(s), st, x, y, n);
}
static int fwd_blocks_begin(Strategy *s, const StepInfo *st, const BlockInputs *in, BranchTrace *trace) {
    return step_of(s)->blocks_begin(step_of(s), st, in, trace);
}
static void fwd_blocks_reuse(Strategy *s, const StepInfo *st, float *tokens, size_t n) {
    step_of(s)->blocks_reuse(step_of(s), st, tokens, n);
}
static void fwd_blocks_end(Strategy *s, const StepInfo *st, const float *tokens_out, size_t n) {
    step_of(s)->blocks_end(step_of(s), st, tokens_out, n);
}
static void fwd_attention_plan(Strategy *s, const StepInfo *st, int layer, AttentionPlan *plan) {
    attn_of(s)->attention_plan(attn_of(s), st, layer, plan);
}

static size_t composite_bytes_held(const Strategy *s) {
    const Composite *c = s->state;
    return strategy_bytes_held(&c->step) + strategy_bytes_held(&c->attn);
}

static void composite_destroy(Strategy *s) {
    Composite *c = s->state;
    if (!c) return;
    strategy_destroy(&c->step);
    strategy_destroy(&c->attn);
    free(c);
    s->state = NULL;
}

static int composite_clone(Strategy *dst, const Strategy *src, Error *err) {
    const Composite *c = src->state;
    Composite *d = calloc(1, sizeof *d);
    if (!d) return error_set(err, "%s: out of memory", src->info->name);
    dst->state = d;
    if (strategy_clone(&d->step, &c->step, err) || strategy_clone(&d->attn, &c->attn, err)) {
        composite_destroy(dst);
        return -1;
    }
    return 0;
}

static int is_param_of(const StrategyInfo *info, const char *key) {
    for (int i = 0; info->param_names[i]; i++)
        if (strcmp(info->param_names[i], key) == 0) return 1;
    return 0;
}

/* Creates `sub` from the parameters of p that belong to info, the way strategy_create would. */
static int create_part(Strategy *sub, const StrategyInfo *info, const StrategyParams *p, const StrategyEnv *env,
                       Error *err) {
    StrategyParams q;
    memset(&q, 0, sizeof q);
    snprintf(q.name, sizeof q.name, "%s", info->name);
    for (int i = 0; i < p->count; i++) {
        if (!is_param_of(info, p->keys[i])) continue;
        memcpy(q.keys[q.count], p->keys[i], sizeof q.keys[0]);
        memcpy(q.values[q.count], p->values[i], sizeof q.values[0]);
        q.count++;
    }
    memset(sub, 0, sizeof *sub);
    sub->info = info;
    sub->ops = env->ops;
    if (info->create(sub, &q, env, err)) {
        strategy_destroy(sub);
        return error_prefix(err, "%s", p->name);
    }
    return 0;
}

static int compose_create(Strategy *s, const StrategyParams *p, const StrategyEnv *env, const StrategyInfo *step,
                          Error *err) {
    Composite *c = calloc(1, sizeof *c);
    if (!c) return error_set(err, "%s: out of memory", p->name);
    s->state = c;
    s->destroy = composite_destroy;
    s->bytes_held = composite_bytes_held;
    s->clone = composite_clone;
    if (create_part(&c->step, step, p, env, err) ||
        create_part(&c->attn, &strategy_svg_info, p, env, err))
        return -1;
    /* Wire each hook to the strategy that has it: step decisions from the first, attention from the second. */
    const Strategy *a = &c->step, *b = &c->attn;
    if (a->attention_plan || b->model_begin || b->blocks_begin)
        return error_set(err, "%s: %s and %s both act on the same stage", p->name, a->info->name, b->info->name);
    if (a->model_begin) s->model_begin = fwd_model_begin, s->model_reuse = fwd_model_reuse;
    if (a->model_end) s->model_end = fwd_model_end;
    if (a->blocks_begin) s->blocks_begin = fwd_blocks_begin, s->blocks_reuse = fwd_blocks_reuse;
    if (a->blocks_end) s->blocks_end = fwd_blocks_end;
    if (b->attention_plan) s->attention_plan = fwd_attention_plan;
    const char *pa = strchr(a->spec, ':'), *pb = strchr(b->spec, ':');
    snprintf(s->spec, sizeof s->spec, "%s:%s,%s", p->name, pa ? pa + 1 : "", pb ? pb + 1 : "");
    return 0;
}

static const char *const ecsvg_params[] = {"thresh",      "warmup",       "defaults", "svg_version", "sparsity",
                                           "dense_steps", "dense_layers", "rows",     "row_seed",    "band",
                                           NULL};
static int ecsvg_create(Strategy *s, const StrategyParams *p, const StrategyEnv *env, Error *err) {
    return compose_create(s, p, env, &strategy_easycache_info, err);
}

STRATEGY_REGISTER(strategy_easycache_svg_info, 50) = {
    .name = "easycache+svg",
    .summary = "EasyCache step reuse with Sparse VideoGen attention on the computed steps",
    .params_help = "the parameters of easycache and of svg, with their defaults",
    .param_names = ecsvg_params,
    .create = ecsvg_create,
};

static const char *const tcsvg_params[] = {"thresh",      "variant",      "warmup", "cutoff",   "coeffs", "defaults",
                                           "svg_version", "sparsity",     "dense_steps", "dense_layers", "rows",
                                           "row_seed",    "band",         NULL};
static int tcsvg_create(Strategy *s, const StrategyParams *p, const StrategyEnv *env, Error *err) {
    return compose_create(s, p, env, &strategy_teacache_info, err);
}

STRATEGY_REGISTER(strategy_teacache_svg_info, 60) = {
    .name = "teacache+svg",
    .summary = "TeaCache block-stack reuse with Sparse VideoGen attention on the computed block stacks",
    .params_help = "the parameters of teacache and of svg, with their defaults",
    .param_names = tcsvg_params,
    .create = tcsvg_create,
};
