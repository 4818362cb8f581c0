/* fbcache and dbcache (strategies/dbcache.c, strategies/fbcache.c): decision strings worked out by hand from the
 * official code (ParaAttention 4de137c get_can_use_cache; cache-dit f86744a can_cache / add_cached_step /
 * TaylorSeerState), driven through the runner's hook sequence on made-up tensors; the golden of strategies-2.md
 * §3.5; FLOPs, layers run and bytes held on a real (small, random) model; and the tiny-model replay against
 * tests/dbcache_official.py. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/runner.h"
#include "strategies/strategy.h"
#include "tests/fixtures.h"

#define NL 4    /* layers of the synthetic model */
#define NT 24   /* tokens numel */
#define MAXS 14 /* steps */

/* One synthetic trajectory: per (step, branch) the block-stack input h0 and what each layer adds. */
typedef struct {
    int steps, layers;
    float h0[MAXS][BRANCH_COUNT][NT];
    float delta[MAXS][BRANCH_COUNT][NL][NT];
    /* results */
    char dec[BRANCH_COUNT][MAXS + 1];
    int layers_run[MAXS][BRANCH_COUNT];
    BranchTrace tr[MAXS][BRANCH_COUNT];
    float out[MAXS][BRANCH_COUNT][NT];
    float full[MAXS][BRANCH_COUNT][NL + 1][NT]; /* h_l of a call that ran every layer (the reference) */
} Traj;

static float base_vec[BRANCH_COUNT][NL][NT];

static Traj *traj_new(int steps, int layers, unsigned seed) {
    Traj *t = calloc(1, sizeof *t);
    cr_assert_not_null(t);
    t->steps = steps, t->layers = layers;
    float tmp[NT];
    for (int b = 0; b < BRANCH_COUNT; b++)
        for (int l = 0; l < NL; l++) fixture_random(base_vec[b][l], NT, 1000u + seed * 31u + (unsigned)(b * NL + l));
    for (int s = 0; s < steps; s++)
        for (int b = 0; b < BRANCH_COUNT; b++) {
            fixture_random(t->h0[s][b], NT, seed * 977u + (unsigned)(s * 2 + b));
            for (int l = 0; l < NL; l++) {
                fixture_random(tmp, NT, seed * 7919u + (unsigned)((s * 2 + b) * NL + l));
                for (int i = 0; i < NT; i++) t->delta[s][b][l][i] = tmp[i];
            }
        }
    return t;
}

/* Layer l of (step, branch) adds a * base[b][l]: its residual is a scaled fixed vector, so rel-L1 diffs between
 * steps are |a - a_ref| / |a_ref| (up to float rounding, far from every threshold below). */
static void set_scale(Traj *t, int s, int b, int l, double a) {
    for (int i = 0; i < NT; i++) t->delta[s][b][l][i] = (float)(a * base_vec[b][l][i]);
}

static StrategyEnv env_of(int steps, int layers) {
    StrategyEnv env = {.num_steps = steps, .num_layers = layers, .num_heads = 2, .dim = NT,
                       .model_numel = NT, .tokens_numel = NT, .ops = cpu_vec_ops(), .model_name = "synthetic"};
    return env;
}

static void create_ok(Strategy *s, const char *spec, const StrategyEnv *env) {
    Error err = {{0}};
    cr_assert_eq(strategy_create(s, spec, env, &err), 0, "strategy_create(\"%s\"): %s", spec, err.msg);
}

/* One call as harness/runner.c makes it: blocks_begin, then layers as layer_end directs. */
static void one_call(Strategy *s, Traj *t, int step, int b, int guidance_on) {
    StepInfo st = {.step = step, .num_steps = t->steps, .branch = (Branch)b, .guidance_on = guidance_on,
                   .sigma = 1.0f - (float)step / (float)t->steps};
    st.timestep = 1000.0f * st.sigma;
    BranchTrace tr = {.computed = 1, .signal = NAN, .accumulator = NAN, .threshold = NAN, .k = NAN};
    float tokens[NT];
    memcpy(tokens, t->h0[step][b], sizeof tokens);
    memcpy(t->full[step][b][0], tokens, sizeof tokens);
    for (int l = 0; l < t->layers; l++)
        for (int i = 0; i < NT; i++) t->full[step][b][l + 1][i] = t->full[step][b][l][i] + t->delta[step][b][l][i];
    BlockInputs in = {.tokens = tokens, .n_tokens = NT, .dim = NT};
    cr_assert_eq(s->blocks_begin(s, &st, &in, &tr), STRATEGY_COMPUTE);
    int run = 0;
    for (int layer = 0; layer < t->layers;) {
        for (int i = 0; i < NT; i++) tokens[i] += t->delta[step][b][layer][i];
        run++;
        int next = s->layer_end(s, &st, layer, tokens, NT, &tr);
        cr_assert(next > layer && next <= t->layers, "step %d: layer_end(%d) returned %d", step, layer, next);
        layer = next;
    }
    if (s->blocks_end) s->blocks_end(s, &st, tokens, NT);
    memcpy(t->out[step][b], tokens, sizeof tokens);
    t->layers_run[step][b] = run;
    t->tr[step][b] = tr;
    t->dec[b][step] = tr.computed ? 'C' : 'R';
}

