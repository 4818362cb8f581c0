/* taylorseer (strategies/taylorseer.c): the official schedule on hand-derived decision strings, forecasts of made-up
 * per-module features driven straight through the hooks (a fake engine: a computed module outputs a prescribed
 * feature, a supplied one is recorded), clone and bytes_held, then the runner on a small random model (FLOPs of a
 * Taylor step, bytes per step, interval 1 = none bit for bit, failed allocations), then the tiny model against
 * tests/taylorseer_official.py, an independent transcription of the official Wan2.1 code (and of the single-tensor lite
 * variant), and the CUDA engine against the CPU (skipped without a GPU). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/runner.h"
#include "strategies/strategy.h"
#include "models/dit/dit.h"
#include "models/dit/engine.h"
#include "models/safetensors.h"
#include "results/record.h"
#include "tests/fixtures.h"
#ifdef CACHEBENCH_CUDA
#include "models/dit/engine_cuda.h"
#endif

#define N 29      /* tokens numel of the hook-level tests */
#define LAYERS 2
#define MAXS 50

typedef enum { FEATURE_LINEAR, FEATURE_QUADRATIC } FeatureKind;

/* A made-up feature per (branch, layer, module): A + s B (+ s^2 C), s the step; random A, B, C (never 0). */
typedef struct {
    FeatureKind kind;
    float a[BRANCH_COUNT][LAYERS][MODULE_COUNT][N], b[BRANCH_COUNT][LAYERS][MODULE_COUNT][N],
        c[BRANCH_COUNT][LAYERS][MODULE_COUNT][N];
} Features;

typedef struct {
    char dec[BRANCH_COUNT][MAXS + 1];
    BranchTrace tr[MAXS][BRANCH_COUNT];
    int supplied[MAXS][BRANCH_COUNT];                          /* official: every module supplied this call */
    float got[MAXS][BRANCH_COUNT][LAYERS][MODULE_COUNT][N];    /* official: supplied outputs; lite: [..][0][0] */
    size_t bytes[MAXS];
} Trace;

static double feature_at(const Features *f, int b, int l, int m, size_t i, double s) {
    double v = f->a[b][l][m][i] + s * f->b[b][l][m][i];
    if (f->kind == FEATURE_QUADRATIC) v += s * s * f->c[b][l][m][i];
    return v;
}

static void feature(const Features *f, int b, int l, int m, int step, float *out) {
    for (size_t i = 0; i < N; i++) out[i] = (float)feature_at(f, b, l, m, i, step);
}

static Features *features_new(FeatureKind kind, uint64_t seed) {
    Features *f = calloc(1, sizeof *f);
    cr_assert_not_null(f);
    f->kind = kind;
    const size_t n = sizeof f->a / sizeof(float);
    fixture_random(&f->a[0][0][0][0], n, seed);
    fixture_random(&f->b[0][0][0][0], n, seed + 1);
    fixture_random(&f->c[0][0][0][0], n, seed + 2);
    for (size_t i = 0; i < n; i++) (&f->c[0][0][0][0])[i] *= 0.1f;
    return f;
}

static StrategyEnv env_for(int steps) {
    StrategyEnv env = {.num_steps = steps, .num_layers = LAYERS, .num_heads = 1, .dim = N, .model_numel = N,
                       .tokens_numel = N, .ops = cpu_vec_ops(), .model_name = "test"};
    return env;
}

/* One call the way harness/runner.c makes it. Official mode: the fake block runs the plan (computed module:
 * the feature, copied to out[m] when asked; supplied: recorded). Lite: the block stack adds the layer-0,
 * module-0 feature to the tokens, and a reuse is recorded as tokens - tokens_in. */
static void call(Strategy *s, const Features *f, int step, int steps, int b, int guidance_on, Trace *t) {
    StepInfo st = {.step = step, .num_steps = steps, .branch = (Branch)b, .guidance_on = guidance_on,
                   .timestep = 1000.0f * (1.0f - (float)step / steps), .sigma = 1.0f - (float)step / steps};
    BranchTrace tr = {.computed = 1, .signal = NAN, .accumulator = NAN, .threshold = NAN, .k = NAN};
    float tokens_in[N], tokens[N], e[N], e0[6 * N];
    fixture_random(tokens_in, N, 100 + step * 2 + b);
    fixture_random(e, N, 7), fixture_random(e0, 6 * N, 8);
    memcpy(tokens, tokens_in, sizeof tokens);
    BlockInputs in = {.e = e, .e0 = e0, .dim = N, .tokens = tokens, .n_tokens = N};
    int supplied = -1;
    if (s->blocks_begin(s, &st, &in, &tr) == STRATEGY_REUSE) {
        s->blocks_reuse(s, &st, tokens, N);
        for (size_t i = 0; i < N; i++) t->got[step][b][0][0][i] = tokens[i] - tokens_in[i];
        tr.computed = 0;
    } else {
        for (int l = 0; l < LAYERS;) {
            ModulePlan plan = {{MODULE_COMPUTE, MODULE_COMPUTE, MODULE_COMPUTE}, {NULL, NULL, NULL}};
            if (s->module_plan) s->module_plan(s, &st, l, &plan);
            for (int m = 0; m < MODULE_COUNT; m++) {
                int sup = plan.mode[m] == MODULE_SUPPLY;
                cr_assert(supplied < 0 || supplied == sup, "step %d: modules of one call are all supplied or none",
                          step);
                supplied = sup;
                if (sup) {
                    cr_assert_not_null(plan.out[m]);
                    memcpy(t->got[step][b][l][m], plan.out[m], N * sizeof(float));
                } else if (plan.out[m]) {
                    feature(f, b, l, m, step, plan.out[m]);
                }
            }
            if (!s->module_plan) { /* lite: the stack's residual is the layer-0, module-0 feature */
                float r[N];
                feature(f, b, 0, 0, step, r);
                if (l == 0)
                    for (size_t i = 0; i < N; i++) tokens[i] += r[i];
            }
            int next = s->layer_end(s, &st, l, tokens, N, &tr);
            cr_assert_eq(next, l + 1, "layer_end after layer %d returned %d", l, next);
            l = next;
        }
        if (s->blocks_end) s->blocks_end(s, &st, tokens, N);
    }
    t->supplied[step][b] = supplied == 1;
    t->dec[b][step] = tr.computed ? 'C' : 'R';
    t->tr[step][b] = tr;
}

