/* The runner with real strategies on a real (small, random) model: thresholds of 0 reproduce the `none` run bit
 * for bit, and a reused step does no model or block work (counted through a wrapping engine). Also the calibration
 * fit against a polynomial known exactly. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/calibrate.h"
#include "harness/runner.h"
#include "strategies/strategy.h"
#include "tests/fixtures.h"

typedef struct {
    Engine base;      /* the wrapper seen by the runner */
    Engine *inner;    /* the CPU engine doing the work */
    int embeds, blocks, heads;
} CountingEngine;

static CountingEngine *counting(Engine *e) { return (CountingEngine *)e; }
static int c_prepare(Engine *e, int F, int H, int W, Error *err) {
    int rc = counting(e)->inner->prepare(counting(e)->inner, F, H, W, err);
    e->L = counting(e)->inner->L;
    return rc;
}
static void c_upload(Engine *e, float *d, const float *s, size_t n) { counting(e)->inner->upload(counting(e)->inner, d, s, n); }
static void c_download(Engine *e, float *d, const float *s, size_t n) { counting(e)->inner->download(counting(e)->inner, d, s, n); }
static void c_embed(Engine *e, const float *x, float t, const float *text) {
    counting(e)->embeds++;
    counting(e)->inner->embed(counting(e)->inner, x, t, text);
}
static void c_block(Engine *e, int layer, AttentionPlan *p, const ModulePlan *modules) {
    counting(e)->blocks++;
    counting(e)->inner->block(counting(e)->inner, layer, p, modules);
}
static void c_head(Engine *e, float *out) {
    counting(e)->heads++;
    counting(e)->inner->head(counting(e)->inner, out);
}
static float *c_tokens(Engine *e) { return counting(e)->inner->tokens(counting(e)->inner); }
static const float *c_e(Engine *e) { return counting(e)->inner->time_embedding(counting(e)->inner); }
static const float *c_e0(Engine *e) { return counting(e)->inner->time_projection(counting(e)->inner); }

static DitModel model;
static CountingEngine engine;
static char *dir;
static const int F = 2, H = 4, W = 6, STEPS = 12;

static void setup(void) {
    Error err;
    cr_assert_eq(dit_init_random(&model, fixture_small_config(), 3, &err), 0);
    Engine *inner;
    cr_assert_eq(engine_create_cpu(&inner, &model, &err), 0);
    engine = (CountingEngine){.inner = inner};
    Engine *b = &engine.base;
    *b = *inner; /* backend name, device, ops, model */
    b->impl = NULL;
    b->prepare = c_prepare, b->upload = c_upload, b->download = c_download, b->embed = c_embed;
    b->block = c_block, b->head = c_head, b->synchronize = NULL;
    b->tokens = c_tokens, b->time_embedding = c_e, b->time_projection = c_e0;
    dir = fixture_tmpdir();
}

static void teardown(void) {
    engine.inner->destroy(engine.inner);
    dit_free(&model);
    fixture_rmdir(dir);
    free(dir);
}

TestSuite(runner, .init = setup, .fini = teardown);

/* Runs one trajectory with spec, its hooks first changed by patch (may be NULL); returns runner_sample's status,
 * fills rec, *x_out (malloc'd final x, when non-NULL) and err. */
static int run_patched(const char *spec, void (*patch)(Strategy *), RunRecord *rec, float **x_out, Error *err) {
    const DitConfig *cfg = &model.cfg;
    size_t tn = (size_t)cfg->text_len * cfg->text_dim, n = (size_t)cfg->in_dim * F * H * W;
    float *text = calloc(tn, sizeof(float)), *zeros = calloc(tn, sizeof(float)), *x = malloc(n * sizeof(float));
    fixture_random(text, 2 * (size_t)cfg->text_dim, 5);
    cr_assert_eq(engine.base.prepare(&engine.base, F, H, W, err), 0, "%s", err->msg);
    StrategyEnv env = fixture_strategy_env(&engine.base, STEPS, n);
    Strategy s;
    cr_assert_eq(strategy_create(&s, spec, &env, err), 0, "%s: %s", spec, err->msg);
    if (patch) patch(&s);
    RunSettings rs = {.steps = STEPS, .shift = 3.0f, .guidance = 4.0f, .seed = 9, .F = F, .H = H, .W = W,
                      .text = {text, zeros}};
    memset(rec, 0, sizeof *rec);
    engine.embeds = engine.blocks = engine.heads = 0;
    int rc = runner_sample(&engine.base, &s, &rs, rec, x, err);
    strategy_destroy(&s);
    free(text);
    free(zeros);
    if (x_out) *x_out = x;
    else free(x);
    return rc;
}

