/* dicache (strategies/dicache.c) driven through its hooks on synthetic probe sequences with hand-derived decisions
 * and γ values, through the runner on a small random model (layers run, FLOPs, threshold 0 = none bit for bit), and
 * replayed on the tiny model against an independent transcription of the official dicache_forward
 * (tests/dicache_official.py through tests/strategy_replay.py).
 *
 * The synthetic model: block D-1 (the probe) sets the tokens to a prescribed p[t][b], the last block to a prescribed
 * out[t][b], the blocks between leave them. Probe outputs are chosen as p = x + a_t·r (or a_t·r with x fixed), so
 * every mean|·| the strategy takes is |a scalar difference|·mean|r| and the ratios are worked out by hand below. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/runner.h"
#include "models/safetensors.h"
#include "results/record.h"
#include "strategies/strategy.h"
#include "tests/fixtures.h"

#define N 41
#define MAXS 12

typedef struct {
    int steps, guidance_on, layers, depth;
    float x[MAXS][BRANCH_COUNT][N], p[MAXS][BRANCH_COUNT][N], out[MAXS][BRANCH_COUNT][N];
    /* results */
    char dec[BRANCH_COUNT][MAXS + 1];
    BranchTrace tr[MAXS][BRANCH_COUNT];
    int ran[MAXS][BRANCH_COUNT];
    float y[MAXS][BRANCH_COUNT][N];
} Run;

static Run *run_new(int steps, int guidance_on, int layers, int depth, uint64_t seed) {
    Run *r = calloc(1, sizeof *r);
    cr_assert_not_null(r);
    r->steps = steps, r->guidance_on = guidance_on, r->layers = layers, r->depth = depth;
    for (int t = 0; t < MAXS; t++)
        for (int b = 0; b < BRANCH_COUNT; b++) {
            fixture_random(r->x[t][b], N, seed + 100 * t + 10 * b + 1);
            fixture_random(r->p[t][b], N, seed + 100 * t + 10 * b + 2);
            fixture_random(r->out[t][b], N, seed + 100 * t + 10 * b + 3);
        }
    return r;
}

static StrategyEnv env_for(int steps, int layers) {
    StrategyEnv env = {.num_steps = steps, .num_layers = layers, .num_heads = 2, .dim = N, .model_numel = N,
                       .tokens_numel = N, .ops = cpu_vec_ops(), .model_name = "synthetic"};
    return env;
}

static void create_ok(Strategy *s, const char *spec, const StrategyEnv *env) {
    Error err = {{0}};
    cr_assert_eq(strategy_create(s, spec, env, &err), 0, "strategy_create(\"%s\"): %s", spec, err.msg);
}

static void create_fails(const char *spec, const StrategyEnv *env, const char *want) {
    Strategy s;
    Error err = {{0}};
    cr_assert_eq(strategy_create(&s, spec, env, &err), -1, "strategy_create(\"%s\") should fail", spec);
    cr_assert(strstr(err.msg, want), "\"%s\": message \"%s\" lacks \"%s\"", spec, err.msg, want);
}