static void drive(Strategy *s, const Features *f, int from, int to, int steps, int guidance_on, Trace *t) {
    for (int step = from; step < to; step++) {
        for (int b = 0; b < (guidance_on ? 2 : 1); b++) call(s, f, step, steps, b, guidance_on, t);
        t->bytes[step] = strategy_bytes_held(s);
    }
}

/* Runs spec for steps steps over features f; returns the trace (malloc'd). */
static Trace *run(const char *spec, const Features *f, int steps, int guidance_on) {
    Trace *t = calloc(1, sizeof *t);
    cr_assert_not_null(t);
    StrategyEnv env = env_for(steps);
    Strategy s;
    Error err = {{0}};
    cr_assert_eq(strategy_create(&s, spec, &env, &err), 0, "%s: %s", spec, err.msg);
    drive(&s, f, 0, steps, steps, guidance_on, t);
    strategy_destroy(&s);
    return t;
}

/* ---- schedule ---------------------------------------------------------------------------------------------- */

Test(taylorseer, official_schedule_full_every_fifth_step_on_both_branches) {
    /* N = 5, W = 1: step 0 full (warm-up), then counter 0,1,2,3 on steps 1-4 (Taylor) and 4 = N - 1 on step 5
     * (full), and so on: full at 0, 5, ..., 45; k = steps since the last full step. */
    Features *f = features_new(FEATURE_LINEAR, 1);
    Trace *t = run("taylorseer", f, 50, 1);
    const char *want = "CRRRRCRRRRCRRRRCRRRRCRRRRCRRRRCRRRRCRRRRCRRRRCRRRR";
    for (int b = 0; b < 2; b++) cr_assert_str_eq(t->dec[b], want, "branch %d", b);
    for (int step = 0; step < 50; step++) {
        for (int b = 0; b < 2; b++) {
            cr_assert_eq(t->tr[step][b].signal, (float)(step % 5), "step %d: k", step);
            cr_assert(isnan(t->tr[step][b].threshold), "no threshold");
            cr_assert_eq(t->supplied[step][b], step % 5 != 0, "step %d: Taylor steps supply every module", step);
        }
    }
    free(t);
    free(f);
}