static void drive(Strategy *s, Traj *t, int guidance_on) {
    memset(t->dec, 0, sizeof t->dec);
    for (int step = 0; step < t->steps; step++)
        for (int b = 0; b < (guidance_on ? 2 : 1); b++) one_call(s, t, step, b, guidance_on);
}

/* Every output is exactly what the official forward gives: a computed call ran every layer; a hit at step t is
 * h_F(t) + (h_{N-Bn} - h_F)(c) run through the last Bn layers, c the branch's last computed step. */
static void check_outputs(const Traj *t, int fn, int bn, int branches) {
    for (int b = 0; b < branches; b++) {
        int last = -1;
        for (int s = 0; s < t->steps; s++) {
            if (t->dec[b][s] == 'C') {
                cr_assert_eq(t->layers_run[s][b], t->layers, "step %d: a computed call runs every layer", s);
                cr_assert_eq(memcmp(t->out[s][b], t->full[s][b][t->layers], sizeof t->out[s][b]), 0,
                             "step %d branch %d: computed output", s, b);
                last = s;
                continue;
            }
            cr_assert(last >= 0);
            cr_assert_eq(t->layers_run[s][b], fn + bn, "step %d: a hit runs fn + bn layers", s);
            float h[NT];
            for (int i = 0; i < NT; i++) {
                float resid = t->full[last][b][t->layers - bn][i] - t->full[last][b][fn][i];
                h[i] = t->full[s][b][fn][i] + resid;
            }
            for (int l = t->layers - bn; l < t->layers; l++)
                for (int i = 0; i < NT; i++) h[i] += t->delta[s][b][l][i];
            cr_assert_eq(memcmp(h, t->out[s][b], sizeof h), 0, "step %d branch %d: hit output", s, b);
        }
    }
}

/* ------------------------------------------------------------------------------------------------ fbcache */

/* Block 0's residual grows by 3.5% of the first one per step, τ = 0.05. Against the LAST COMPUTED reference
 * (ParaAttention: nothing is stored on a hit):
 *   t:     0     1      2      3      4      5      6      7      8      9
 *   a_t:   1     1.035  1.07   1.105  1.14   1.175  1.21   1.245  1.28   1.315
 *   ref:   -     1      1      1.07   1.07   1.14   1.14   1.21   1.21   1.28
 *   d:     -     .035   .070   .0327  .0654  .0307  .0614  .0289  .0579  .0273
 *          C     R      C      R      C      R      C      R      C      R
 * Compared with the previous step instead, every d is about .03 and all but step 0 would be cached.
 * The uncond branch (its own reference, ParaAttention's alter buffers): a = 1 (t < 5), 1.2 (t >= 5)
 *   d:     -     0 ... 0 (t=1..4)  .2 (t=5)  0 ... (t=6..9)  ->  C R R R R C R R R R
 * (a shared reference would compare the two branches' unrelated residuals: d ~ 1, never cached). */