/* One model call the way harness/runner.c makes it (blocks_begin, blocks with layer_end, blocks_end). */
static void call_one(Strategy *s, Run *r, int t, int b) {
    StepInfo st = {.step = t, .num_steps = r->steps, .branch = (Branch)b, .guidance_on = r->guidance_on,
                   .sigma = 1.0f - (float)t / (float)r->steps};
    st.timestep = 1000.0f * st.sigma;
    BranchTrace tr = {.computed = 1, .signal = NAN, .accumulator = NAN, .threshold = NAN, .k = NAN};
    float tokens[N], e[N], e0[6 * N];
    memcpy(tokens, r->x[t][b], sizeof tokens); /* embed */
    memset(e, 0, sizeof e), memset(e0, 0, sizeof e0);
    BlockInputs in = {.e = e, .e0 = e0, .dim = N, .tokens = tokens, .n_tokens = N};
    cr_assert_eq(s->blocks_begin(s, &st, &in, &tr), STRATEGY_COMPUTE, "dicache decides after the probe");
    int ran = 0;
    for (int layer = 0; layer < r->layers;) {
        if (layer == r->depth - 1) memcpy(tokens, r->p[t][b], sizeof tokens);
        if (layer == r->layers - 1) memcpy(tokens, r->out[t][b], sizeof tokens);
        ran++;
        int next = s->layer_end(s, &st, layer, tokens, N, &tr);
        cr_assert(next > layer && next <= r->layers, "step %d: layer_end after %d returned %d", t, layer, next);
        layer = next;
    }
    s->blocks_end(s, &st, tokens, N);
    memcpy(r->y[t][b], tokens, sizeof tokens); /* head */
    r->dec[b][t] = tr.computed ? 'C' : 'R';
    r->tr[t][b] = tr;
    r->ran[t][b] = ran;
    cr_assert_eq(ran, tr.computed ? r->layers : r->depth, "step %d branch %d: %d layers ran (computed %d)", t, b,
                 ran, tr.computed);
}

static void drive_steps(Strategy *s, Run *r, int from, int to) {
    for (int t = from; t < to; t++)
        for (int b = 0; b < (r->guidance_on ? 2 : 1); b++) call_one(s, r, t, b);
}

static void drive(Strategy *s, Run *r) {
    memset(r->dec, 0, sizeof r->dec);
    drive_steps(s, r, 0, r->steps);
}

/* Fixed x = v for every call, probe output p_t = a_t·r. */
static void shape_scalar_probe(Run *r, int b, const double *a, uint64_t seed) {
    float v[N], dir[N];
    fixture_random(v, N, seed);
    fixture_random(dir, N, seed + 1);
    for (int t = 0; t < r->steps; t++)
        for (int i = 0; i < N; i++) {
            r->x[t][b][i] = v[i];
            r->p[t][b][i] = (float)(a[t] * dir[i]);
        }
}

/* The skipped output must be x_t + R₂ + γ(R₁ - R₂) with R = out - x of the branch's last two computed calls c2 < c1
 * (c2 < 0: plain x_t + R₁). Compared in double within 1e-5 of the scale. */
static void check_skip_output(const Run *r, int t, int b, int c1, int c2, double gamma) {
    for (int i = 0; i < N; i++) {
        double r1 = (double)r->out[c1][b][i] - r->x[c1][b][i];
        double want = (double)r->x[t][b][i] + r1;
        if (c2 >= 0) {
            double r2 = (double)r->out[c2][b][i] - r->x[c2][b][i];
            want = r->x[t][b][i] + r2 + gamma * (r1 - r2);
        }
        cr_assert(fabs(r->y[t][b][i] - want) <= 1e-5 * (1.0 + fabs(want)),
                  "step %d branch %d [%d]: skipped output %.9g, want %.9g", t, b, i, r->y[t][b][i], want);
    }
}

#define CLOSE(a, b) (fabs((double)(a) - (double)(b)) <= 1e-5)

/* thresh 0.1, warmup 2 (calls 0..3 retained: guidance off, steps 0 and 1), probe a_t:
 *   t0 1.00 C (retained)          t1 1.02 C (retained): computed c2 = t0, c1 = t1
 *   t2 1.08 δy = .06/1.02 = .0588, acc .0588 < .1 R   γ = |1.08-1.00|/|1.02-1.00| = 4   -> clamped 2
 *   t3 1.25 δy = .17/1.08 = .1574, acc .2163      C   (acc 0): c2 = t1, c1 = t3
 *   t4 1.20 δy = .05/1.25 = .04                   R   γ = |1.20-1.02|/|1.25-1.02| = .7826 -> clamped 1
 *   t5 1.23 δy = .03/1.20 = .025, acc .065        R   γ = .21/.23 = .913                  -> 1
 *   t6 1.40 δy = .17/1.23 = .1382, acc .2032      C   c2 = t3, c1 = t6
 *   t7 1.45 δy = .05/1.40 = .0357                 R   γ = .20/.15 = 1.3333
 *   t8 1.46 δy = .01/1.45 = .0069, acc .0426      R   γ = .21/.15 = 1.4
 *   t9 1.60 δy = .14/1.46 = .0959, acc .1385      C
 * (t4, t5: |q - Q₂| < |Q₁ - Q₂| gives γ = 1, plain reuse of R₁.) */