Test(taylorseer, other_schedules_hand_derived) {
    Features *f = features_new(FEATURE_LINEAR, 2);
    struct {
        const char *spec;
        int steps;
        const char *want;
    } cases[] = {
        /* W = 3: 0,1,2 full (counter reset each), then counter 0,1 on 3,4 (Taylor), 2 = N - 1 on 5 (full), ... */
        {"taylorseer:interval=3,warmup=3", 12, "CCCRRCRRCRRC"},
        /* W = 2, N = 4: 0,1 full; 2,3,4 Taylor (counter 0,1,2), 5 full (counter 3), 6,7,8 Taylor, 9 full */
        {"taylorseer:interval=4,warmup=2", 10, "CCRRRCRRRC"},
        /* N = 1: counter 0 = N - 1 at every step */
        {"taylorseer:interval=1", 6, "CCCCCC"},
        /* N = 2: full every other step; order 0 and lite share the schedule */
        {"taylorseer:interval=2,order=0", 7, "CRCRCRC"},
        {"taylorseer:interval=2,lite=1", 7, "CRCRCRC"},
        /* W beyond the run: all full */
        {"taylorseer:warmup=9", 5, "CCCCC"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Trace *t = run(cases[i].spec, f, cases[i].steps, 1);
        for (int b = 0; b < 2; b++) cr_assert_str_eq(t->dec[b], cases[i].want, "%s branch %d", cases[i].spec, b);
        free(t);
    }
    /* Guidance off: the cond call alone decides, as before. */
    Trace *t = run("taylorseer:interval=3", f, 8, 0);
    cr_assert_str_eq(t->dec[0], "CRRCRRCR");
    cr_assert_str_eq(t->dec[1], "");
    free(t);
    free(f);
}

Test(taylorseer, parameters_checked) {
    StrategyEnv env = env_for(10);
    Strategy s;
    Error err = {{0}};
    cr_assert_neq(strategy_create(&s, "taylorseer:order=5", &env, &err), 0);
    cr_assert(strstr(err.msg, "order must be in [0, 4]"), "%s", err.msg);
    cr_assert_neq(strategy_create(&s, "taylorseer:order=-1", &env, &err), 0);
    cr_assert_neq(strategy_create(&s, "taylorseer:warmup=0", &env, &err), 0);
    cr_assert(strstr(err.msg, "warmup must be >= 1"), "%s", err.msg);
    cr_assert_neq(strategy_create(&s, "taylorseer:interval=0", &env, &err), 0);
    cr_assert_neq(strategy_create(&s, "taylorseer:lite=2", &env, &err), 0);
    cr_assert_neq(strategy_create(&s, "taylorseer:thresh=0.1", &env, &err), 0, "no threshold to set");
    cr_assert(strstr(err.msg, "unknown parameter \"thresh\""), "%s", err.msg);
    cr_assert_eq(strategy_create(&s, "taylorseer", &env, &err), 0, "%s", err.msg);
    cr_assert_str_eq(s.spec, "taylorseer:interval=5,order=1,warmup=1,lite=0");
    strategy_destroy(&s);
    cr_assert_eq(strategy_create(&s, "taylorseer:defaults=official,lite=1,order=3", &env, &err), 0, "%s", err.msg);
    cr_assert_str_eq(s.spec, "taylorseer:interval=5,order=3,warmup=1,lite=1");
    strategy_destroy(&s);
}

/* ---- forecasts ------------------------------------------------------------------------------------------------ */

static void expect_close(const float *got, double want, size_t i, double tol, const char *what, int step) {
    cr_assert(fabs(got[i] - want) <= tol * (1.0 + fabs(want)), "%s, step %d, element %zu: %.9g, expected %.9g", what,
              step, i, got[i], want);
}

Test(taylorseer, linear_features_forecast_exactly_from_step_6) {
    /* N = 5, O = 1. Step 0 keeps F0 = y(0) alone (factors reset), so steps 1-4 supply y(0) itself. Step 5:
     * F0 = y(5), F1 = (y(5) - y(0)) / 5 = B, so y(5) + k B = y(5 + k) exactly for a linear feature; likewise after
     * every later full step. Each branch, layer and module has its own feature. Tolerance: fp32 rounding of a
     * handful of operations on values of size ~50, 4e-6 relative. */
    Features *f = features_new(FEATURE_LINEAR, 3);
    Trace *t = run("taylorseer", f, 50, 1);
    for (int step = 1; step < 50; step++) {
        if (step % 5 == 0) continue;
        for (int b = 0; b < 2; b++)
            for (int l = 0; l < LAYERS; l++)
                for (int m = 0; m < MODULE_COUNT; m++) {
                    for (size_t i = 0; i < N; i++) {
                        if (step < 5) {
                            float y0[N];
                            feature(f, b, l, m, 0, y0);
                            cr_assert_eq(t->got[step][b][l][m][i], y0[i], "step %d reuses y(0) bit for bit", step);
                        } else {
                            expect_close(t->got[step][b][l][m], feature_at(f, b, l, m, i, step), i, 4e-6,
                                         "linear forecast", step);
                        }
                    }
                }
    }
    free(t);
    free(f);
}

Test(taylorseer, second_order_hand_derived) {
    /* N = 5, O = 2, feature y(s) = A + sB + s^2 C. Factors after the full steps (Δ = 5):
     *   step 5:  F0 = y5, F1 = (y5 - y0)/5 = B + 5C                (no F2: the old factors held only F0)
     *   step 10: F0 = y10, F1' = (y10 - y5)/5 = B + 15C, F2 = (F1' - F1)/5 = 2C
     * so at step 10 + k the forecast is y10 + k (B + 15C) + k^2 C (not y(10 + k) = y10 + k (B + 20C) + k^2 C:
     * backward differences), and at step 5 + k it is y5 + k (B + 5C). */
    Features *f = features_new(FEATURE_QUADRATIC, 4);
    Trace *t = run("taylorseer:order=2", f, 15, 1);
    for (int b = 0; b < 2; b++)
        for (int l = 0; l < LAYERS; l++)
            for (int m = 0; m < MODULE_COUNT; m++)
                for (size_t i = 0; i < N; i++) {
                    const double B = f->b[b][l][m][i], C = f->c[b][l][m][i];
                    for (int k = 1; k < 5; k++) {
                        expect_close(t->got[5 + k][b][l][m], feature_at(f, b, l, m, i, 5) + k * (B + 5 * C), i, 1e-5,
                                     "order-1 forecast", 5 + k);
                        expect_close(t->got[10 + k][b][l][m],
                                     feature_at(f, b, l, m, i, 10) + k * (B + 15 * C) + k * k * C, i, 1e-5,
                                     "order-2 forecast", 10 + k);
                    }
                }
    free(t);
    free(f);
}

Test(taylorseer, warmup_guard_and_order_zero) {
    /* W = 3, N = 3: full at 0, 1, 2, 5, 8. The official guard forms derivatives only when step > W - 2 = 1: step 1
     * keeps F0 = y1 alone, step 2 gets F1 = (y2 - y1)/1 = B, so 3 and 4 forecast y2 + k B = y(2 + k) exactly.
     * Order 0 reuses the last full step's outputs bit for bit. */
    Features *f = features_new(FEATURE_LINEAR, 5);
    Trace *t = run("taylorseer:interval=3,warmup=3", f, 9, 1);
    Trace *z = run("taylorseer:interval=3,warmup=3,order=0", f, 9, 1);
    for (int step = 3; step < 9; step++) {
        if (step == 5 || step == 8) continue;
        const int last = step < 5 ? 2 : 5;
        for (int m = 0; m < MODULE_COUNT; m++) {
            float y[N];
            feature(f, 1, 1, m, last, y);
            cr_assert_eq(memcmp(z->got[step][1][1][m], y, sizeof y), 0, "order 0 supplies y(%d) at step %d", last,
                         step);
            for (size_t i = 0; i < N; i++)
                expect_close(t->got[step][1][1][m], feature_at(f, 1, 1, m, i, step), i, 4e-6, "linear forecast",
                             step);
        }
    }
    free(t);
    free(z);
    free(f);
}

Test(taylorseer, lite_forecasts_the_stack_residual) {
    /* Lite, N = 5, O = 1: the stack residual r(s) (here the layer-0 self-attention feature, linear in s) is forecast
     * r(5) + k (r(5) - r(0))/5 = r(5 + k) from step 6 on; steps 1-4 add r(0). Tolerance: the residual goes through
     * tokens_out - tokens_in and back, 1e-5 relative. The trace reports skipped stacks as reused. */
    Features *f = features_new(FEATURE_LINEAR, 6);
    Trace *t = run("taylorseer:lite=1", f, 20, 1);
    cr_assert_str_eq(t->dec[0], "CRRRRCRRRRCRRRRCRRRR");
    cr_assert_str_eq(t->dec[1], "CRRRRCRRRRCRRRRCRRRR");
    for (int step = 1; step < 20; step++) {
        if (step % 5 == 0) continue;
        for (int b = 0; b < 2; b++)
            for (size_t i = 0; i < N; i++)
                expect_close(t->got[step][b][0][0], feature_at(f, b, 0, 0, i, step < 5 ? 0 : step), i, 1e-5,
                             "lite forecast", step);
    }
    free(t);
    free(f);
}

/* ---- memory and clone ----------------------------------------------------------------------------------------- */

Test(taylorseer, bytes_held_follow_the_formula) {
    Features *f = features_new(FEATURE_LINEAR, 7);
    const size_t T = N * sizeof(float);
    struct {
        const char *spec;
        int guidance_on;
        size_t tensors; /* branches · layers · 3 · (O+1) (+ 3 forecasts when O >= 1); lite branches · (O+1) */
    } cases[] = {
        {"taylorseer", 1, 2 * LAYERS * 3 * 2 + 3},
        {"taylorseer:order=3", 1, 2 * LAYERS * 3 * 4 + 3},
        {"taylorseer:order=0", 1, 2 * LAYERS * 3 * 1},
        {"taylorseer", 0, 1 * LAYERS * 3 * 2 + 3},
        {"taylorseer:lite=1", 1, 2 * 2},
        {"taylorseer:lite=1,order=4", 0, 1 * 5},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        Trace *t = run(cases[c].spec, f, 12, cases[c].guidance_on);
        for (int step = 0; step < 12; step++)
            cr_assert_eq(t->bytes[step], cases[c].tensors * T, "%s, step %d: %zu bytes, expected %zu",
                         cases[c].spec, step, t->bytes[step], cases[c].tensors * T);
        free(t);
    }
    StrategyEnv env = env_for(12);
    Strategy s;
    Error err = {{0}};
    cr_assert_eq(strategy_create(&s, "taylorseer", &env, &err), 0);
    cr_assert_eq(strategy_bytes_held(&s), 0, "nothing is allocated before the first call");
    strategy_destroy(&s);
    free(f);
}

Test(taylorseer, clone_continues_identically) {
    /* Fork after step 7 (mid-interval, factors of order 1 held), destroy the original, and run the copy on: its
     * forecasts equal an unforked run's bit for bit. Both modes. */
    Features *f = features_new(FEATURE_QUADRATIC, 8);
    const char *specs[] = {"taylorseer:order=2,interval=3", "taylorseer:lite=1,order=2,interval=3"};
    for (int c = 0; c < 2; c++) {
        Trace *whole = run(specs[c], f, 16, 1);
        Trace *forked = calloc(1, sizeof *forked);
        StrategyEnv env = env_for(16);
        Strategy s, copy;
        Error err = {{0}};
        cr_assert_eq(strategy_create(&s, specs[c], &env, &err), 0);
        drive(&s, f, 0, 8, 16, 1, forked);
        cr_assert_eq(strategy_clone(&copy, &s, &err), 0, "%s", err.msg);
        cr_assert_eq(strategy_bytes_held(&copy), strategy_bytes_held(&s));
        strategy_destroy(&s);
        drive(&copy, f, 8, 16, 16, 1, forked);
        strategy_destroy(&copy);
        cr_assert_str_eq(forked->dec[0], whole->dec[0]);
        cr_assert_eq(memcmp(forked->got, whole->got, sizeof whole->got), 0, "%s: the copy forecasts the same",
                     specs[c]);
        free(whole);
        free(forked);
    }
    free(f);
}

/* ---- the runner on a small random model ---------------------------------------------------------------------- */

static const int RF = 2, RH = 4, RW = 6, RSTEPS = 12;

typedef struct {
    DitModel model;
    Engine *engine;
} SmallModel;

static void small_model(SmallModel *sm) {
    Error err = {{0}};
    cr_assert_eq(dit_init_random(&sm->model, fixture_small_config(), 3, &err), 0, "%s", err.msg);
    cr_assert_eq(engine_create_cpu(&sm->engine, &sm->model, &err), 0, "%s", err.msg);
    cr_assert_eq(sm->engine->prepare(sm->engine, RF, RH, RW, &err), 0, "%s", err.msg);
}

static void small_model_free(SmallModel *sm) {
    sm->engine->destroy(sm->engine);
    dit_free(&sm->model);
}

static float *run_small(SmallModel *sm, const char *spec, RunRecord *rec) {
    const DitConfig *cfg = &sm->model.cfg;
    size_t tn = (size_t)cfg->text_len * cfg->text_dim, n = (size_t)cfg->in_dim * RF * RH * RW;
    float *text = calloc(tn, sizeof(float)), *zeros = calloc(tn, sizeof(float)), *x = malloc(n * sizeof(float));
    fixture_random(text, 2 * (size_t)cfg->text_dim, 5);
    Error err = {{0}};
    StrategyEnv env = fixture_strategy_env(sm->engine, RSTEPS, n);
    Strategy s;
    cr_assert_eq(strategy_create(&s, spec, &env, &err), 0, "%s: %s", spec, err.msg);
    RunSettings rs = {.steps = RSTEPS, .shift = 3.0f, .guidance = 4.0f, .seed = 9, .F = RF, .H = RH, .W = RW,
                      .text = {text, zeros}};
    memset(rec, 0, sizeof *rec);
    cr_assert_eq(runner_sample(sm->engine, &s, &rs, rec, x, &err), 0, "%s", err.msg);
    strategy_destroy(&s);
    free(text);
    free(zeros);
    return x;
}

Test(taylorseer, runner_flops_bytes_and_interval_one) {
    SmallModel sm;
    small_model(&sm);
    const DitConfig *cfg = &sm.model.cfg;
    const int L = sm.engine->L;
    const double T = (double)L * cfg->dim * sizeof(float);
    const double outside = dit_flops_embed(cfg, L) + dit_flops_head(cfg, L), full = dit_flops_forward(cfg, L);
    RunRecord none, rec;
    float *ref = run_small(&sm, "none", &none);
    const size_t n = (size_t)cfg->in_dim * RF * RH * RW;
    const char *specs[] = {"taylorseer", "taylorseer:lite=1"};
    const double tensors[] = {2.0 * cfg->num_layers * 3 * 2 + 3, 2 * 2};
    for (int c = 0; c < 2; c++) {
        free(run_small(&sm, specs[c], &rec));
        cr_assert_eq(rec.calls_computed, 2 * 3, "%s: full at 0, 5, 10", specs[c]);
        for (int i = 0; i < RSTEPS; i++) {
            const StepRecord *r = &rec.step[i];
            /* A Taylor step spends embed and head only: its modules are supplied (official) or its stack skipped. */
            const double want = 2 * (i % 5 == 0 ? full : outside);
            cr_assert(fabs(r->flops - want) <= 1e-9 * full, "%s step %d: %.6g FLOPs, expected %.6g", specs[c], i,
                      r->flops, want);
            cr_assert_eq(r->layers_run[0], i % 5 == 0 || c == 0 ? cfg->num_layers : 0);
            cr_assert_eq(r->strategy_bytes, tensors[c] * T, "%s step %d: %.0f bytes", specs[c], i, r->strategy_bytes);
        }
        cr_assert_eq(rec.strategy_bytes_peak, tensors[c] * T);
        record_free(&rec);
    }
    /* Every step full: the module outputs are only copied out, so the run is none's bit for bit. */
    float *x = run_small(&sm, "taylorseer:interval=1,order=2", &rec);
    cr_assert_eq(memcmp(x, ref, n * sizeof(float)), 0, "interval 1 must equal none bit for bit");
    free(x);
    record_free(&rec);
    free(ref);
    record_free(&none);
    small_model_free(&sm);
}

/* ---- the tiny model against the official code (tests/taylorseer_official.py) ------------------------------------ */

#define WEIGHTS "models/tiny/tiny.safetensors"
#define REPLAY_STEPS 8
#define CAPTURE 6 /* a Taylor step of order 1: k = 1 after the full step 5 */

/* The CPU engine, wrapped to keep what the strategy hands the model at step CAPTURE: every supplied module output
 * (official) and the block stack's change tokens_out - tokens_in (lite), per branch. Guidance on: call c is step
 * c / 2, branch c % 2. */
typedef struct {
    Engine base;
    Engine *inner;
    int calls, layers;
    size_t tn;
    float *tokens_in, *modules, *stack; /* [tn]; [2][layers][3][tn]; [2][tn] */
} CaptureEngine;

static CaptureEngine *capture(Engine *e) { return (CaptureEngine *)e; }
static int capture_step(Engine *e) { return (capture(e)->calls - 1) / 2; }
static int capture_branch(Engine *e) { return (capture(e)->calls - 1) % 2; }
static int cap_prepare(Engine *e, int F, int H, int W, Error *err) {
    int rc = capture(e)->inner->prepare(capture(e)->inner, F, H, W, err);
    e->L = capture(e)->inner->L;
    return rc;
}
static void cap_upload(Engine *e, float *d, const float *s, size_t n) { capture(e)->inner->upload(capture(e)->inner, d, s, n); }
static void cap_download(Engine *e, float *d, const float *s, size_t n) { capture(e)->inner->download(capture(e)->inner, d, s, n); }
static float *cap_tokens(Engine *e) { return capture(e)->inner->tokens(capture(e)->inner); }
static const float *cap_e(Engine *e) { return capture(e)->inner->time_embedding(capture(e)->inner); }
static const float *cap_e0(Engine *e) { return capture(e)->inner->time_projection(capture(e)->inner); }
static void cap_embed(Engine *e, const float *x, float t, const float *text) {
    CaptureEngine *c = capture(e);
    c->calls++;
    c->inner->embed(c->inner, x, t, text);
    if (capture_step(e) == CAPTURE) memcpy(c->tokens_in, cap_tokens(e), c->tn * sizeof(float));
}
static void cap_block(Engine *e, int layer, AttentionPlan *p, const ModulePlan *modules) {
    CaptureEngine *c = capture(e);
    if (capture_step(e) == CAPTURE && modules)
        for (int m = 0; m < MODULE_COUNT; m++)
            if (modules->mode[m] == MODULE_SUPPLY)
                memcpy(c->modules + (((size_t)capture_branch(e) * c->layers + layer) * 3 + m) * c->tn, modules->out[m],
                       c->tn * sizeof(float));
    c->inner->block(c->inner, layer, p, modules);
}
static void cap_head(Engine *e, float *out) {
    CaptureEngine *c = capture(e);
    if (capture_step(e) == CAPTURE) {
        const float *tok = cap_tokens(e);
        float *d = c->stack + (size_t)capture_branch(e) * c->tn;
        for (size_t i = 0; i < c->tn; i++) d[i] = tok[i] - c->tokens_in[i];
    }
    c->inner->head(c->inner, out);
}

static float *st_floats(const StFile *f, const char *name, size_t want) {
    Error err = {{0}};
    const StTensor *t = st_find(f, name);
    cr_assert_not_null(t, "no tensor %s", name);
    cr_assert_eq(st_numel(t->ndim, t->shape), want, "%s: %zu values, expected %zu", name,
                 st_numel(t->ndim, t->shape), want);
    float *v = malloc(want * sizeof(float));
    cr_assert_eq(st_to_f32(t, v, &err), 0, "%s", err.msg);
    return v;
}

/* max |a - b| / max |b| over n values */
static double rel_max(const float *a, const float *b, size_t n) {
    double diff = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++) {
        diff = fmax(diff, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs((double)b[i]));
    }
    return diff / scale;
}