Test(dbcache, fbcache_measures_against_the_last_computed_step) {
    StrategyEnv env = env_of(10, NL);
    Traj *t = traj_new(10, NL, 1);
    for (int s = 0; s < 10; s++) {
        set_scale(t, s, BRANCH_COND, 0, 1.0 + 0.035 * s);
        set_scale(t, s, BRANCH_UNCOND, 0, s < 5 ? 1.0 : 1.2);
    }
    Strategy s;
    create_ok(&s, "fbcache:thresh=0.05", &env);
    cr_assert_str_eq(s.spec, "fbcache:thresh=0.05,warmup=0,taylorseer=0,taylorseer_order=2");
    drive(&s, t, 1);
    cr_assert_str_eq(t->dec[BRANCH_COND], "CRCRCRCRCR");
    cr_assert_str_eq(t->dec[BRANCH_UNCOND], "CRRRRCRRRR");
    check_outputs(t, 1, 0, 2);
    /* The trace: d as derived above (float rounding only), τ, no d on the first step. */
    const double d[10] = {NAN, .035, .07, .035 / 1.07, .07 / 1.07, .035 / 1.14, .07 / 1.14, .035 / 1.21, .07 / 1.21,
                          .035 / 1.28};
    cr_assert(isnan(t->tr[0][0].signal));
    for (int i = 1; i < 10; i++) {
        cr_assert(fabs(t->tr[i][0].signal - d[i]) < 1e-5, "step %d: d %.6f, want %.6f", i, t->tr[i][0].signal, d[i]);
        cr_assert_float_eq(t->tr[i][0].threshold, 0.05f, 1e-9);
        cr_assert(fabs(d[i] - 0.05) > 0.005, "step %d: d within float noise of τ", i);
    }
    strategy_destroy(&s);

    /* warmup = 3 computes steps 0..2 (step < warmup): the references are then steps 2, 4, 6, 8. */
    create_ok(&s, "fbcache:thresh=0.05,warmup=3", &env);
    drive(&s, t, 1);
    cr_assert_str_eq(t->dec[BRANCH_COND], "CCCRCRCRCR");
    cr_assert_str_eq(t->dec[BRANCH_UNCOND], "CCCRRCRRRR");
    check_outputs(t, 1, 0, 2);
    strategy_destroy(&s);

    /* thresh = 0 never caches (get_can_use_cache: threshold <= 0). */
    create_ok(&s, "fbcache:thresh=0", &env);
    drive(&s, t, 1);
    cr_assert_str_eq(t->dec[BRANCH_COND], "CCCCCCCCCC");
    strategy_destroy(&s);
    free(t);
}

/* A threshold >= 1: cache-dit's similarity always caches (no diff measured), ParaAttention compares d < τ as for
 * any τ. Block 0's residual triples at step 1 (d = 2) and stays: fbcache:thresh=1 computes step 1, caches the rest;
 * dbcache:fn=1,thresh=1 caches step 1 too. */
Test(dbcache, threshold_one_always_caches_in_cache_dit_only) {
    StrategyEnv env = env_of(4, NL);
    Traj *t = traj_new(4, NL, 2);
    for (int s = 0; s < 4; s++) set_scale(t, s, BRANCH_COND, 0, s == 0 ? 1.0 : 3.0);
    Strategy s;
    create_ok(&s, "fbcache:thresh=1", &env);
    drive(&s, t, 0);
    cr_assert_str_eq(t->dec[BRANCH_COND], "CCRR");
    strategy_destroy(&s);
    create_ok(&s, "dbcache:fn=1,warmup=0,thresh=1", &env);
    drive(&s, t, 0);
    cr_assert_str_eq(t->dec[BRANCH_COND], "CRRR");
    cr_assert(isnan(t->tr[1][0].signal), "no diff is measured at τ >= 1");
    check_outputs(t, 1, 0, 1);
    strategy_destroy(&s);
    free(t);
}

/* ------------------------------------------------------------------------------------------------ dbcache */

/* strategies-2.md §3.5, derived by replaying can_cache / add_cached_step: W = 4, max_continuous = 3, the diff below
 * τ at every step except 6. Cached {4,5}, computed 6, cached {7,8}, step 9 forced (continuous reached 3, reset to
 * 0), cached {10,11}; continuous after steps 4..11: 1,2,2,2,3,0,0,2 (never reset by the compute at step 6). An
 * implementation resetting it on compute steps would force step 10 instead of 9.
 * Here F2B1 on 4 layers: the Fn residual (layers 0, 1) scales by a_t = 1 + .01t (t < 6), 1.5 + .01(t-6) (t >= 6):
 * d = .01-.02 against the references of steps 3 and 6, .47 at step 6. */
Test(dbcache, golden_continuous_cap_counter_quirk) {
    StrategyEnv env = env_of(12, NL);
    Traj *t = traj_new(12, NL, 3);
    for (int s = 0; s < 12; s++)
        for (int b = 0; b < BRANCH_COUNT; b++) {
            double a = s < 6 ? 1.0 + 0.01 * s : 1.5 + 0.01 * (s - 6);
            set_scale(t, s, b, 0, a);
            set_scale(t, s, b, 1, a);
        }
    Strategy s;
    create_ok(&s, "dbcache:thresh=0.1,warmup=4,fn=2,bn=1,max_continuous=3", &env);
    drive(&s, t, 1);
    const int continuous[8] = {1, 2, 2, 2, 3, 0, 0, 2};
    for (int b = 0; b < BRANCH_COUNT; b++) {
        cr_assert_str_eq(t->dec[b], "CCCCRRCRRCRR", "branch %d", b);
        for (int i = 4; i < 12; i++)
            cr_assert_eq((int)t->tr[i][b].k, continuous[i - 4], "branch %d step %d: continuous %g, want %d", b, i,
                         t->tr[i][b].k, continuous[i - 4]);
    }
    check_outputs(t, 2, 1, 2);
    /* accumulator: the sum of the positive diffs measured (every step from 4 on except 9, where the cap fired
     * before any diff). */
    double acc = 0.0;
    for (int i = 4; i < 12; i++)
        if (i != 9) acc += t->tr[i][0].signal;
    cr_assert(isnan(t->tr[9][0].signal));
    cr_assert(fabs(t->tr[11][0].accumulator - acc) < 1e-6, "accumulator %g, want %g", t->tr[11][0].accumulator, acc);
    strategy_destroy(&s);
    free(t);
}