static const double SEQ_A[10] = {1.00, 1.02, 1.08, 1.25, 1.20, 1.23, 1.40, 1.45, 1.46, 1.60};

Test(dicache, hand_derived_skips_gamma_and_its_clamps) {
    StrategyEnv env = env_for(10, 2);
    Strategy s;
    create_ok(&s, "dicache:thresh=0.1,warmup=2", &env);
    cr_assert_str_eq(s.spec, "dicache:thresh=0.1,warmup=2,probe_depth=1");
    Run *r = run_new(10, 0, 2, 1, 11);
    shape_scalar_probe(r, BRANCH_COND, SEQ_A, 5);
    drive(&s, r);
    cr_assert_str_eq(r->dec[BRANCH_COND], "CCRCRRCRRC");
    const double gamma[10] = {NAN, NAN, 2, NAN, 1, 1, NAN, 0.2 / 0.15, 0.21 / 0.15, NAN};
    const double dy[10] = {NAN, NAN, .06 / 1.02, .17 / 1.08, .05 / 1.25, .03 / 1.20, .17 / 1.23, .05 / 1.40,
                           .01 / 1.45, .14 / 1.46};
    const double acc[10] = {0, 0, .06 / 1.02, 0, .05 / 1.25, .05 / 1.25 + .03 / 1.20, 0, .05 / 1.40,
                            .05 / 1.40 + .01 / 1.45, 0};
    for (int t = 0; t < 10; t++) {
        const BranchTrace *tr = &r->tr[t][BRANCH_COND];
        if (isnan(gamma[t])) cr_expect(isnan(tr->k), "step %d: k %g, want NaN", t, tr->k);
        else cr_expect(CLOSE(tr->k, gamma[t]), "step %d: γ %.7g, want %.7g", t, tr->k, gamma[t]);
        if (isnan(dy[t])) cr_expect(isnan(tr->signal), "step %d: signal %g in retention", t, tr->signal);
        else cr_expect(CLOSE(tr->signal, dy[t]), "step %d: δy %.7g, want %.7g", t, tr->signal, dy[t]);
        cr_expect(CLOSE(tr->accumulator, acc[t]), "step %d: acc %.7g, want %.7g", t, tr->accumulator, acc[t]);
        cr_expect_eq(tr->threshold, 0.1f);
    }
    for (int t = 0; t < 10; t++)
        if (r->dec[BRANCH_COND][t] == 'C')
            cr_assert(memcmp(r->y[t][0], r->out[t][0], sizeof r->y[t][0]) == 0, "step %d: computed output", t);
    check_skip_output(r, 2, 0, 1, 0, 2.0);
    check_skip_output(r, 4, 0, 3, 1, 1.0);
    check_skip_output(r, 5, 0, 3, 1, 1.0);
    check_skip_output(r, 7, 0, 6, 3, 0.2 / 0.15);
    check_skip_output(r, 8, 0, 6, 3, 0.21 / 0.15);
    /* γ = 1 is plain reuse of R₁: x_t + R₁ (to float rounding). */
    check_skip_output(r, 4, 0, 3, -1, 0.0);
    strategy_destroy(&s);
    free(r);
}

/* probe_depth 2 of 3 layers, a threshold never reached (every call after warm-up skips), x random per call and
 * p_t = x_t + a_t·r, so q = p - x_in = a_t·r and γ = |a_t - a_c2|/|a_c1 - a_c2| whatever x. a = 1, 2 (computed),
 * then 2.5 -> γ 1.5, 1.2 -> .2 -> 1, 5 -> 4 -> 2. The skipped output must use this call's x_in, not a stored one. */