typedef struct {
    const char *mode;
    int interval, order, warmup;
} ReplayCase;

/* The C run of one case (in process, the capturing engine) against the official transcription's output py_out:
 * the full steps exactly, the step-CAPTURE forecasts and every step's latent to the tolerances. */
static void replay_compare(const char *case_path, const char *py_out, const ReplayCase *rc, double tol_forecast,
                           double tol_latent) {
    const int lite = strcmp(rc->mode, "lite") == 0;
    const DitConfig *preset = dit_config_by_name("tiny");
    Error err = {{0}};
    DitModel model;
    cr_assert_eq(dit_load(&model, preset, WEIGHTS, &err), 0, "%s", err.msg);
    const DitConfig *cfg = &model.cfg;
    CaptureEngine eng = {.layers = cfg->num_layers};
    cr_assert_eq(engine_create_cpu(&eng.inner, &model, &err), 0, "%s", err.msg);
    Engine *b = &eng.base;
    *b = *eng.inner;
    b->impl = NULL, b->synchronize = NULL;
    b->prepare = cap_prepare, b->upload = cap_upload, b->download = cap_download, b->embed = cap_embed;
    b->block = cap_block, b->head = cap_head, b->tokens = cap_tokens, b->time_embedding = cap_e;
    b->time_projection = cap_e0;
    const int F = cfg->frames, H = cfg->height, W = cfg->width;
    cr_assert_eq(b->prepare(b, F, H, W, &err), 0, "%s", err.msg);
    eng.tn = (size_t)b->L * cfg->dim;
    eng.tokens_in = calloc(eng.tn, sizeof(float));
    eng.modules = calloc(2 * (size_t)eng.layers * 3 * eng.tn, sizeof(float));
    eng.stack = calloc(2 * eng.tn, sizeof(float));

    StFile cf;
    cr_assert_eq(st_open(&cf, case_path, &err), 0, "%s", err.msg);
    const size_t text_n = (size_t)cfg->text_len * cfg->text_dim, n = (size_t)cfg->in_dim * F * H * W;
    float *text_c = st_floats(&cf, "text.cond", text_n), *text_u = st_floats(&cf, "text.uncond", text_n);
    st_close(&cf);
    char spec[128];
    snprintf(spec, sizeof spec, "taylorseer:interval=%d,order=%d,warmup=%d,lite=%d", rc->interval, rc->order,
             rc->warmup, lite);
    StrategyEnv env = {.num_steps = REPLAY_STEPS, .num_layers = cfg->num_layers, .num_heads = cfg->num_heads,
                       .dim = cfg->dim, .model_numel = n, .tokens_numel = eng.tn, .ops = b->ops,
                       .model_name = cfg->name};
    Strategy s;
    cr_assert_eq(strategy_create(&s, spec, &env, &err), 0, "%s", err.msg);
    RunSettings rs = {.steps = REPLAY_STEPS, .shift = preset->default_shift, .guidance = preset->default_guidance,
                      .seed = 7, .F = F, .H = H, .W = W, .record_latents = 1, .text = {text_c, text_u}};
    RunRecord rec = {0};
    cr_assert_eq(runner_sample(b, &s, &rs, &rec, NULL, &err), 0, "%s", err.msg);
    strategy_destroy(&s);

    StFile pf;
    cr_assert_eq(st_open(&pf, py_out, &err), 0, "%s", err.msg);
    float *full = st_floats(&pf, "full", 2 * REPLAY_STEPS);
    float *latents = st_floats(&pf, "latents", REPLAY_STEPS * n);
    const size_t fn = lite ? 2 * eng.tn : 2 * (size_t)eng.layers * 3 * eng.tn;
    float *forecast = st_floats(&pf, "forecast", fn);
    st_close(&pf);

    for (int i = 0; i < REPLAY_STEPS; i++)
        for (int br = 0; br < 2; br++)
            cr_assert_eq(rec.step[i].computed[br], (int)full[2 * i + br], "%s: step %d branch %d: C %s, official %s",
                         spec, i, br, rec.step[i].computed[br] ? "full" : "Taylor", full[2 * i + br] ? "full" : "Taylor");
    cr_assert_eq(full[2 * CAPTURE], 0.0f, "step %d must be a Taylor step", CAPTURE);
    double worst = 0.0;
    if (lite) {
        for (int br = 0; br < 2; br++)
            worst = fmax(worst, rel_max(eng.stack + br * eng.tn, forecast + br * eng.tn, eng.tn));
    } else {
        for (size_t g = 0; g < 2 * (size_t)eng.layers * 3; g++)
            worst = fmax(worst, rel_max(eng.modules + g * eng.tn, forecast + g * eng.tn, eng.tn));
    }
    cr_assert_leq(worst, tol_forecast, "%s: step-%d forecasts differ by %.3g of their scale", spec, CAPTURE, worst);
    double worst_latent = 0.0;
    for (int i = 0; i < REPLAY_STEPS; i++)
        worst_latent = fmax(worst_latent, rel_max(rec.latents + (size_t)i * n, latents + (size_t)i * n, n));
    cr_assert_leq(worst_latent, tol_latent, "%s: latents differ by %.3g of their scale", spec, worst_latent);
    cr_log_info("%s: forecasts %.3g, latents %.3g of scale", spec, worst, worst_latent);

    free(full), free(latents), free(forecast), free(text_c), free(text_u);
    free(eng.tokens_in), free(eng.modules), free(eng.stack);
    record_free(&rec);
    eng.inner->destroy(eng.inner);
    dit_free(&model);
}