/* Runs one trajectory with spec; returns final x (malloc'd) and fills rec. */
static float *run_spec(const char *spec, RunRecord *rec) {
    Error err = {{0}};
    float *x = NULL;
    cr_assert_eq(run_patched(spec, NULL, rec, &x, &err), 0, "%s", err.msg);
    return x;
}

Test(runner, zero_thresholds_reproduce_none_bit_for_bit) {
    /* A polynomial that is positive everywhere (poly(s) = s + 1), so TeaCache's accumulator only grows. */
    char coeffs[4200], spec[4400];
    snprintf(coeffs, sizeof coeffs, "%s/coeffs.txt", dir);
    FILE *f = fopen(coeffs, "w");
    fprintf(f, "0 0 0 1 1\n");
    fclose(f);
    RunRecord base, rec;
    size_t n = 3 * (size_t)F * H * W;
    float *ref = run_spec("none", &base);
    cr_assert_eq(base.calls_computed, 2 * STEPS);
    snprintf(spec, sizeof spec, "teacache:thresh=0,warmup=0,cutoff=0,coeffs=%s", coeffs);
    const char *specs[] = {"static:interval=1,warmup=0", "easycache:thresh=0,warmup=0", spec};
    for (size_t i = 0; i < 3; i++) {
        float *x = run_spec(specs[i], &rec);
        cr_assert_eq(rec.calls_computed, 2 * STEPS, "%s computed %d of %d calls", specs[i], rec.calls_computed,
                     2 * STEPS);
        cr_assert_eq(memcmp(x, ref, n * sizeof(float)), 0, "%s with threshold 0 must equal none bit for bit", specs[i]);
        cr_assert_eq(memcmp(rec.video, base.video, (size_t)F * H * W * 3), 0);
        free(x);
        record_free(&rec);
    }
    free(ref);
    record_free(&base);
}

Test(runner, reused_model_calls_do_no_model_work) {
    RunRecord rec;
    free(run_spec("easycache:thresh=0.5,warmup=2", &rec));
    int layers = model.cfg.num_layers;
    cr_assert(rec.calls_skipped > 0, "threshold 0.5 should reuse some calls on this trajectory");
    cr_assert_eq(engine.embeds, rec.calls_computed, "every computed call embeds once, reused calls never");
    cr_assert_eq(engine.heads, rec.calls_computed);
    cr_assert_eq(engine.blocks, rec.calls_computed * layers);
    /* FLOPs follow the decisions: a reused model call costs nothing. */
    double per_call = dit_flops_forward(&model.cfg, engine.base.L);
    cr_assert_float_eq(rec.flops_spent, per_call * rec.calls_computed, per_call * 1e-9);
    int computed = 0;
    for (int i = 0; i < STEPS; i++) computed += rec.step[i].computed[0] + rec.step[i].computed[1];
    cr_assert_eq(computed, rec.calls_computed, "the trace agrees with the totals");
    record_free(&rec);
}

Test(runner, reused_block_stacks_skip_blocks_only) {
    char coeffs[4200], spec[4400];
    snprintf(coeffs, sizeof coeffs, "%s/coeffs.txt", dir);
    FILE *f = fopen(coeffs, "w");
    fprintf(f, "0 0 0 0 0.3\n"); /* constant 0.3 per call: compute every 4th call of a branch at thresh 1 */
    fclose(f);
    snprintf(spec, sizeof spec, "teacache:thresh=1,warmup=1,cutoff=1,coeffs=%s", coeffs);
    RunRecord rec;
    free(run_spec(spec, &rec));
    /* Per branch: step 0 warm-up C; then A = .3,.6,.9 (R R R), 1.2 >= 1 (C, reset), ... ; last step cutoff C.
     * Steps 0..11: C R R R C R R R C R R C -> 4 of 12 per branch, 8 calls in all. */
    const char *want = "CRRRCRRRCRRC";
    for (int i = 0; i < STEPS; i++)
        for (int b = 0; b < 2; b++)
            cr_assert_eq(rec.step[i].computed[b], want[i] == 'C', "step %d branch %d", i, b);
    cr_assert_eq(rec.calls_computed, 8);
    int layers = model.cfg.num_layers;
    cr_assert_eq(engine.embeds, 2 * STEPS, "block-stack reuse still embeds every call");
    cr_assert_eq(engine.heads, 2 * STEPS, "block-stack reuse still runs the head every call");
    cr_assert_eq(engine.blocks, rec.calls_computed * layers, "but runs no block on a reused call");
    record_free(&rec);
}