Test(dicache, skip_uses_this_calls_input_and_the_last_two_residuals) {
    StrategyEnv env = env_for(5, 3);
    Strategy s;
    create_ok(&s, "dicache:thresh=1e9,warmup=2,probe_depth=2", &env);
    Run *r = run_new(5, 0, 3, 2, 23);
    const double a[5] = {1, 2, 2.5, 1.2, 5};
    float dir[N];
    fixture_random(dir, N, 99);
    for (int t = 0; t < 5; t++)
        for (int i = 0; i < N; i++) r->p[t][0][i] = (float)(r->x[t][0][i] + a[t] * dir[i]);
    drive(&s, r);
    cr_assert_str_eq(r->dec[BRANCH_COND], "CCRRR");
    const double gamma[5] = {NAN, NAN, 1.5, 1, 2};
    for (int t = 2; t < 5; t++) {
        cr_expect(CLOSE(r->tr[t][0].k, gamma[t]), "step %d: γ %.7g, want %g", t, r->tr[t][0].k, gamma[t]);
        cr_expect_eq(r->ran[t][0], 2, "a skip runs the probe's 2 layers");
        check_skip_output(r, t, 0, 1, 0, gamma[t]);
    }
    strategy_destroy(&s);
    free(r);
}

/* Guidance on, warmup 1 (calls 0, 1: step 0 of both branches), thresh 0.1; each branch its own probe sequence.
 *   cond   a 1.00 C | 1.02 δy .02 R (one residual: x + R₁, k NaN) | 1.20 δy .1765 acc .1961 C | 1.21 δy .0083 R
 *          with c2 = t0, c1 = t2: γ = .21/.20 = 1.05
 *   uncond a 1.00 C | 1.50 δy .5 C | 1.52 δy .0133 R γ = .52/.50 = 1.04 | 1.53 δy .0066 acc .0199 R γ = 1.06 */
Test(dicache, branches_are_independent_and_one_residual_is_plain_reuse) {
    StrategyEnv env = env_for(4, 2);
    Strategy s;
    create_ok(&s, "dicache:thresh=0.1,warmup=1", &env);
    Run *r = run_new(4, 1, 2, 1, 31);
    const double ac[4] = {1.00, 1.02, 1.20, 1.21}, au[4] = {1.00, 1.50, 1.52, 1.53};
    shape_scalar_probe(r, BRANCH_COND, ac, 7);
    shape_scalar_probe(r, BRANCH_UNCOND, au, 8);
    drive(&s, r);
    cr_assert_str_eq(r->dec[BRANCH_COND], "CRCR");
    cr_assert_str_eq(r->dec[BRANCH_UNCOND], "CCRR");
    cr_expect(isnan(r->tr[1][0].k), "one stored residual: plain reuse, no γ");
    check_skip_output(r, 1, 0, 0, -1, 0.0);
    cr_expect(CLOSE(r->tr[3][0].k, 1.05), "cond γ %.7g", r->tr[3][0].k);
    check_skip_output(r, 3, 0, 2, 0, 1.05);
    cr_expect(CLOSE(r->tr[2][1].k, 1.04), "uncond γ %.7g", r->tr[2][1].k);
    cr_expect(CLOSE(r->tr[3][1].k, 1.06), "uncond γ %.7g", r->tr[3][1].k);
    cr_expect(CLOSE(r->tr[3][1].accumulator, .02 / 1.50 + .01 / 1.52), "uncond acc %.7g", r->tr[3][1].accumulator);
    check_skip_output(r, 2, 1, 1, 0, 1.04);
    check_skip_output(r, 3, 1, 1, 0, 1.06);
    strategy_destroy(&s);
    free(r);
}