/* Official and lite, each at the official setting (N = 5, O = 1, W = 1: full at 0 and 5, step 6 forecasts with k = 1)
 * and at W = 2, N = 3, O = 2 (full at 0, 1, 4, 7; step 6 forecasts with k = 2 from F0..F2: the official guard forms
 * F1 at step 1, as 1 > W - 2, while cache-dit's lite forms derivatives only from step 2, so its step-4 factors stop
 * at F1). One Python run replays all four on the same inputs. Tolerances, float32 C against float64 torch over 8
 * CFG steps: forecasts 1e-4 of their scale (measured <= 6e-6), latents 1e-4 (measured <= 4e-5). */
Test(taylorseer, tiny_model_matches_the_official_code, .timeout = 240) {
    const ReplayCase cases[] = {{"official", 5, 1, 1}, {"lite", 5, 1, 1}, {"official", 3, 2, 2}, {"lite", 3, 2, 2}};
    const int count = sizeof cases / sizeof cases[0];
    const char *py = fixture_python();
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import numpy, torch' >/dev/null 2>&1", py);
    if (system(cmd) != 0) cr_skip_test("%s cannot import numpy and torch (Debian: python3-numpy, python3-torch)", py);
    const DitConfig *preset = dit_config_by_name("tiny");
    char *dir = fixture_tmpdir(), case_path[4300], py_out[4][4300];
    snprintf(case_path, sizeof case_path, "%s/case.safetensors", dir);
    cr_assert_eq(fixture_replay_case(case_path, preset, WEIGHTS, "red circle moving right", "", 7, REPLAY_STEPS,
                                     preset->default_shift, preset->default_guidance),
                 0);
    int at = snprintf(cmd, sizeof cmd, "'%s' tests/taylorseer_official.py '%s' %d", py, case_path, CAPTURE);
    for (int c = 0; c < count; c++) {
        snprintf(py_out[c], sizeof py_out[c], "%s/py%d.safetensors", dir, c);
        at += snprintf(cmd + at, sizeof cmd - (size_t)at, " '%s' %s %d %d %d", py_out[c], cases[c].mode,
                       cases[c].interval, cases[c].order, cases[c].warmup);
    }
    snprintf(cmd + at, sizeof cmd - (size_t)at, " 2>&1");
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    for (int c = 0; c < count; c++) replay_compare(case_path, py_out[c], &cases[c], 1e-4, 1e-4);
    fixture_rmdir(dir);
    free(dir);
}