/* max_cached: no more than 2 cached steps per branch. max_accumulated: the branch's positive diffs are summed
 * (cached or not) and caching stops once the sum reaches the cap: with W = 2 and d = .04, 0, .04, 0, .04 at steps
 * 2..6 the sum reaches .12 >= .1 after step 6, so step 7 on compute. */
Test(dbcache, caps_on_cached_steps_and_accumulated_diff) {
    StrategyEnv env = env_of(10, NL);
    Traj *t = traj_new(10, NL, 4);
    for (int s = 0; s < 10; s++) set_scale(t, s, BRANCH_COND, 0, s % 2 ? 1.0 : 1.04);
    Strategy s;
    create_ok(&s, "dbcache:thresh=0.1,warmup=2,fn=1,max_cached=2", &env);
    drive(&s, t, 0);
    cr_assert_str_eq(t->dec[BRANCH_COND], "CCRRCCCCCC");
    strategy_destroy(&s);
    create_ok(&s, "dbcache:thresh=0.1,warmup=2,fn=1,max_accumulated=0.1", &env);
    drive(&s, t, 0);
    cr_assert_str_eq(t->dec[BRANCH_COND], "CCRRRRRCCC");
    cr_assert(fabs(t->tr[6][0].accumulator - 0.12) < 1e-5);
    check_outputs(t, 1, 0, 1);
    strategy_destroy(&s);
    /* warmup_interval 2: range(0, 4, 2) = {0, 2} compute, steps 1 and 3 may cache. */
    create_ok(&s, "dbcache:thresh=0.1,warmup=4,warmup_interval=2,fn=1", &env);
    drive(&s, t, 0);
    cr_assert_str_eq(t->dec[BRANCH_COND], "CRCRRRRRRR");
    strategy_destroy(&s);
    free(t);
}

/* separate_cfg_diff = 0: the uncond call takes the cond call's diff of the same step (it still needs its own
 * reference). Cond residual steady (d = .01), uncond residual growing by 50% a step (d >= .33): with separate diffs
 * the uncond branch always computes, with the shared diff it caches when the cond call does. */
Test(dbcache, shared_cfg_diff) {
    StrategyEnv env = env_of(6, NL);
    Traj *t = traj_new(6, NL, 5);
    for (int s = 0; s < 6; s++) {
        set_scale(t, s, BRANCH_COND, 0, 1.0 + 0.01 * s);
        set_scale(t, s, BRANCH_UNCOND, 0, 1.0 + 0.5 * s);
    }
    Strategy s;
    create_ok(&s, "dbcache:thresh=0.1,warmup=1,fn=1", &env);
    drive(&s, t, 1);
    cr_assert_str_eq(t->dec[BRANCH_COND], "CRRRRR");
    cr_assert_str_eq(t->dec[BRANCH_UNCOND], "CCCCCC");
    strategy_destroy(&s);
    create_ok(&s, "dbcache:thresh=0.1,warmup=1,fn=1,separate_cfg_diff=0", &env);
    drive(&s, t, 1);
    cr_assert_str_eq(t->dec[BRANCH_UNCOND], "CRRRRR");
    for (int i = 1; i < 6; i++) cr_assert_eq(t->tr[i][1].signal, t->tr[i][0].signal, "step %d: the cond diff", i);
    check_outputs(t, 1, 0, 2);
    strategy_destroy(&s);
    free(t);
}

/* The TaylorSeer calibrator, order 1, on a middle residual linear in the step (R(t) = (1 + t) v): warm-up 3, then
 * every step cached (τ = 0.5, steady Fn residual).
 *   cache-dit (dbcache) creates its state at the first update (step 0), so its counter c is t - 1: the updates at
 *   c = -1, 0, 1 never form a derivative (c > 1 needed): the forecast at step 3 is R(2), constant.
 *   ParaAttention (fbcache) counts from the first call, c = t: the update at c = 2 forms R(2) - R(1) over window 1,
 *   and the forecast at step 3 + k is R(2) + (1 + k) v = R(3 + k), exact for a linear residual. */