Test(calibration, fit_recovers_a_known_polynomial) {
    const double c[5] = {-5.2e4, 9.2e3, -5.3e2, 13.7, -0.05}; /* the shape of the official Wan e0 polynomial */
    double x[40], y[40], got[5], r2;
    for (int i = 0; i < 40; i++) {
        x[i] = 0.002 + 0.003 * i;
        y[i] = (((c[0] * x[i] + c[1]) * x[i] + c[2]) * x[i] + c[3]) * x[i] + c[4];
    }
    Error err;
    cr_assert_eq(calibration_fit(x, y, 40, got, &r2, &err), 0, "%s", err.msg);
    /* Exact data: only rounding error, amplified by the conditioning of the scaled Vandermonde system (~1e4). */
    for (int k = 0; k < 5; k++) cr_assert(fabs(got[k] - c[k]) <= 1e-6 * fabs(c[k]), "c%d = %.12g, want %g", k, got[k], c[k]);
    cr_assert(r2 > 1 - 1e-12, "R^2 of an exact fit is 1, got %.15g", r2);
    cr_assert_eq(calibration_fit(x, y, 4, got, &r2, &err), -1, "4 samples cannot fix 5 coefficients");
}

Test(runner, teacache_svg_makes_teacache_decisions_with_sparse_attention) {
    char coeffs[4200], tc[4400], tcsvg[4600];
    snprintf(coeffs, sizeof coeffs, "%s/coeffs.txt", dir);
    FILE *f = fopen(coeffs, "w");
    fprintf(f, "0 0 0 0 0.3\n");
    fclose(f);
    snprintf(tc, sizeof tc, "teacache:thresh=1,warmup=1,cutoff=1,coeffs=%s", coeffs);
    snprintf(tcsvg, sizeof tcsvg, "teacache+svg:thresh=1,warmup=1,cutoff=1,coeffs=%s,sparsity=0.9,dense_steps=0,"
             "dense_layers=0,rows=4", coeffs);
    RunRecord a, b;
    free(run_spec(tc, &a));
    int blocks_a = engine.blocks;
    free(run_spec(tcsvg, &b));
    /* TeaCache's signal is the timestep embedding, which attention cannot change: identical decisions. */
    for (int i = 0; i < STEPS; i++)
        for (int br = 0; br < 2; br++)
            cr_assert_eq(a.step[i].computed[br], b.step[i].computed[br], "step %d branch %d", i, br);
    cr_assert_eq(engine.blocks, blocks_a, "a reused block stack runs no block, sparse or not");
    cr_assert(b.svg_layers == model.cfg.num_layers, "the composite records the svg trace");
    /* SVG ran on every computed stack (all layers, all heads classified sparse). At 12 tokens its profiling costs
     * more than the band saves, so no FLOP saving is expected here; tests/test_svg.c checks the savings. */
    int sparse_heads = 0, computed_calls = 0;
    for (int i = 0; i < STEPS; i++)
        for (int br = 0; br < 2; br++) {
            computed_calls += b.step[i].computed[br];
            for (int l = 0; l < b.svg_layers; l++) {
                size_t at = ((size_t)i * 2 + br) * b.svg_layers + l;
                sparse_heads += b.svg_spatial_heads[at] + b.svg_temporal_heads[at];
            }
        }
    cr_assert_eq(sparse_heads, computed_calls * model.cfg.num_layers * model.cfg.num_heads);
    record_free(&a);
    record_free(&b);
}

/* ---- interface v2: layer_end (H1), module_plan (H2), bytes_held (H4) ------------------------------------- */

/* From step 2 on, stop the stack after layer 0 and call it a reuse. */
static int stop_after_first_layer(Strategy *s, const StepInfo *st, int layer, float *tokens, size_t n,
                                  BranchTrace *trace) {
    (void)s, (void)tokens, (void)n;
    if (st->step < 2) return layer + 1;
    trace->computed = 0;
    return model.cfg.num_layers;
}
static size_t holds_a_kibibyte(const Strategy *s) {
    (void)s;
    return 1024;
}
static void patch_stop(Strategy *s) {
    s->layer_end = stop_after_first_layer;
    s->bytes_held = holds_a_kibibyte;
}

Test(runner, layer_end_stops_the_stack_and_counts_only_the_layers_run) {
    RunRecord rec;
    Error err = {{0}};
    cr_assert_eq(run_patched("none", patch_stop, &rec, NULL, &err), 0, "%s", err.msg);
    const int layers = model.cfg.num_layers, L = engine.base.L;
    cr_assert_eq(engine.blocks, 2 * 2 * layers + 2 * (STEPS - 2) * 1, "steps 0-1 run every layer, later ones one");
    cr_assert_eq(engine.heads, 2 * STEPS, "the head runs after a stopped stack");
    const double call = dit_flops_embed(&model.cfg, L) + dit_flops_head(&model.cfg, L);
    for (int i = 0; i < STEPS; i++) {
        const int run = i < 2 ? layers : 1;
        cr_assert_eq(rec.step[i].layers_run[0], run, "step %d", i);
        cr_assert_eq(rec.step[i].layers_run[1], run, "step %d", i);
        cr_assert_eq(rec.step[i].computed[0], i < 2, "step %d: a stop that reuses is recorded as reused", i);
        const double want = 2 * (call + run * dit_flops_block(&model.cfg, L));
        cr_assert_float_eq(rec.step[i].flops, want, want * 1e-12, "step %d", i);
        cr_assert_eq(rec.step[i].strategy_bytes, 1024.0);
    }
    cr_assert_eq(rec.strategy_bytes_peak, 1024.0);
    record_free(&rec);
}