/* VecOps whose alloc fails after `budget` buffers: the strategy must not crash, and the run must fail. */
static int alloc_budget;
static float *failing_alloc(void *ctx, size_t n) { return alloc_budget-- > 0 ? cpu_vec_ops()->alloc(ctx, n) : NULL; }

Test(taylorseer, allocation_failure_fails_the_run) {
    VecOps ops = *cpu_vec_ops();
    ops.alloc = failing_alloc;
    SmallModel sm;
    small_model(&sm);
    const DitConfig *cfg = &sm.model.cfg;
    const size_t tn = (size_t)cfg->text_len * cfg->text_dim, n = (size_t)cfg->in_dim * RF * RH * RW;
    float *text = calloc(tn, sizeof(float)), *zeros = calloc(tn, sizeof(float));
    fixture_random(text, tn, 5);
    const char *specs[] = {"taylorseer", "taylorseer:lite=1"};
    for (int c = 0; c < 2; c++) {
        for (int budget = 0; budget < 4; budget++) { /* nothing, then part of the first branch's buffers */
            StrategyEnv env = fixture_strategy_env(sm.engine, RSTEPS, n);
            env.ops = &ops; /* the failing allocator */
            Strategy s;
            Error err = {{0}};
            cr_assert_eq(strategy_create(&s, specs[c], &env, &err), 0, "%s", err.msg);
            RunSettings rs = {.steps = RSTEPS, .shift = 3.0f, .guidance = 4.0f, .seed = 9, .F = RF, .H = RH,
                              .W = RW, .text = {text, zeros}};
            RunRecord rec = {0};
            alloc_budget = budget;
            cr_assert_neq(runner_sample(sm.engine, &s, &rs, &rec, NULL, &err), 0, "%s: the run must fail", specs[c]);
            cr_assert(strstr(err.msg, "taylorseer") && strstr(err.msg, "cannot allocate") && strstr(err.msg, "Taylor factors"), "%s", err.msg);
            /* A branch whose buffers fail holds none; lite's cond branch fits in 2 buffers, then uncond fails. */
            const size_t held = c == 1 && budget >= 2 ? 2 * env.tokens_numel * sizeof(float) : 0;
            cr_assert_eq(strategy_bytes_held(&s), held, "%s, budget %d: %zu bytes held", specs[c], budget,
                         strategy_bytes_held(&s));
            if (budget == 0) cr_log_info("%s", err.msg);
            strategy_destroy(&s);
            record_free(&rec);
        }
    }
    free(text);
    free(zeros);
    small_model_free(&sm);
}

