/* Per-step overhead of every strategy in the demo grid, as a fraction of one model call (target: < 1%).
 *
 * The demo sweep's grid (datasets/demo_sweep.ini) gives the settings: the first setting of each strategy section,
 * plus the baseline. Each runs one trajectory of the embedded tiny model (random weights when it is absent) through
 * the runner, with the engine wrapped so that the time spent inside the model's stages (embed, blocks, head) is
 * measured. A strategy's overhead is what its calls cost beyond that: the runner's per-call time minus the engine's
 * time in the same call, i.e. the strategy's hooks (decisions, cache copies, forecasts) and the runner's
 * bookkeeping. It is reported per step and divided by the engine time of one full model call (from the baseline),
 * both measured in this process. The tiny model's calls are short (~0.1 s), so this is an upper bound for the
 * fraction on real models, whose calls grow faster with the token count than the strategies' vector work does.
 *
 *     OMP_NUM_THREADS=1 build/bench_strategies [--steps N (default: the config's)] [--config datasets/demo_sweep.ini] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "harness/experiment.h"
#include "harness/sweep.h"

typedef struct {
    Engine base;
    Engine *inner;
    double seconds;   /* inside the model's stages */
} TimedEngine;

static TimedEngine *timed(Engine *e) { return (TimedEngine *)e; }
static void sync_inner(Engine *in) {
    if (in->synchronize) in->synchronize(in);
}
static int t_prepare(Engine *e, int F, int H, int W, Error *err) {
    int rc = timed(e)->inner->prepare(timed(e)->inner, F, H, W, err);
    e->L = timed(e)->inner->L;
    return rc;
}
static void t_upload(Engine *e, float *d, const float *s, size_t n) { timed(e)->inner->upload(timed(e)->inner, d, s, n); }
static void t_download(Engine *e, float *d, const float *s, size_t n) {
    timed(e)->inner->download(timed(e)->inner, d, s, n);
}
static void t_embed(Engine *e, const float *x, float t, const float *text) {
    const double t0 = clock_seconds();
    timed(e)->inner->embed(timed(e)->inner, x, t, text);
    sync_inner(timed(e)->inner);
    timed(e)->seconds += clock_seconds() - t0;
}
static void t_block(Engine *e, int layer, AttentionPlan *p, const ModulePlan *m) {
    const double t0 = clock_seconds();
    timed(e)->inner->block(timed(e)->inner, layer, p, m);
    sync_inner(timed(e)->inner);
    timed(e)->seconds += clock_seconds() - t0;
}
static void t_head(Engine *e, float *out) {
    const double t0 = clock_seconds();
    timed(e)->inner->head(timed(e)->inner, out);
    sync_inner(timed(e)->inner);
    timed(e)->seconds += clock_seconds() - t0;
}
static float *t_tokens(Engine *e) { return timed(e)->inner->tokens(timed(e)->inner); }
static const float *t_e(Engine *e) { return timed(e)->inner->time_embedding(timed(e)->inner); }
static const float *t_e0(Engine *e) { return timed(e)->inner->time_projection(timed(e)->inner); }

static void wrap(TimedEngine *t, Engine *inner) {
    *t = (TimedEngine){.inner = inner};
    Engine *b = &t->base;
    *b = *inner;
    b->impl = NULL;
    b->prepare = t_prepare, b->upload = t_upload, b->download = t_download, b->embed = t_embed;
    b->block = t_block, b->head = t_head, b->synchronize = inner->synchronize ? inner->synchronize : NULL;
    b->tokens = t_tokens, b->time_embedding = t_e, b->time_projection = t_e0;
}

typedef struct {
    double engine, calls;   /* seconds */
    int computed, total, steps;
} Measured;