Test(dbcache, taylorseer_calibrator_counts_steps_as_each_official_code) {
    const int steps = 6;
    StrategyEnv env = env_of(steps, 2);
    Traj *t = traj_new(steps, 2, 6);
    for (int s = 0; s < steps; s++) {
        set_scale(t, s, BRANCH_COND, 0, 1.0);
        set_scale(t, s, BRANCH_COND, 1, 1.0 + s);
    }
    const char *specs[2] = {"dbcache:thresh=0.5,warmup=3,fn=1,taylorseer=1",
                            "fbcache:thresh=0.5,warmup=3,taylorseer=1,taylorseer_order=1"};
    for (int k = 0; k < 2; k++) {
        Strategy s;
        create_ok(&s, specs[k], &env);
        drive(&s, t, 0);
        cr_assert_str_eq(t->dec[BRANCH_COND], "CCCRRR", "%s", specs[k]);
        for (int st = 3; st < steps; st++) {
            double a = k == 0 ? 3.0 : 1.0 + st; /* the forecast's multiple of v */
            for (int i = 0; i < NT; i++) {
                double want = t->full[st][0][1][i] + a * base_vec[0][1][i];
                cr_assert(fabs(t->out[st][0][i] - want) < 1e-5, "%s step %d [%d]: %.7f, want %.7f", specs[k], st,
                          i, t->out[st][0][i], want);
            }
        }
        strategy_destroy(&s);
    }
    free(t);
}

/* A clone continues exactly as the original would, and owns its buffers (the original is destroyed first). */
Test(dbcache, clone_continues_identically) {
    StrategyEnv env = env_of(12, NL);
    Traj *t = traj_new(12, NL, 7), *u = traj_new(12, NL, 7);
    for (int s = 0; s < 12; s++)
        for (int b = 0; b < BRANCH_COUNT; b++) {
            set_scale(t, s, b, 0, 1.0 + 0.02 * s), set_scale(u, s, b, 0, 1.0 + 0.02 * s);
            set_scale(t, s, b, 2, 1.0 + s), set_scale(u, s, b, 2, 1.0 + s);
        }
    Strategy a, c;
    create_ok(&a, "dbcache:thresh=0.05,warmup=2,fn=1,bn=1,taylorseer=1,taylorseer_order=2,max_continuous=2", &env);
    for (int s = 0; s < 6; s++)
        for (int b = 0; b < 2; b++) one_call(&a, t, s, b, 1);
    size_t held = strategy_bytes_held(&a);
    cr_assert_gt(held, 0);
    Error err = {{0}};
    cr_assert_eq(strategy_clone(&c, &a, &err), 0, "%s", err.msg);
    cr_assert_eq(strategy_bytes_held(&c), held);
    for (int s = 6; s < 12; s++)
        for (int b = 0; b < 2; b++) one_call(&a, t, s, b, 1);
    strategy_destroy(&a);
    for (int s = 6; s < 12; s++)
        for (int b = 0; b < 2; b++) one_call(&c, u, s, b, 1);
    for (int b = 0; b < 2; b++) cr_assert_str_eq(t->dec[b] + 6, u->dec[b] + 6, "branch %d", b);
    cr_assert(strchr(t->dec[0] + 6, 'R') && strchr(t->dec[0] + 6, 'C'), "both decisions after the fork: %s",
              t->dec[0]);
    cr_assert_eq(memcmp(t->out[6], u->out[6], 6 * sizeof t->out[0]), 0);
    strategy_destroy(&c);
    free(t);
    free(u);
}