/* ---- the CUDA engine ---------------------------------------------------------------------------------------- */

#ifdef CACHEBENCH_CUDA
/* One 8-step run of model m under spec on engine e; returns the final latent (malloc'd) and fills rec. */
static float *run_on(Engine *e, const DitModel *m, const char *spec, RunRecord *rec) {
    const DitConfig *cfg = &m->cfg;
    const int F = cfg->frames, H = cfg->height, W = cfg->width;
    const size_t tn = (size_t)cfg->text_len * cfg->text_dim, n = (size_t)cfg->in_dim * F * H * W;
    float *text = calloc(tn, sizeof(float)), *zeros = calloc(tn, sizeof(float)), *x = malloc(n * sizeof(float));
    fixture_random(text, 3 * (size_t)cfg->text_dim, 5);
    Error err = {{0}};
    cr_assert_eq(e->prepare(e, F, H, W, &err), 0, "%s", err.msg);
    StrategyEnv env = fixture_strategy_env(e, 8, n);
    Strategy s;
    cr_assert_eq(strategy_create(&s, spec, &env, &err), 0, "%s: %s", spec, err.msg);
    RunSettings rs = {.steps = 8, .shift = cfg->default_shift, .guidance = cfg->default_guidance, .seed = 7, .F = F,
                      .H = H, .W = W, .text = {text, zeros}};
    memset(rec, 0, sizeof *rec);
    cr_assert_eq(runner_sample(e, &s, &rs, rec, x, &err), 0, "%s", err.msg);
    strategy_destroy(&s);
    free(text), free(zeros);
    return x;
}
#endif