static int measure(ExperimentContext *ctx, TimedEngine *te, const char *spec, int steps, Measured *out, Error *err) {
    ExperimentSpec es = {.strategy_spec = spec, .prompt_id = "s00",
                         .prompt = "a red circle moving right on a black background", .steps = steps,
                         .shift = ctx->model.cfg.default_shift, .guidance = ctx->model.cfg.default_guidance};
    StrategyEnv env;
    Strategy s;
    if (experiment_strategy_env(ctx, &es, &env, err) || strategy_create(&s, spec, &env, err)) return -1;
    RunRecord rec = {0};
    te->seconds = 0.0;
    int rc = experiment_run_with(ctx, &es, &s, &rec, err);
    if (!rc) {
        *out = (Measured){.engine = te->seconds, .computed = rec.calls_computed, .total = rec.calls_total,
                          .steps = rec.steps};
        for (int i = 0; i < rec.steps; i++) out->calls += rec.step[i].call_seconds[0] + rec.step[i].call_seconds[1];
    }
    record_free(&rec);
    strategy_destroy(&s);
    return rc;
}

int main(int argc, char **argv) {
    const char *config = "datasets/demo_sweep.ini";
    int steps = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--config") && i + 1 < argc) config = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--steps N] [--config INI]\n", argv[0]);
            return 2;
        }
    }
    Error err = {{0}};
    SweepConfig *c = malloc(sizeof *c);
    if (!c) return 1;
    sweep_config_init(c);
    if (sweep_config_read_ini(c, config, &err)) {
        fprintf(stderr, "bench_strategies: %s\n", err.msg);
        return 1;
    }
    if (steps <= 0) steps = c->steps > 0 ? c->steps : 50;
    char weights[1024];
    experiment_default_weights(weights, sizeof weights);
    FILE *probe = fopen(weights, "rb");
    if (probe) fclose(probe);
    else snprintf(weights, sizeof weights, "random:1");
    ExperimentContext ctx;
    if (experiment_open(&ctx, "tiny", weights, "cpu", &err)) {
        fprintf(stderr, "bench_strategies: %s\n", err.msg);
        return 1;
    }
    TimedEngine te;
    Engine *inner = ctx.engine;
    wrap(&te, inner);
    ctx.engine = &te.base;

    printf("strategy overhead per step, tiny model (%s), %d steps, CFG: runner call time minus model time\n",
           weights, steps);
    Measured base;
    if (measure(&ctx, &te, "none", steps, &base, &err)) {
        fprintf(stderr, "bench_strategies: none: %s\n", err.msg);
        return 1;
    }
    const double full_call = base.engine / base.computed;
    printf("  one full model call: %.1f ms (engine time of the baseline / its %d calls)\n", 1e3 * full_call,
           base.computed);
    printf("  %-44s %8s %12s %12s\n", "setting", "computed", "overhead/step", "of a call");
    int worst_over = 0;
    for (int t = -1; t < c->n_templates; t++) {
        char spec[SWEEP_SPEC_MAX];
        if (t < 0) {
            snprintf(spec, sizeof spec, "none");
        } else {
            SpecList l = {0};
            if (sweep_expand_template(c->templates[t], &l, &err) || l.count == 0) {
                fprintf(stderr, "bench_strategies: %s\n", err.msg);
                return 1;
            }
            snprintf(spec, sizeof spec, "%s", l.items[0]);
            spec_list_free(&l);
        }
        Measured m = base;
        if (t >= 0 && measure(&ctx, &te, spec, steps, &m, &err)) {
            printf("  %-44s skipped: %s\n", spec, err.msg);
            continue;
        }
        const double per_step = (m.calls - m.engine) / m.steps, frac = per_step / full_call;
        worst_over += frac >= 0.01;
        printf("  %-44.44s %4d/%-3d %10.3f ms %11.3f%%\n", spec, m.computed, m.total, 1e3 * per_step, 100 * frac);
    }
    printf("  target: < 1%% of a model call per step; %s\n", worst_over ? "MISSED by the rows >= 1%" : "met by every row");
    ctx.engine = inner;
    experiment_close(&ctx);
    free(c);
    return 0;
}