Test(dbcache, bad_parameters_are_refused_with_reasons) {
    StrategyEnv env = env_of(10, NL);
    struct {
        const char *spec, *want;
    } cases[] = {
        {"dbcache:fn=3,bn=2", "exceeds the 4 layers of model synthetic"},
        {"dbcache:fn=5", "exceeds the 4 layers"},
        {"dbcache:fn=0", "fn must be >= 1"},
        {"dbcache:bn=-1", "bn must be >= 0"},
        {"dbcache:taylorseer_order=5", "taylorseer_order must be in [1, 4]"},
        {"dbcache:max_cached=-2", "max_cached must be >= -1"},
        {"dbcache:warmup_interval=0", "warmup_interval must be >= 1"},
        {"dbcache:separate_cfg_diff=2", "separate_cfg_diff must be in [0, 1]"},
        {"dbcache:thresh=-0.1", "thresh"},
        {"fbcache:fn=2", "fn"},
        {"fbcache:taylorseer=2", "taylorseer must be in [0, 1]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        Strategy s;
        Error err = {{0}};
        cr_assert_eq(strategy_create(&s, cases[i].spec, &env, &err), -1, "%s should be refused", cases[i].spec);
        cr_assert(strstr(err.msg, cases[i].want), "%s: \"%s\" lacks \"%s\"", cases[i].spec, err.msg, cases[i].want);
    }
    /* Defaults: cache-dit's F8B0 W8I1 R0.08 on a deep model; a shallower one gets all its layers as Fn. */
    Strategy s;
    StrategyEnv deep = env_of(10, 30);
    create_ok(&s, "dbcache", &deep);
    cr_assert_str_eq(s.spec, "dbcache:thresh=0.08,warmup=8,fn=8,bn=0,warmup_interval=1,max_cached=-1,"
                             "max_continuous=-1,max_accumulated=0,separate_cfg_diff=1,taylorseer=0,"
                             "taylorseer_order=1");
    strategy_destroy(&s);
    create_ok(&s, "dbcache:bn=1", &env);
    cr_assert(strstr(s.spec, ",fn=3,bn=1,"), "%s", s.spec);
    Strategy again;
    create_ok(&again, s.spec, &env);
    cr_assert_str_eq(again.spec, s.spec, "the canonical spec reads back to itself");
    strategy_destroy(&again);
    strategy_destroy(&s);
}

/* ------------------------------------------------------------------------------------------------ runner */

/* On a real model (the small test config with 4 layers, random weights) through harness/runner.c: a hit costs
 * embed + (fn + bn) blocks + head, the record's layers_run says fn + bn, and the strategy holds one scratch tensor
 * plus, per branch, the Fn reference and the middle residual. thresh >= 1 caches every call after the warm-up in
 * cache-dit; fbcache reaches the same with a threshold no diff exceeds. */
Test(dbcache, runner_counts_flops_layers_and_bytes_of_hits) {
    DitConfig cfg = *fixture_small_config();
    cfg.num_layers = 4;
    DitModel model;
    Engine *e;
    Error err = {{0}};
    cr_assert_eq(dit_init_random(&model, &cfg, 11, &err), 0, "%s", err.msg);
    cr_assert_eq(engine_create_cpu(&e, &model, &err), 0, "%s", err.msg);
    const int F = 2, H = 4, W = 4, STEPS = 6, WARM = 2;
    cr_assert_eq(e->prepare(e, F, H, W, &err), 0, "%s", err.msg);
    size_t tn = (size_t)cfg.text_len * cfg.text_dim, n = (size_t)cfg.in_dim * F * H * W;
    float *text = calloc(tn, sizeof(float)), *zeros = calloc(tn, sizeof(float)), *x = malloc(n * sizeof(float));
    fixture_random(text, tn, 5);
    const size_t tokens = (size_t)e->L * cfg.dim;
    const struct {
        const char *spec;
        int fn, bn;
    } cases[] = {{"dbcache:thresh=1,warmup=2,fn=1,bn=1", 1, 1},
                 {"dbcache:thresh=1,warmup=2,fn=2,bn=0", 2, 0},
                 {"fbcache:thresh=1e30,warmup=2", 1, 0}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        StrategyEnv env = fixture_strategy_env(e, STEPS, n);
        Strategy s;
        cr_assert_eq(strategy_create(&s, cases[c].spec, &env, &err), 0, "%s: %s", cases[c].spec, err.msg);
        RunSettings rs = {.steps = STEPS, .shift = 3.0f, .guidance = 4.0f, .seed = 9, .F = F, .H = H, .W = W,
                          .text = {text, zeros}};
        RunRecord rec;
        memset(&rec, 0, sizeof rec);
        cr_assert_eq(runner_sample(e, &s, &rs, &rec, x, &err), 0, "%s", err.msg);
        const double full = dit_flops_forward(&cfg, e->L);
        const double hit = dit_flops_embed(&cfg, e->L) + dit_flops_head(&cfg, e->L) +
                           (cases[c].fn + cases[c].bn) * dit_flops_block(&cfg, e->L);
        for (int i = 0; i < STEPS; i++) {
            const StepRecord *r = &rec.step[i];
            for (int b = 0; b < 2; b++) {
                cr_assert_eq(r->computed[b], i < WARM, "%s step %d branch %d", cases[c].spec, i, b);
                cr_assert_eq(r->layers_run[b], i < WARM ? cfg.num_layers : cases[c].fn + cases[c].bn,
                             "%s step %d: layers_run %d", cases[c].spec, i, r->layers_run[b]);
            }
            double want = 2 * (i < WARM ? full : hit);
            cr_assert(fabs(r->flops - want) <= 1e-9 * want, "%s step %d: %g FLOPs, want %g", cases[c].spec, i,
                      r->flops, want);
            cr_assert_eq(r->strategy_bytes, 5.0 * tokens * sizeof(float), "%s step %d: %g bytes", cases[c].spec, i,
                         r->strategy_bytes);
        }
        cr_assert_eq(rec.calls_skipped, 2 * (STEPS - WARM));
        record_free(&rec);
        strategy_destroy(&s);
    }
    free(text);
    free(zeros);
    free(x);
    e->destroy(e);
    dit_free(&model);
}

/* ------------------------------------------------------------------------------------------------ replay */

#include <glob.h>

#include "models/safetensors.h"
#include "results/record.h"

static float *st_array(const StFile *f, const char *name, size_t want) {
    Error err = {{0}};
    const StTensor *t = st_find(f, name);
    cr_assert_not_null(t, "%s missing from the Python results", name);
    cr_assert_eq(st_numel(t->ndim, t->shape), want, "%s: %zu values, want %zu", name, st_numel(t->ndim, t->shape),
                 want);
    float *v = malloc(want * sizeof(float));
    cr_assert_eq(st_to_f32(t, v, &err), 0, "%s", err.msg);
    return v;
}

/* The tiny model (float32, C) against tests/dbcache_official.py (the official FBCache and DBCache code transcribed,
 * on the float64 PyTorch tiny model, through tests/strategy_replay.py): the same decision at every (step, branch),
 * the same diffs, and the final latent within 2e-4 of its scale. The thresholds sit where no measured diff comes
 * within 2e-3 of them (checked below), so float32-vs-float64 noise (diffs agree to ~1e-5) cannot flip a decision. */
Test(dbcache, replay_matches_the_official_code_on_the_tiny_model, .timeout = 300) {
    const char *py = fixture_python();
    char cmd[20000], log[8192];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import numpy, torch' >/dev/null 2>&1", py);
    if (system(cmd) != 0) cr_skip_test("%s cannot import numpy and torch (Debian: python3-numpy, python3-torch)", py);
    static const char *const specs[] = {
        "fbcache:thresh=0.2",
        "fbcache:thresh=0.2,warmup=2,taylorseer=1",
        "dbcache:fn=1,bn=1,warmup=4,thresh=0.26",
        "dbcache:fn=2,bn=1,warmup=4,thresh=0.29,taylorseer=1",
        "dbcache:fn=1,warmup=2,thresh=0.3,max_continuous=2,max_cached=7,separate_cfg_diff=0",
    };
    enum { NSPEC = sizeof specs / sizeof *specs, STEPS = 16 };
    const double margin = 2e-3;
    const char *prompt = "red circle moving right";
    char *dir = fixture_tmpdir();
    char case_path[4300], py_out[4300];
    snprintf(case_path, sizeof case_path, "%s/case.safetensors", dir);
    snprintf(py_out, sizeof py_out, "%s/py.safetensors", dir);
    const DitConfig *cfg = dit_config_by_name("tiny");
    cr_assert_eq(fixture_replay_case(case_path, cfg, "models/tiny/tiny.safetensors", prompt, "", 7, STEPS,
                                     cfg->default_shift, cfg->default_guidance),
                 0);
    int at = snprintf(cmd, sizeof cmd, "'%s' tests/dbcache_official.py '%s' '%s'", py, case_path, py_out);
    for (int i = 0; i < NSPEC; i++) at += snprintf(cmd + at, sizeof cmd - (size_t)at, " '%s'", specs[i]);
    snprintf(cmd + at, sizeof cmd - (size_t)at, " 2>&1");
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    StFile f;
    Error err = {{0}};
    cr_assert_eq(st_open(&f, py_out, &err), 0, "%s", err.msg);

    for (int i = 0; i < NSPEC; i++) {
        char out[4300], steps[16], pattern[4400];
        snprintf(out, sizeof out, "%s/run%d", dir, i);
        snprintf(steps, sizeof steps, "%d", STEPS);
        const char *run[] = {"run", "--prompt", prompt, "--seed", "7", "--steps", steps, "--strategy", specs[i],
                             "--latents", "--quiet", "--out", out, NULL};
        cr_assert_eq(fixture_run_cli(log, sizeof log, run), 0, "%s", log);
        snprintf(pattern, sizeof pattern, "%s/*.h5", out);
        glob_t g;
        cr_assert_eq(glob(pattern, 0, NULL, &g), 0);
        cr_assert_eq(g.gl_pathc, 1);
        RunRecord rec = {0};
        cr_assert_eq(record_read(g.gl_pathv[0], &rec, &err), 0, "%s", err.msg);
        globfree(&g);
        cr_assert_eq(rec.steps, STEPS);
        char name[16];
        snprintf(name, sizeof name, "dec%d", i);
        float *dec = st_array(&f, name, 2 * STEPS);
        snprintf(name, sizeof name, "diff%d", i);
        float *diff = st_array(&f, name, 2 * STEPS);
        snprintf(name, sizeof name, "x%d", i);
        const size_t n = (size_t)rec.lc * rec.lf * rec.lh * rec.lw;
        float *x = st_array(&f, name, n);
        const double thresh = strtod(strstr(specs[i], "thresh=") + 7, NULL);
        char c_dec[2][STEPS + 1] = {{0}}, py_dec[2][STEPS + 1] = {{0}};
        int hits = 0;
        for (int s = 0; s < STEPS; s++)
            for (int b = 0; b < 2; b++) {
                c_dec[b][s] = rec.step[s].computed[b] ? 'C' : 'R';
                py_dec[b][s] = dec[s * 2 + b] == 1.0f ? 'C' : 'R';
                hits += !rec.step[s].computed[b];
                const float d = diff[s * 2 + b], c = rec.step[s].signal[b];
                cr_assert_eq(isnan(d), isnan(c), "%s step %d branch %d: diff %g (C) vs %g (official)", specs[i], s,
                             b, c, d);
                if (isnan(d)) continue;
                cr_assert(fabs(d - thresh) > margin, "%s step %d branch %d: diff %.5f within %g of thresh: move it",
                          specs[i], s, b, d, margin);
                cr_assert(fabs(d - c) < 1e-4, "%s step %d branch %d: diff %.6f (C) vs %.6f (official)", specs[i], s,
                          b, c, d);
            }
        for (int b = 0; b < 2; b++)
            cr_assert_str_eq(c_dec[b], py_dec[b], "%s branch %d: C %s, official %s", specs[i], b, c_dec[b],
                             py_dec[b]);
        cr_assert(hits >= 4 && hits <= 2 * STEPS - 8, "%s: %d hits, want a mix of both decisions", specs[i], hits);
        const float *last = rec.latents + (size_t)(STEPS - 1) * n;
        double worst = 0.0, scale = 0.0;
        for (size_t j = 0; j < n; j++) {
            worst = fmax(worst, fabs((double)last[j] - x[j]));
            scale = fmax(scale, fabs((double)x[j]));
        }
        cr_assert_leq(worst, 2e-4 * scale, "%s: final latent max |C - official| %.3g (scale %.3g)", specs[i], worst,
                      scale);
        free(dec);
        free(diff);
        free(x);
        record_free(&rec);
    }
    st_close(&f);
    fixture_rmdir(dir);
    free(dir);
}

/* ------------------------------------------------------------------------------------------------ allocation */

static int allocs_left;
static float *limited_alloc(void *ctx, size_t n) {
    if (allocs_left-- <= 0) return NULL;
    return cpu_vec_ops()->alloc(ctx, n);
}

/* A cache buffer that cannot be allocated fails the run with a message (Strategy.failure), whichever buffer it is;
 * the hooks stay safe to call (every layer runs) and nothing leaks (the sanitizer build checks). */
Test(dbcache, failed_allocations_fail_the_run_cleanly) {
    VecOps ops = *cpu_vec_ops();
    ops.alloc = limited_alloc;
    const char *specs[] = {"dbcache:thresh=0.5,warmup=1,fn=1,bn=1", "fbcache:thresh=0.5,taylorseer=1"};
    for (int k = 0; k < 2; k++)
        for (int limit = 0; limit < 4; limit++) {
            StrategyEnv env = env_of(6, NL);
            env.ops = &ops;
            Strategy s;
            create_ok(&s, specs[k], &env);
            Traj *t = traj_new(6, NL, 8);
            allocs_left = limit;
            int failed_at = -1;
            for (int step = 0; step < 6 && failed_at < 0; step++)
                for (int b = 0; b < 2; b++) {
                    one_call(&s, t, step, b, 1);
                    if (s.failure[0] && failed_at < 0) failed_at = step;
                }
            cr_assert_geq(failed_at, 0, "%s with %d allocations: no failure reported", specs[k], limit);
            cr_assert(strstr(s.failure, "cannot allocate"), "%s", s.failure);
            strategy_destroy(&s);
            free(t);
        }
}