Test(taylorseer, cuda_engine_matches_cpu, .timeout = 300) {
    fixture_require_cuda_device();
#ifdef CACHEBENCH_CUDA
    Error err = {{0}};
    /* The strategy works through VecOps and module plans only, so both engines (CUDA in fp32, within 1e-4 of the CPU
     * per stage) must give the same schedule, FLOPs and bytes, and final latents within 1e-3 of their scale
     * (forecasts extrapolate module outputs linearly: no amplification beyond a few times the stage error). */
    DitModel m;
    cr_assert_eq(dit_init_random(&m, dit_config_by_name("tiny"), 3, &err), 0, "%s", err.msg);
    Engine *cpu, *gpu;
    const CudaOptions fp32 = {CUDA_PRECISION_FP32, CUDA_ATTENTION_SIMPLE};
    cr_assert_eq(engine_create_cpu(&cpu, &m, &err), 0, "%s", err.msg);
    cr_assert_eq(engine_create_cuda(&gpu, &m, &fp32, &err), 0, "%s", err.msg);
    const char *specs[] = {"taylorseer:interval=3,order=2,warmup=2", "taylorseer:interval=3,order=2,warmup=2,lite=1"};
    const size_t n = (size_t)m.cfg.in_dim * m.cfg.frames * m.cfg.height * m.cfg.width;
    for (int c = 0; c < 2; c++) {
        RunRecord a, b;
        float *xa = run_on(cpu, &m, specs[c], &a), *xb = run_on(gpu, &m, specs[c], &b);
        cr_assert(!a.failed && !b.failed, "%s: cpu %s / cuda %s", specs[c], a.failure, b.failure);
        for (int i = 0; i < 8; i++) {
            for (int br = 0; br < 2; br++) cr_assert_eq(b.step[i].computed[br], a.step[i].computed[br]);
            cr_assert_eq(b.step[i].flops, a.step[i].flops, "%s step %d", specs[c], i);
            cr_assert_eq(b.step[i].strategy_bytes, a.step[i].strategy_bytes, "%s step %d", specs[c], i);
        }
        const double d = rel_max(xb, xa, n);
        cr_assert_leq(d, 1e-3, "%s: final latents differ by %.3g of their scale", specs[c], d);
        free(xa), free(xb);
        record_free(&a), record_free(&b);
    }
    cr_assert_null(engine_cuda_error(gpu), "%s", engine_cuda_error(gpu));
    cpu->destroy(cpu);
    gpu->destroy(gpu);
    dit_free(&m);
#endif
}