/* warmup 0: a branch's first call has no probe reference and computes in full (the official code would fail). */
Test(dicache, first_call_of_a_branch_computes_without_warmup) {
    StrategyEnv env = env_for(3, 2);
    Strategy s;
    create_ok(&s, "dicache:thresh=1e9,warmup=0", &env);
    Run *r = run_new(3, 1, 2, 1, 41);
    drive(&s, r);
    cr_assert_str_eq(r->dec[BRANCH_COND], "CRR");
    cr_assert_str_eq(r->dec[BRANCH_UNCOND], "CRR");
    strategy_destroy(&s);
    free(r);
}

Test(dicache, parameters_and_canonical_spec) {
    StrategyEnv env = env_for(50, 30);
    const char *cases[][2] = {
        {"dicache", "dicache:thresh=0.08,warmup=10,probe_depth=1"},                  /* int(100 * 0.2) = 20 calls */
        {"dicache:retention=0.1,thresh=0.2", "dicache:thresh=0.2,warmup=5,probe_depth=1"},
        {"dicache:retention=0.25", "dicache:thresh=0.08,retention=0.25,probe_depth=1"}, /* 25 calls: odd */
        {"dicache:warmup=3,probe_depth=29", "dicache:thresh=0.08,warmup=3,probe_depth=29"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        Strategy s, again;
        create_ok(&s, cases[k][0], &env);
        cr_assert_str_eq(s.spec, cases[k][1], "spec \"%s\"", cases[k][0]);
        create_ok(&again, s.spec, &env);
        cr_assert_str_eq(again.spec, s.spec);
        strategy_destroy(&s);
        strategy_destroy(&again);
    }
    StrategyEnv env30 = env_for(30, 30);
    Strategy s;
    create_ok(&s, "dicache", &env30); /* int(60 * 0.2) = 12 calls = 6 steps */
    cr_assert_str_eq(s.spec, "dicache:thresh=0.08,warmup=6,probe_depth=1");
    strategy_destroy(&s);
    create_fails("dicache:warmup=2,retention=0.1", &env, "dicache: give warmup (steps) or retention");
    create_fails("dicache:probe_depth=30", &env, "dicache: probe_depth must be");
    create_fails("dicache:probe_depth=0", &env, "dicache: probe_depth must be");
    create_fails("dicache:retention=1.5", &env, "dicache: retention must be");
    create_fails("dicache:thresh=-0.1", &env, "dicache: thresh must be >= 0");
    StrategyEnv one = env_for(50, 1);
    create_fails("dicache", &one, "at least 2 layers");
}

/* bytes_held: nothing before a call; x_in and 5 tensors per branch that has run (P, R₁, R₂, Q₁, Q₂). clone: a copy
 * taken mid-run continues exactly as the original does, and owns its buffers (the original is gone by then). */
Test(dicache, bytes_held_and_clone) {
    StrategyEnv env = env_for(10, 2);
    Strategy s, c;
    create_ok(&s, "dicache:thresh=0.1,warmup=2", &env);
    Run *r = run_new(10, 1, 2, 1, 51), *rc = malloc(sizeof *rc);
    cr_assert_not_null(rc);
    shape_scalar_probe(r, BRANCH_COND, SEQ_A, 5);
    shape_scalar_probe(r, BRANCH_UNCOND, SEQ_A, 6);
    cr_assert_eq(strategy_bytes_held(&s), 0);
    call_one(&s, r, 0, BRANCH_COND);
    cr_assert_eq(strategy_bytes_held(&s), 6 * N * sizeof(float));
    call_one(&s, r, 0, BRANCH_UNCOND);
    cr_assert_eq(strategy_bytes_held(&s), 11 * N * sizeof(float));
    drive_steps(&s, r, 1, 4);
    memcpy(rc, r, sizeof *r);
    Error err = {{0}};
    cr_assert_eq(strategy_clone(&c, &s, &err), 0, "%s", err.msg);
    cr_assert_eq(strategy_bytes_held(&c), strategy_bytes_held(&s));
    drive_steps(&s, r, 4, 10);
    strategy_destroy(&s);
    drive_steps(&c, rc, 4, 10);
    cr_assert_str_eq(r->dec[0], "CCRCRRCRRC");
    cr_assert_str_eq(rc->dec[0], r->dec[0]);
    cr_assert_str_eq(rc->dec[1], r->dec[1]);
    cr_assert(memcmp(rc->y, r->y, sizeof r->y) == 0, "the clone's outputs equal the original's");
    strategy_destroy(&c);
    free(r);
    free(rc);
}

/* ---------------------------------------------------------------- through the runner, small random model */

static void run_small(int layers, const char *spec, RunRecord *rec, float **final_x, double *embed_head,
                      double *block, size_t *tokens) {
    DitConfig cfg = *fixture_small_config();
    cfg.num_layers = layers;
    DitModel model;
    Engine *e;
    Error err = {{0}};
    cr_assert_eq(dit_init_random(&model, &cfg, 3, &err), 0, "%s", err.msg);
    cr_assert_eq(engine_create_cpu(&e, &model, &err), 0, "%s", err.msg);
    const int F = 2, H = 4, W = 6, steps = 12;
    cr_assert_eq(e->prepare(e, F, H, W, &err), 0, "%s", err.msg);
    size_t tn = (size_t)cfg.text_len * cfg.text_dim, n = (size_t)cfg.in_dim * F * H * W;
    float *text = calloc(tn, sizeof(float)), *zeros = calloc(tn, sizeof(float));
    *final_x = malloc(n * sizeof(float));
    fixture_random(text, 2 * (size_t)cfg.text_dim, 5);
    StrategyEnv env = fixture_strategy_env(e, steps, n);
    Strategy s;
    cr_assert_eq(strategy_create(&s, spec, &env, &err), 0, "%s: %s", spec, err.msg);
    RunSettings rs = {.steps = steps, .shift = 3.0f, .guidance = 4.0f, .seed = 9, .F = F, .H = H, .W = W,
                      .text = {text, zeros}};
    memset(rec, 0, sizeof *rec);
    cr_assert_eq(runner_sample(e, &s, &rs, rec, *final_x, &err), 0, "%s", err.msg);
    *embed_head = dit_flops_embed(&cfg, e->L) + dit_flops_head(&cfg, e->L);
    *block = dit_flops_block(&cfg, e->L);
    *tokens = (size_t)e->L * cfg.dim;
    strategy_destroy(&s);
    e->destroy(e);
    dit_free(&model);
    free(text);
    free(zeros);
}

/* A skip costs embed + probe_depth blocks + head (runner's layers_run), a compute the whole forward; threshold 0
 * never skips (δy >= 0) and, resuming from the probe output, reproduces `none` bit for bit. */
Test(dicache, runner_layers_run_flops_and_threshold_zero) {
    RunRecord none, rec;
    float *ref, *x;
    double eh, blk;
    size_t tokens;
    run_small(3, "none", &none, &ref, &eh, &blk, &tokens);
    run_small(3, "dicache:thresh=0,warmup=1", &rec, &x, &eh, &blk, &tokens);
    cr_assert_eq(rec.calls_computed, rec.calls_total);
    cr_assert_eq(memcmp(x, ref, 3 * 2 * 4 * 6 * sizeof(float)), 0, "threshold 0 equals none bit for bit");
    free(x);
    record_free(&rec);
    for (int depth = 1; depth <= 2; depth++) {
        char spec[64];
        snprintf(spec, sizeof spec, "dicache:thresh=0.5,warmup=2,probe_depth=%d", depth);
        run_small(3, spec, &rec, &x, &eh, &blk, &tokens);
        cr_assert(rec.calls_skipped > 0, "%s: threshold 0.5 should skip on this trajectory", spec);
        for (int i = 0; i < rec.steps; i++) {
            const StepRecord *st = &rec.step[i];
            double want = 0.0;
            for (int b = 0; b < 2; b++) {
                cr_assert_eq(st->layers_run[b], st->computed[b] ? 3 : depth, "%s step %d branch %d", spec, i, b);
                want += eh + st->layers_run[b] * blk;
                if (!st->computed[b]) cr_assert(i >= 2, "%s: no skip in warm-up", spec);
            }
            cr_assert(fabs(st->flops - want) <= 1e-9 * want, "%s step %d: FLOPs %.6g, want %.6g", spec, i, st->flops,
                      want);
            /* x_in and P, R₁, R₂, Q₁, Q₂ of both branches, each [L][dim]. */
            cr_assert_eq(st->strategy_bytes, (double)(11 * tokens * sizeof(float)), "%s step %d: %g bytes", spec, i,
                         st->strategy_bytes);
        }
        free(x);
        record_free(&rec);
    }
    free(ref);
    record_free(&none);
}

/* ---------------------------------------------------------------- replay against the official code */

static float *read_st(const char *path, const char *name, size_t want_n) {
    StFile f;
    Error err = {{0}};
    cr_assert_eq(st_open(&f, path, &err), 0, "%s", err.msg);
    const StTensor *t = st_find(&f, name);
    cr_assert_not_null(t, "%s: no %s", path, name);
    cr_assert_eq(st_numel(t->ndim, t->shape), want_n, "%s: %s has %zu values, want %zu", path, name,
                 (size_t)st_numel(t->ndim, t->shape), want_n);
    float *v = malloc(want_n * sizeof(float));
    cr_assert_eq(st_to_f32(t, v, &err), 0, "%s", err.msg);
    st_close(&f);
    return v;
}

/* The C run (float32) and tests/dicache_official.py (float64 torch) on the tiny model, 10 CFG steps (retention
 * int(20 · 0.2) = 4 calls): identical decisions on every call, γ within 1e-4 wherever the official code aligned,
 * δy within 1e-4, and the final latent within 3e-4 of its scale (measured: δy 2e-6, γ 1.2e-6, latent 5.6e-5 of scale
 * at probe_depth 1; 3e-7, 8e-7, 1.3e-5 at 2). The threshold is chosen so that no accumulator the official code
 * compares lies within 1e-3 of it (checked), far more than the δy differences could add up to. Thresholds are higher
 * than Wan's 0.08: the tiny model's probe output moves more per step (0.08 skips nothing in 10 steps). */
static void replay(double thresh, int depth, int min_skips) {
    const char *py = fixture_python();
    char cmd[9000], log[8192];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import numpy, torch' >/dev/null 2>&1", py);
    if (system(cmd) != 0) cr_skip_test("%s cannot import numpy and torch (Debian: python3-numpy, python3-torch)", py);
    const int steps = 10, seed = 7;
    const char *prompt = "red circle moving right";
    char *dir = fixture_tmpdir();
    char out[4200], rec_path[4300], case_path[4300], py_out[4300], spec[128], th[32];
    snprintf(out, sizeof out, "%s/runs", dir);
    strategy_format_double(thresh, th, sizeof th);
    snprintf(spec, sizeof spec, "dicache:thresh=%s,probe_depth=%d", th, depth);
    const char *run[] = {"run", "--prompt", prompt, "--seed", "7", "--steps", "10", "--strategy", spec, "--latents",
                         "--quiet", "--out", out, NULL};
    cr_assert_eq(fixture_run_cli(log, sizeof log, run), 0, "%s", log);
    snprintf(rec_path, sizeof rec_path, "%s/tiny__dicache_thresh-%s_warmup-2_probe_depth-%d__p0__s7.h5", out, th,
             depth);
    snprintf(case_path, sizeof case_path, "%s/case.safetensors", dir);
    snprintf(py_out, sizeof py_out, "%s/py.safetensors", dir);
    const DitConfig *cfg = dit_config_by_name("tiny");
    cr_assert_eq(fixture_replay_case(case_path, cfg, "models/tiny/tiny.safetensors", prompt, "", seed, steps,
                                     cfg->default_shift, cfg->default_guidance),
                 0);
    snprintf(cmd, sizeof cmd, "'%s' tests/dicache_official.py '%s' '%s' %s 0.2 %d 2>&1", py, case_path, py_out, th,
             depth);
    cr_assert_eq(system(cmd), 0, "%s", cmd);

    RunRecord rec = {0};
    Error err = {{0}};
    cr_assert_eq(record_read(rec_path, &rec, &err), 0, "%s", err.msg);
    cr_assert_not_null(rec.latents);
    cr_assert_eq(rec.steps, steps);
    const size_t calls = 2 * (size_t)steps, per_step = (size_t)rec.lc * rec.lf * rec.lh * rec.lw;
    float *computed = read_st(py_out, "computed", calls), *gamma = read_st(py_out, "gamma", calls);
    float *dy = read_st(py_out, "delta_y", calls), *acc = read_st(py_out, "acc_test", calls);
    float *lat = read_st(py_out, "latents", steps * per_step);
    int skips = 0, aligned = 0;
    double margin = INFINITY, dy_diff = 0.0, g_diff = 0.0;
    for (int i = 0; i < steps; i++)
        for (int b = 0; b < 2; b++) {
            const size_t c = 2 * (size_t)i + b;
            const StepRecord *st = &rec.step[i];
            cr_assert_eq(st->computed[b], (int)computed[c], "step %d branch %d: C %s, official %s", i, b,
                         st->computed[b] ? "computed" : "skipped", computed[c] ? "computed" : "skipped");
            cr_assert_eq(isnan(st->signal[b]), isnan(dy[c]), "step %d branch %d: δy measured in one only", i, b);
            cr_assert_eq(isnan(st->k[b]), isnan(gamma[c]), "step %d branch %d: γ in one only", i, b);
            if (!isnan(dy[c])) {
                dy_diff = fmax(dy_diff, fabs(st->signal[b] - dy[c]));
                margin = fmin(margin, fabs(acc[c] - thresh));
            }
            if (!isnan(gamma[c])) g_diff = fmax(g_diff, fabs(st->k[b] - gamma[c])), aligned++;
            skips += !st->computed[b];
        }
    cr_assert_geq(skips, min_skips, "only %d skips: the replay would test little", skips);
    cr_assert_gt(aligned, 0, "no trajectory-aligned skip");
    cr_assert_geq(margin, 1e-3, "an accumulator lies %.3g from the threshold: choose another", margin);
    cr_expect_leq(dy_diff, 1e-4, "max |δy C - official| %.3g", dy_diff);
    cr_expect_leq(g_diff, 1e-4, "max |γ C - official| %.3g", g_diff);
    double diff = 0.0, scale = 0.0;
    const size_t last = (size_t)(steps - 1) * per_step;
    for (size_t j = 0; j < per_step; j++) {
        diff = fmax(diff, fabs((double)rec.latents[last + j] - lat[last + j]));
        scale = fmax(scale, fabs((double)lat[last + j]));
    }
    cr_expect_leq(diff, 3e-4 * scale, "final latent: max |C - official| %.3g (scale %.3g)", diff, scale);
    cr_log_info("dicache replay thresh %s depth %d: %d skips (%d aligned), margin %.3g, max δy diff %.3g, γ diff "
                "%.3g, final latent diff %.3g of scale %.3g",
                th, depth, skips, aligned, margin, dy_diff, g_diff, diff, scale);
    free(computed), free(gamma), free(dy), free(acc), free(lat);
    record_free(&rec);
    fixture_rmdir(dir);
    free(dir);
}

Test(dicache, replay_matches_official_probe_depth_1, .timeout = 180) { replay(0.25, 1, 6); }
Test(dicache, replay_matches_official_probe_depth_2, .timeout = 180) { replay(0.3, 2, 6); }