static int stays_on_its_layer(Strategy *s, const StepInfo *st, int layer, float *tokens, size_t n, BranchTrace *trace) {
    (void)s, (void)st, (void)tokens, (void)n, (void)trace;
    return layer;
}
static void patch_loop(Strategy *s) { s->layer_end = stays_on_its_layer; }

Test(runner, layer_end_going_back_fails_the_run_with_a_message) {
    RunRecord rec;
    Error err = {{0}};
    cr_assert_eq(run_patched("none", patch_loop, &rec, NULL, &err), -1);
    cr_assert(strstr(err.msg, "strategy none: layer_end after layer 0 returned 0") != NULL, "%s", err.msg);
    record_free(&rec);
}

/* Per layer and branch one stored output per module: computed on even steps, supplied on odd ones. */
typedef struct {
    float *out[2][8][MODULE_COUNT];
} SupplyState;
static SupplyState supply;
static void even_compute_odd_supply(Strategy *s, const StepInfo *st, int layer, ModulePlan *plan) {
    (void)s;
    for (int m = 0; m < MODULE_COUNT; m++) {
        plan->out[m] = supply.out[st->branch][layer][m];
        plan->mode[m] = st->step % 2 && m != MODULE_FFN ? MODULE_SUPPLY : MODULE_COMPUTE;
    }
}
static void patch_supply(Strategy *s) { s->module_plan = even_compute_odd_supply; }

Test(runner, supplied_modules_are_not_counted) {
    const int layers = model.cfg.num_layers;
    cr_assert_leq(layers, 8);
    RunRecord rec, base;
    Error err = {{0}};
    const size_t tokens = (size_t)F * H * W / 4 * model.cfg.dim; /* patch 1x2x2 */
    for (int b = 0; b < 2; b++)
        for (int l = 0; l < layers; l++)
            for (int m = 0; m < MODULE_COUNT; m++) supply.out[b][l][m] = calloc(tokens, sizeof(float));
    float *x = NULL, *ref = run_spec("none", &base);
    cr_assert_eq(run_patched("none", patch_supply, &rec, &x, &err), 0, "%s", err.msg);
    const int L = engine.base.L;
    cr_assert_eq((size_t)L * model.cfg.dim, tokens);
    const double saved = dit_flops_module(&model.cfg, L, MODULE_SELF_ATTN) +
                         dit_flops_module(&model.cfg, L, MODULE_CROSS_ATTN);
    for (int i = 0; i < STEPS; i++) {
        const double want = base.step[i].flops - (i % 2 ? 2 * layers * saved : 0.0);
        cr_assert_float_eq(rec.step[i].flops, want, want * 1e-12, "step %d", i);
        cr_assert_eq(rec.step[i].layers_run[0], layers);
    }
    /* Supplying the previous step's attention changes the trajectory; computing everything does not. */
    size_t n = (size_t)model.cfg.in_dim * F * H * W;
    cr_assert_neq(memcmp(x, ref, n * sizeof(float)), 0);
    for (int b = 0; b < 2; b++)
        for (int l = 0; l < layers; l++)
            for (int m = 0; m < MODULE_COUNT; m++) free(supply.out[b][l][m]);
    free(x), free(ref);
    record_free(&rec);
    record_free(&base);
}

Test(runner, strategies_report_the_bytes_they_hold) {
    RunRecord rec;
    const size_t n = (size_t)model.cfg.in_dim * F * H * W;
    free(run_spec("easycache:thresh=0.5,warmup=2", &rec));
    cr_assert_eq(rec.strategy_bytes_peak, (double)(5 * n * sizeof(float)), "x_prev, x_last, y_last, two deltas");
    cr_assert_eq(rec.step[STEPS - 1].strategy_bytes, rec.strategy_bytes_peak);
    record_free(&rec);
    free(run_spec("static:interval=2,warmup=1", &rec));
    cr_assert_eq(rec.step[0].strategy_bytes, (double)(2 * n * sizeof(float)), "one delta per branch after step 0");
    record_free(&rec);
    free(run_spec("none", &rec));
    cr_assert_eq(rec.strategy_bytes_peak, 0.0);
    record_free(&rec);
}
