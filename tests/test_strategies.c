/* Strategies driven directly through their hooks, the way harness/runner.c calls them, on synthetic trajectories.
 * Every expected compute/reuse sequence is worked out by hand in the comment above it ('C' computed, 'R' reused),
 * never by re-running the strategy's formula. Tensors: size 37, random entries with 0.5 <= |v| <= 1.5 (never 0).
 *
 * The synthetic model: embed copies x into the tokens, the block stack replaces the tokens with a prescribed
 * y_full[step][branch], the head copies the tokens out. So a computed call returns y_full, and both reuse rules
 * (model-level y = x + Δ, block-level tokens += blocks_out - blocks_in) must return x_t + (y_c - x_c) exactly,
 * c being the branch's last computed step. Most trajectories are scalar multiples a·r of one random vector r, so
 * every mean|·| ratio a strategy computes reduces to a ratio of the scalars (the mean|r| cancels). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/backend.h"
#include "strategies/strategy.h"
#include "strategies/teacache.h"

#define N 37       /* model numel = tokens numel */
#define DIM 37     /* e: [DIM], e0: [6][DIM] */
#define MAXS 16    /* steps */

typedef struct {
    int num_steps, guidance_on;
    float x[MAXS][BRANCH_COUNT][N];
    float y_full[MAXS][BRANCH_COUNT][N];
    float e[MAXS][BRANCH_COUNT][DIM];
    float e0[MAXS][BRANCH_COUNT][6 * DIM];
    /* results */
    char dec[BRANCH_COUNT][MAXS + 1];
    BranchTrace tr[MAXS][BRANCH_COUNT];
    float y[MAXS][BRANCH_COUNT][N];
} Run;

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static float rnd_nonzero(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    double u = (double)(rng_state >> 11) / 9007199254740992.0; /* [0, 1) */
    float mag = (float)(0.5 + u);                               /* [0.5, 1.5) */
    return (rng_state & 1) ? mag : -mag;
}

static void rnd_vec(float *v, size_t n) {
    for (size_t i = 0; i < n; i++) v[i] = rnd_nonzero();
}

static void scaled(float *out, const float *r, float a, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a * r[i];
}

static Run *run_new(int num_steps, int guidance_on) {
    Run *r = calloc(1, sizeof *r);
    cr_assert_not_null(r);
    r->num_steps = num_steps;
    r->guidance_on = guidance_on;
    /* Random everything by default, so no tensor is ever zero; tests overwrite what they shape by hand. */
    for (int t = 0; t < MAXS; t++) {
        for (int b = 0; b < BRANCH_COUNT; b++) {
            rnd_vec(r->x[t][b], N);
            rnd_vec(r->y_full[t][b], N);
            rnd_vec(r->e[t][b], DIM);
            rnd_vec(r->e0[t][b], 6 * DIM);
        }
    }
    return r;
}

static StrategyEnv env_for(int num_steps, const char *model, const char *weights) {
    StrategyEnv env = {.num_steps = num_steps, .num_layers = 2, .num_heads = 2, .dim = DIM,
                       .model_numel = N, .tokens_numel = N, .ops = cpu_vec_ops(),
                       .model_name = model, .weights_path = weights};
    return env;
}

/* The runner's call sequence (strategies/strategy.h): per step, cond then uncond. */
static void drive(Strategy *s, Run *r) {
    memset(r->dec, '-', sizeof r->dec);
    for (int b = 0; b < BRANCH_COUNT; b++) r->dec[b][r->num_steps] = '\0';
    for (int t = 0; t < r->num_steps; t++) {
        for (int b = 0; b < (r->guidance_on ? 2 : 1); b++) {
            StepInfo st = {.step = t, .num_steps = r->num_steps, .branch = (Branch)b,
                           .guidance_on = r->guidance_on, .sigma = 1.0f - (float)t / (float)r->num_steps};
            st.timestep = 1000.0f * st.sigma;
            BranchTrace tr = {.computed = 1, .signal = NAN, .accumulator = NAN, .threshold = NAN, .k = NAN};
            const float *x = r->x[t][b];
            float *y = r->y[t][b];
            char d = 'C';
            if (s->model_begin && s->model_begin(s, &st, x, N, &tr) == STRATEGY_REUSE) {
                s->model_reuse(s, &st, x, y, N);
                d = 'R';
            } else {
                float tokens[N];
                memcpy(tokens, x, sizeof tokens); /* embed */
                int reused = 0;
                if (s->blocks_begin) {
                    BlockInputs in = {.e = r->e[t][b], .e0 = r->e0[t][b], .dim = DIM, .tokens = tokens,
                                      .n_tokens = N};
                    if (s->blocks_begin(s, &st, &in, &tr) == STRATEGY_REUSE) {
                        s->blocks_reuse(s, &st, tokens, N);
                        reused = 1;
                        d = 'R';
                    }
                }
                if (!reused) {
                    memcpy(tokens, r->y_full[t][b], sizeof tokens); /* the blocks update the tokens in place */
                    if (s->blocks_end) s->blocks_end(s, &st, tokens, N);
                }
                memcpy(y, tokens, sizeof tokens); /* head */
                if (s->model_end) s->model_end(s, &st, x, y, N);
            }
            cr_assert_eq(tr.computed, d == 'C', "step %d branch %d: trace.computed %d but decision %c", t, b,
                         tr.computed, d);
            r->dec[b][t] = d;
            r->tr[t][b] = tr;
        }
    }
}

/* Every output is exactly what it must be: y_full when computed, x_t + (y_c - x_c) in float when reused. */
static void check_outputs(const Run *r) {
    for (int b = 0; b < (r->guidance_on ? 2 : 1); b++) {
        int last = -1;
        for (int t = 0; t < r->num_steps; t++) {
            if (r->dec[b][t] == 'C') {
                cr_assert(memcmp(r->y[t][b], r->y_full[t][b], sizeof r->y[t][b]) == 0, "step %d: computed output",
                          t);
                last = t;
                continue;
            }
            cr_assert(last >= 0, "branch %d reused at step %d before any compute", b, t);
            for (int i = 0; i < N; i++) {
                float delta = r->y_full[last][b][i] - r->x[last][b][i];
                float want = r->x[t][b][i] + delta;
                cr_assert(r->y[t][b][i] == want, "branch %d step %d [%d]: reused %.9g, want x + Δ = %.9g", b, t, i,
                          r->y[t][b][i], want);
            }
        }
    }
}

static void create_ok(Strategy *s, const char *spec, const StrategyEnv *env) {
    Error err = {{0}};
    int rc = strategy_create(s, spec, env, &err);
    cr_assert_eq(rc, 0, "strategy_create(\"%s\"): %s", spec, err.msg);
}

static void create_fails(const char *spec, const StrategyEnv *env, const char *want) {
    Strategy s;
    Error err = {{0}};
    int rc = strategy_create(&s, spec, env, &err);
    cr_assert_eq(rc, -1, "strategy_create(\"%s\") should fail", spec);
    cr_assert(strstr(err.msg, want), "strategy_create(\"%s\"): message \"%s\" lacks \"%s\"", spec, err.msg, want);
    cr_assert_null(s.state, "a failed create leaves nothing to free");
    strategy_destroy(&s); /* harmless on a failed create */
}

#define NEAR(a, b) (fabs((double)(a) - (double)(b)) < 1e-5)

/* ---------------------------------------------------------------- registry and specs */

/* The registry is generated from the STRATEGY_REGISTER lines of the strategy files (strategies/strategies.mk): every
 * such line, and nothing else, is in it, once, "none" first. No count or list written here: a new strategy file
 * must pass this test unchanged. */
Test(strategies, registry_lists_every_registered_strategy_file) {
    FILE *ls = popen("grep -h '^STRATEGY_REGISTER(' strategies/*.c", "r");
    cr_assert_not_null(ls);
    char line[512];
    int lines = 0;
    while (fgets(line, sizeof line, ls)) lines++;
    pclose(ls);
    cr_assert_gt(lines, 1, "run from the repository root");
    cr_assert_eq(strategy_count(), lines, "%d registered, %d STRATEGY_REGISTER lines", strategy_count(), lines);
    cr_assert_str_eq(strategy_at(0)->name, "none", "the baseline comes first");
    cr_assert_null(strategy_at(strategy_count()));
    cr_assert_null(strategy_at(-1));
    char names[1024];
    strategy_list_names(names, sizeof names);
    for (int i = 0; i < strategy_count(); i++) {
        const StrategyInfo *info = strategy_at(i);
        cr_assert_eq(strategy_find(info->name), info, "%s found as itself (names are unique)", info->name);
        cr_assert(strstr(names, info->name), "%s missing from \"%s\"", info->name, names);
        cr_assert(info->create && info->summary && info->param_names, "%s: incomplete StrategyInfo", info->name);
    }
    cr_assert_null(strategy_find("easy"));
}

/* The scaffold every strategy gets for free: created at its defaults and driven through the runner's call
 * sequence on a random synthetic trajectory, its decision string must be made of C and R only, start with a
 * computed step on each branch, and every reused output must be x_t + (y_c - x_c) (check_outputs). A new strategy
 * then adds its own test below with a decision string worked out by hand, e.g.
 *     StrategyEnv env = env_for(8, "tiny", NULL);
 *     Strategy s;  create_ok(&s, "foo:param=1", &env);
 *     Run *r = run_new(8, 1);   ... shape r->x / r->y_full / r->e0 ...   drive(&s, r);
 *     cr_assert_str_eq(r->dec[BRANCH_COND], "CCRCRC");  check_outputs(r);  strategy_destroy(&s);  free(r); */
Test(strategies, every_strategy_drives_a_synthetic_trajectory) {
    for (int i = 0; i < strategy_count(); i++) {
        const char *name = strategy_at(i)->name;
        /* wan2.1-t2v-1.3b: TeaCache's coefficients are built in for it, so every strategy creates at defaults. */
        StrategyEnv env = env_for(12, "wan2.1-t2v-1.3b", NULL);
        Strategy s;
        create_ok(&s, name, &env);
        Run *r = run_new(12, 1);
        drive(&s, r);
        for (int b = 0; b < BRANCH_COUNT; b++) {
            cr_assert_eq(strlen(r->dec[b]), 12, "%s: %s", name, r->dec[b]);
            cr_assert_eq(strspn(r->dec[b], "CR"), 12, "%s branch %d: %s", name, b, r->dec[b]);
            cr_assert_eq(r->dec[b][0], 'C', "%s branch %d computes its first step: %s", name, b, r->dec[b]);
        }
        check_outputs(r);
        strategy_destroy(&s);
        free(r);
    }
}

Test(strategies, parse_spec_accepts_the_grammar) {
    StrategyParams p;
    Error err = {{0}};
    cr_assert_eq(strategy_parse_spec("easycache:thresh=0.05,warmup=10", &p, &err), 0, "%s", err.msg);
    cr_assert_str_eq(p.name, "easycache");
    cr_assert_eq(p.count, 2);
    cr_assert_str_eq(p.keys[1], "warmup");
    cr_assert_str_eq(p.values[1], "10");
    cr_assert_str_eq(strategy_param_text(&p, "thresh"), "0.05");
    cr_assert_null(strategy_param_text(&p, "cutoff"));
    cr_assert_eq(strategy_parse_spec("easycache", &p, &err), 0, "%s", err.msg);
    cr_assert_eq(p.count, 0);
    /* Getters return the default when the key is absent. */
    double d;
    int i;
    cr_assert_eq(strategy_param_double(&p, "thresh", 0.25, 0, 1, &d, &err), 0);
    cr_assert_eq(d, 0.25);
    cr_assert_eq(strategy_param_int(&p, "warmup", 7, 0, 9, &i, &err), 0);
    cr_assert_eq(i, 7);
}

Test(strategies, parse_spec_rejects_malformed_specs) {
    const char *bad[][2] = {
        {"", "empty"},
        {":thresh=1", "missing strategy name"},
        {"easycache:", "expected key=value"},
        {"easycache:thresh=0.1,", "empty parameter"},
        {"easycache:thresh=0.1,,warmup=2", "empty parameter"},
        {"easycache:thresh", "not key=value"},
        {"easycache:=1", "has no key"},
        {"easycache:thresh=", "easycache: thresh has no value"},
        {"static: interval=2", "whitespace"},
        {"static:interval=2,interval=3", "static: parameter interval given twice"},
        {"thresh=1", "parameters come after ':'"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        StrategyParams p;
        Error err = {{0}};
        cr_assert_eq(strategy_parse_spec(bad[k][0], &p, &err), -1, "\"%s\" should not parse", bad[k][0]);
        cr_assert(strstr(err.msg, bad[k][1]), "\"%s\": message \"%s\" lacks \"%s\"", bad[k][0], err.msg, bad[k][1]);
    }
}

Test(strategies, create_rejects_unknown_names_and_keys) {
    StrategyEnv env = env_for(50, "tiny", NULL);
    char names[1024], want[1100];
    strategy_list_names(names, sizeof names);
    snprintf(want, sizeof want, "unknown strategy \"foo\" (valid: %s)", names);
    create_fails("foo:thresh=1", &env, want);
    create_fails("teacache:tresh=0.1", &env,
                 "teacache: unknown parameter \"tresh\" (valid: thresh, variant, warmup, cutoff, coeffs, defaults)");
    create_fails("easycache:warmup=3,interval=2", &env, "easycache: unknown parameter \"interval\" (valid: thresh, warmup, defaults)");
    create_fails("none:thresh=0", &env, "none takes no parameters");
}

/* defaults=official selects the official scripts' defaults where ours differ; the canonical spec carries the values. */
Test(strategies, official_defaults) {
    StrategyEnv env = env_for(50, "wan2.1-t2v-1.3b", NULL);
    Strategy s;
    create_ok(&s, "easycache", &env);
    cr_expect_str_eq(s.spec, "easycache:thresh=0.05,warmup=10"); /* round(0.2 * 50) */
    strategy_destroy(&s);
    StrategyEnv env30 = env_for(30, "wan2.1-t2v-1.3b", NULL);
    create_ok(&s, "easycache", &env30);
    cr_expect_str_eq(s.spec, "easycache:thresh=0.05,warmup=6");
    strategy_destroy(&s);
    create_ok(&s, "easycache:defaults=official", &env30);
    cr_expect_str_eq(s.spec, "easycache:thresh=0.05,warmup=10", "the official script: 10 whatever the steps");
    strategy_destroy(&s);
    create_ok(&s, "teacache:defaults=official", &env);
    cr_expect_str_eq(s.spec, "teacache:thresh=0.2,variant=e,warmup=1,cutoff=1");
    strategy_destroy(&s);
    create_ok(&s, "teacache:defaults=ours,thresh=0.1", &env);
    cr_expect_str_eq(s.spec, "teacache:thresh=0.1,variant=e,warmup=1,cutoff=1");
    strategy_destroy(&s);
    create_fails("easycache:defaults=paper", &env, "easycache: defaults must be ours or official, got paper");
}

Test(strategies, create_rejects_bad_numbers_with_clear_messages) {
    StrategyEnv env = env_for(50, "wan2.1-t2v-1.3b", NULL);
    Strategy s;
    Error err = {{0}};
    cr_assert_eq(strategy_create(&s, "easycache:thresh=-1", &env, &err), -1);
    cr_assert_str_eq(err.msg, "easycache: thresh must be >= 0, got -1");
    create_fails("easycache:thresh=abc", &env, "easycache: thresh must be a finite number, got abc");
    create_fails("easycache:thresh=0.1x", &env, "must be a finite number, got 0.1x");
    create_fails("easycache:thresh=nan", &env, "must be a finite number");
    create_fails("easycache:thresh=1e999", &env, "must be a finite number");
    create_fails("easycache:warmup=-2", &env, "easycache: warmup must be >= 0, got -2");
    create_fails("static:interval=2.5", &env, "static: interval must be an integer, got 2.5");
    create_fails("static:interval=0", &env, "static: interval must be >= 1, got 0");
    create_fails("static:warmup=99999999999999", &env, "static: warmup must be >= 0, got 99999999999999");
    create_fails("teacache:variant=x", &env, "teacache: variant must be e or e0, got x");
    create_fails("teacache:cutoff=one", &env, "teacache: cutoff must be an integer, got one");
}

Test(strategies, canonical_spec_has_every_parameter_and_round_trips) {
    StrategyEnv env = env_for(50, "wan2.1-t2v-1.3b", NULL);
    const char *cases[][2] = {
        {"none", "none"},
        {"static", "static:interval=3,warmup=5"},
        {"static:warmup=0", "static:interval=3,warmup=0"},
        {"easycache", "easycache:thresh=0.05,warmup=10"},
        {"easycache:warmup=5,thresh=0.0250", "easycache:thresh=0.025,warmup=5"},
        {"teacache", "teacache:thresh=0.08,variant=e,warmup=1,cutoff=1"},
        {"teacache:variant=e0,thresh=.2", "teacache:thresh=0.2,variant=e0,warmup=5,cutoff=0"},
        {"teacache:thresh=0.1,variant=e0,cutoff=2", "teacache:thresh=0.1,variant=e0,warmup=5,cutoff=2"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        Strategy s, again;
        create_ok(&s, cases[k][0], &env);
        cr_assert_str_eq(s.spec, cases[k][1], "spec \"%s\"", cases[k][0]);
        create_ok(&again, s.spec, &env); /* the canonical spec is a spec of the same strategy */
        cr_assert_str_eq(again.spec, s.spec);
        strategy_destroy(&s);
        strategy_destroy(&again);
    }
    /* EasyCache's default warm-up is round(0.2 * num_steps): 8 steps -> round(1.6) = 2. */
    StrategyEnv env8 = env_for(8, "tiny", NULL);
    Strategy s;
    create_ok(&s, "easycache", &env8);
    cr_assert_str_eq(s.spec, "easycache:thresh=0.05,warmup=2");
    strategy_destroy(&s);
    char buf[32];
    strategy_format_double(0.1 + 0.2, buf, sizeof buf);
    cr_assert_str_eq(buf, "0.30000000000000004");
    const char *fmt[][2] = {{"1e-07", "1e-07"}, {"10", "10"}, {"100", "100"}, {"-0.5", "-0.5"}, {"1e20", "1e+20"},
                            {"0.0001", "0.0001"}, {"1234.5", "1234.5"}};
    for (size_t k = 0; k < sizeof fmt / sizeof fmt[0]; k++) {
        strategy_format_double(strtod(fmt[k][0], NULL), buf, sizeof buf);
        cr_assert_str_eq(buf, fmt[k][1]);
    }
}

/* ---------------------------------------------------------------- none */

Test(strategies, none_always_computes) {
    StrategyEnv env = env_for(6, "tiny", NULL);
    Strategy s;
    create_ok(&s, "none", &env);
    cr_assert(!s.model_begin && !s.model_reuse && !s.model_end && !s.blocks_begin && !s.blocks_reuse &&
              !s.blocks_end && !s.attention_plan);
    Run *r = run_new(6, 1);
    drive(&s, r);
    cr_assert_str_eq(r->dec[0], "CCCCCC");
    cr_assert_str_eq(r->dec[1], "CCCCCC");
    strategy_destroy(&s);
    free(r);
}

/* ---------------------------------------------------------------- static */

Test(strategies, static_interval_after_warmup_and_last_step) {
    /* interval 3, warmup 2, 10 steps: steps < 2 (0, 1), then 2, 5, 8 (every 3rd from 2), and 9 (the last).
     * step:        0 1 2 3 4 5 6 7 8 9
     * decision:    C C C R R C R R C C
     * accumulator: 0 0 0 1 2 0 1 2 0 0   (steps since the last compute) */
    StrategyEnv env = env_for(10, "tiny", NULL);
    Strategy s;
    create_ok(&s, "static:interval=3,warmup=2", &env);
    Run *r = run_new(10, 1);
    drive(&s, r);
    cr_assert_str_eq(r->dec[0], "CCCRRCRRCC");
    cr_assert_str_eq(r->dec[1], "CCCRRCRRCC");
    const float acc[10] = {0, 0, 0, 1, 2, 0, 1, 2, 0, 0};
    for (int t = 0; t < 10; t++) {
        for (int b = 0; b < 2; b++) {
            cr_assert_eq(r->tr[t][b].accumulator, acc[t], "step %d", t);
            cr_assert_eq(r->tr[t][b].threshold, 3.0f);
            cr_assert(isnan(r->tr[t][b].signal) && isnan(r->tr[t][b].k));
        }
    }
    check_outputs(r); /* each branch reuses its own Δ */
    strategy_destroy(&s);
    free(r);
}

Test(strategies, static_without_warmup_and_interval_one) {
    /* interval 4, warmup 0, 10 steps: 0, 4, 8 and the last, 9:  C R R R C R R R C C */
    StrategyEnv env = env_for(10, "tiny", NULL);
    Strategy s;
    create_ok(&s, "static:interval=4,warmup=0", &env);
    Run *r = run_new(10, 0);
    drive(&s, r);
    cr_assert_str_eq(r->dec[0], "CRRRCRRRCC");
    cr_assert_str_eq(r->dec[1], "----------", "guidance off: no uncond calls");
    check_outputs(r);
    strategy_destroy(&s);
    /* interval 1 computes every step. */
    create_ok(&s, "static:interval=1,warmup=0", &env);
    drive(&s, r);
    cr_assert_str_eq(r->dec[0], "CCCCCCCCCC");
    strategy_destroy(&s);
    free(r);
}

/* ---------------------------------------------------------------- easycache */

/* Cond and uncond get the same input x_t = a_t·r (as under CFG); cond outputs b_t·r, uncond c_t·r2.
 *   a = 10 9 8 7 6 5 4 3 2     b = 20 18 16 14 15 10 8 6 4     (b only matters on computed steps) */
static Run *easycache_run(int guidance_on) {
    static const float a[9] = {10, 9, 8, 7, 6, 5, 4, 3, 2};
    static const float bb[9] = {20, 18, 16, 14, 15, 10, 8, 6, 4};
    static const float c[9] = {5, 4.5f, 4, 3.5f, 3, 2.5f, 2, 1.5f, 1};
    Run *r = run_new(9, guidance_on);
    float rv[N], r2[N];
    rnd_vec(rv, N);
    rnd_vec(r2, N);
    for (int t = 0; t < 9; t++) {
        scaled(r->x[t][BRANCH_COND], rv, a[t], N);
        scaled(r->x[t][BRANCH_UNCOND], rv, a[t], N);
        scaled(r->y_full[t][BRANCH_COND], rv, bb[t], N);
        scaled(r->y_full[t][BRANCH_UNCOND], r2, c[t], N);
    }
    return r;
}

Test(strategies, easycache_k_uses_last_computed_step) {
    /* τ = 0.3, R = 2, 9 steps, the trajectory of easycache_run. increment = k·|a_t - a_prev| / |b_last|.
     *   s0: warm-up, C, E = 0. x_last = 10, y_last = 20; k unknown.
     *   s1: warm-up, C. k = |18 - 20| / |9 - 10| = 2. x_last = 9, y_last = 18.
     *   s2: inc = 2·1/18 = 0.111, E = 0.111 < 0.3 -> R
     *   s3: inc = 0.111, E = 0.222 -> R
     *   s4: inc = 0.111, E = 0.333 >= 0.3 -> C, E = 0.
     *       k = |15 - 18| / |6 - 9| = 1 against the last COMPUTED step (s1). Against the previous step's input
     *       (x_prev = 7) it would be 3/1 = 3. x_last = 6, y_last = 15.
     *   s5: inc = 1·1/15 = 0.067, E = 0.067 -> R          (k = 3: inc 0.2, E 0.2 -> R)
     *   s6: E = 0.133 -> R                                (k = 3: E 0.4 -> C: the decision flips here)
     *   s7: E = 0.2 -> R
     *   s8: last step -> C (E would be 0.267 < 0.3: only the last-step rule computes it)
     * The uncond call follows: the same string, reusing its own Δ_uncond = c_c·r2 - a_c·r. */
    StrategyEnv env = env_for(9, "tiny", NULL);
    Strategy s;
    create_ok(&s, "easycache:thresh=0.3,warmup=2", &env);
    Run *r = easycache_run(1);
    drive(&s, r);
    cr_assert_str_eq(r->dec[BRANCH_COND], "CCRRCRRRC");
    cr_assert_str_eq(r->dec[BRANCH_UNCOND], "CCRRCRRRC");
    check_outputs(r);

    const BranchTrace *tr;
    for (int t = 0; t < 2; t++) { /* warm-up: nothing measured */
        tr = &r->tr[t][BRANCH_COND];
        cr_assert(isnan(tr->signal) && tr->accumulator == 0.0f && isnan(tr->k), "step %d", t);
    }
    tr = &r->tr[2][BRANCH_COND];
    cr_assert(NEAR(tr->signal, 1.0 / 9) && NEAR(tr->accumulator, 1.0 / 9) && NEAR(tr->k, 2), "s2 %g %g %g",
              tr->signal, tr->accumulator, tr->k);
    cr_assert_eq(tr->threshold, 0.3f);
    tr = &r->tr[3][BRANCH_COND];
    cr_assert(NEAR(tr->accumulator, 2.0 / 9));
    tr = &r->tr[4][BRANCH_COND]; /* computed: E recorded after its reset; the crossing value is 2/9 + 1/9 */
    cr_assert(NEAR(tr->signal, 1.0 / 9) && tr->accumulator == 0.0f && NEAR(tr->k, 2));
    tr = &r->tr[5][BRANCH_COND]; /* k updated from s4's output, against s1 */
    cr_assert(NEAR(tr->k, 1) && NEAR(tr->signal, 1.0 / 15) && NEAR(tr->accumulator, 1.0 / 15), "s5 k %g", tr->k);
    tr = &r->tr[7][BRANCH_COND];
    cr_assert(NEAR(tr->accumulator, 3.0 / 15));
    tr = &r->tr[8][BRANCH_COND];
    cr_assert(isnan(tr->signal) && tr->accumulator == 0.0f);
    for (int t = 0; t < 9; t++) { /* the uncond trace repeats the shared decision's values */
        const BranchTrace *c = &r->tr[t][BRANCH_COND], *u = &r->tr[t][BRANCH_UNCOND];
        cr_assert(memcmp(c, u, sizeof *c) == 0, "step %d", t);
    }
    strategy_destroy(&s);
    free(r);
}

Test(strategies, easycache_warmup_guidance_off_and_zero_threshold) {
    /* R = 5, τ = 0.3, guidance off (cond calls only):
     *   s0..s4: warm-up, C. k after s3 = |14 - 16| / |7 - 8| = 2, after s4 = |15 - 14| / |6 - 7| = 1; y_last = 15.
     *   s5: inc = 1·1/15 = 0.067 -> R;  s6: E = 0.133 -> R;  s7: E = 0.2 -> R;  s8: last -> C */
    StrategyEnv env = env_for(9, "tiny", NULL);
    Strategy s;
    create_ok(&s, "easycache:thresh=0.3,warmup=5", &env);
    Run *r = easycache_run(0);
    drive(&s, r);
    cr_assert_str_eq(r->dec[BRANCH_COND], "CCCCCRRRC");
    cr_assert_str_eq(r->dec[BRANCH_UNCOND], "---------");
    check_outputs(r);
    strategy_destroy(&s);
    /* τ = 0: every increment is >= 0, so E >= τ at every step -> all C. */
    create_ok(&s, "easycache:thresh=0,warmup=0", &env);
    free(r);
    r = easycache_run(1);
    drive(&s, r);
    cr_assert_str_eq(r->dec[BRANCH_COND], "CCCCCCCCC");
    cr_assert_str_eq(r->dec[BRANCH_UNCOND], "CCCCCCCCC");
    strategy_destroy(&s);
    free(r);
}

Test(strategies, easycache_accumulator_resets_and_k_unknown_computes) {
    /* R = 0, τ = 0.45, 8 steps; x = a_t·r with a = 16 15 14 13 12 11 10 9, y = 2·x (k = 2 between any two steps).
     *   s0: k unknown -> C (y_last = 32).    s1: k still unknown (one computed step) -> C; k = 2, y_last = 30.
     *   s2: inc = 2·1/30 = 0.067 -> R.  s3: 0.133 R.  s4: 0.2 R.  s5: 0.267 R.  s6: 0.333 R.  s7: last -> C.
     * With τ = 0.25 instead:  s2 .067 R, s3 .133 R, s4 .2 R, s5 .267 >= .25 -> C (E = 0; k = |22-30|/|11-15| = 2,
     *   y_last = 22), s6: inc = 2/22 = 0.091 -> R, s7: last -> C. */
    static const float a[8] = {16, 15, 14, 13, 12, 11, 10, 9};
    Run *r = run_new(8, 1);
    float rv[N];
    rnd_vec(rv, N);
    for (int t = 0; t < 8; t++) {
        for (int b = 0; b < 2; b++) {
            scaled(r->x[t][b], rv, a[t], N);
            scaled(r->y_full[t][b], rv, 2 * a[t], N);
        }
    }
    StrategyEnv env = env_for(8, "tiny", NULL);
    Strategy s;
    create_ok(&s, "easycache:thresh=0.45,warmup=0", &env);
    drive(&s, r);
    cr_assert_str_eq(r->dec[BRANCH_COND], "CCRRRRRC");
    cr_assert(isnan(r->tr[1][BRANCH_COND].k) && NEAR(r->tr[2][BRANCH_COND].k, 2));
    check_outputs(r);
    strategy_destroy(&s);
    create_ok(&s, "easycache:thresh=0.25,warmup=0", &env);
    drive(&s, r);
    cr_assert_str_eq(r->dec[BRANCH_COND], "CCRRRCRC");
    cr_assert_str_eq(r->dec[BRANCH_UNCOND], "CCRRRCRC");
    cr_assert(NEAR(r->tr[6][BRANCH_COND].accumulator, 2.0 / 22), "E restarts from 0 after the compute at s5");
    check_outputs(r);
    strategy_destroy(&s);
    free(r);
}

/* ---------------------------------------------------------------- teacache */

/* A scratch directory for coefficient files, removed by the tests that make one. */
static void tmpdir_make(char *dir, size_t cap) {
    snprintf(dir, cap, "/tmp/cachebench_strategies_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void tmpdir_remove(const char *dir, const char *const *files) {
    char path[512];
    for (int i = 0; files[i]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* poly(s) = s: the accumulator is the plain sum of the signals, so decisions can be worked out by hand. */
static const double identity_poly[5] = {0, 0, 0, 1, 0};

Test(strategies, teacache_branches_independent_warmup_cutoff) {
    /* δ = 0.15, variant e (warmup 1, cutoff 1), 8 steps, poly(s) = s.
     * cond:   e_t = 100·0.9^t·r  -> signal |0.9^t - 0.9^(t-1)| / 0.9^(t-1) = 0.1 every step
     *   s0 warm-up C | s1 A=.1 R | s2 A=.2 C | s3 .1 R | s4 .2 C | s5 .1 R | s6 .2 C | s7 cutoff C (A would be .1)
     *   -> C R C R C R C C
     * uncond: e_t = 100, 95, 100, 95, ... ·r2 -> signal 5/100 = .05 (from 100), 5/95 = .0526 (from 95);
     *   m_prev is the previous call's e, computed or not:
     *   s0 C | s1 A=.05 R | s2 A=.1026 R | s3 A=.1526 C | s4 .0526 R | s5 .1026 R | s6 .1553 C | s7 cutoff C
     *   -> C R R C R R C C
     *   (were m_prev only updated on computed calls, s2 would see |100-100| = 0 and the string would be CRRRRRRC;
     *    one accumulator shared by both branches would not give two different strings either.) */
    char dir[64], file[128];
    tmpdir_make(dir, sizeof dir);
    snprintf(file, sizeof file, "%s/poly.txt", dir);
    Error err = {{0}};
    cr_assert_eq(teacache_write_coeffs(file, identity_poly, "identity", &err), 0, "%s", err.msg);
    char spec[256];
    snprintf(spec, sizeof spec, "teacache:thresh=0.15,coeffs=%s", file);
    StrategyEnv env = env_for(8, "tiny", NULL);
    Strategy s;
    create_ok(&s, spec, &env);
    Run *r = run_new(8, 1);
    float re[DIM], re2[DIM];
    rnd_vec(re, DIM);
    rnd_vec(re2, DIM);
    for (int t = 0; t < 8; t++) {
        scaled(r->e[t][BRANCH_COND], re, 100.0f * powf(0.9f, (float)t), DIM);
        scaled(r->e[t][BRANCH_UNCOND], re2, t % 2 ? 95.0f : 100.0f, DIM);
    }
    drive(&s, r);
    cr_assert_str_eq(r->dec[BRANCH_COND], "CRCRCRCC");
    cr_assert_str_eq(r->dec[BRANCH_UNCOND], "CRRCRRCC");
    check_outputs(r); /* block-level reuse: tokens_in + (blocks_out - blocks_in) of the branch's last compute */

    const BranchTrace *tr = &r->tr[0][BRANCH_COND];
    cr_assert(isnan(tr->signal) && tr->accumulator == 0.0f && tr->threshold == 0.15f && isnan(tr->k));
    tr = &r->tr[1][BRANCH_COND];
    cr_assert(NEAR(tr->signal, 0.1) && NEAR(tr->accumulator, 0.1), "s1 %g %g", tr->signal, tr->accumulator);
    tr = &r->tr[2][BRANCH_COND]; /* computed: accumulator after the reset */
    cr_assert(NEAR(tr->signal, 0.1) && tr->accumulator == 0.0f);
    tr = &r->tr[7][BRANCH_COND]; /* cutoff: nothing measured */
    cr_assert(isnan(tr->signal) && tr->accumulator == 0.0f);
    tr = &r->tr[2][BRANCH_UNCOND];
    cr_assert(NEAR(tr->signal, 5.0 / 95) && NEAR(tr->accumulator, 0.05 + 5.0 / 95));
    strategy_destroy(&s);

    /* δ = 0 with a non-negative polynomial: every step computed. */
    snprintf(spec, sizeof spec, "teacache:thresh=0,coeffs=%s", file);
    create_ok(&s, spec, &env);
    drive(&s, r);
    cr_assert_str_eq(r->dec[BRANCH_COND], "CCCCCCCC");
    cr_assert_str_eq(r->dec[BRANCH_UNCOND], "CCCCCCCC");
    strategy_destroy(&s);
    free(r);
    tmpdir_remove(dir, (const char *const[]){"poly.txt", NULL});
}

Test(strategies, teacache_e0_retention_variant_may_reuse_the_last_step) {
    /* variant e0: warmup 5, cutoff 0; δ = 10 is never reached (signals ~0.01, poly(s) = s), guidance off.
     *   s0..s4 warm-up C, s5 s6 s7 R: the last step is reused, as in the official retention-steps script.
     * With warmup=0: s0 has no previous e0 -> C, then R to the end. */
    char dir[64], file[128];
    tmpdir_make(dir, sizeof dir);
    snprintf(file, sizeof file, "%s/poly_e0.txt", dir);
    Error err = {{0}};
    cr_assert_eq(teacache_write_coeffs(file, identity_poly, NULL, &err), 0, "%s", err.msg);
    char spec[256], want[256];
    snprintf(spec, sizeof spec, "teacache:variant=e0,thresh=10,coeffs=%s", file);
    StrategyEnv env = env_for(8, "tiny", NULL);
    Strategy s;
    create_ok(&s, spec, &env);
    snprintf(want, sizeof want, "teacache:thresh=10,variant=e0,warmup=5,cutoff=0,coeffs=%s", file);
    cr_assert_str_eq(s.spec, want);
    Run *r = run_new(8, 0);
    float re0[6 * DIM];
    rnd_vec(re0, 6 * DIM);
    for (int t = 0; t < 8; t++) scaled(r->e0[t][BRANCH_COND], re0, 1.0f + 0.01f * (float)t, 6 * DIM);
    drive(&s, r);
    cr_assert_str_eq(r->dec[BRANCH_COND], "CCCCCRRR");
    cr_assert(NEAR(r->tr[5][BRANCH_COND].signal, 0.01 / 1.04), "e0 drives the signal: %g",
              r->tr[5][BRANCH_COND].signal);
    check_outputs(r);
    strategy_destroy(&s);
    snprintf(spec, sizeof spec, "teacache:variant=e0,thresh=10,warmup=0,coeffs=%s", file);
    create_ok(&s, spec, &env);
    drive(&s, r);
    cr_assert_str_eq(r->dec[BRANCH_COND], "CRRRRRRR");
    check_outputs(r);
    strategy_destroy(&s);
    free(r);
    tmpdir_remove(dir, (const char *const[]){"poly_e0.txt", NULL});
}

Test(strategies, teacache_builtin_wan_coefficients) {
    /* wan2.1-t2v-1.3b, variant e, signal 0.1 every step (e_t = 100·0.9^t·r):
     *   poly(0.1) = 2396.76752e-4 - 1311.10545e-3 + 201.331979e-2 - 8.29855975e-1 + 0.137887774
     *             = 0.239677 - 1.311105 + 2.013320 - 0.829856 + 0.137888 = 0.249923
     * δ = 0.3: s0 warm-up C | s1 A=.2499 R | s2 A=.4998 C | s3 R | s4 C | s5 R | s6 C | s7 cutoff C
     * (the coefficients read lowest degree first would give poly(0.1) ~ 2268 -> every step C). */
    StrategyEnv env = env_for(8, "wan2.1-t2v-1.3b", NULL);
    Strategy s;
    create_ok(&s, "teacache:thresh=0.3", &env);
    cr_assert_str_eq(s.spec, "teacache:thresh=0.3,variant=e,warmup=1,cutoff=1");
    Run *r = run_new(8, 0);
    float re[DIM];
    rnd_vec(re, DIM);
    for (int t = 0; t < 8; t++) scaled(r->e[t][BRANCH_COND], re, 100.0f * powf(0.9f, (float)t), DIM);
    drive(&s, r);
    cr_assert_str_eq(r->dec[BRANCH_COND], "CRCRCRCC");
    cr_assert(fabs(r->tr[1][BRANCH_COND].accumulator - 0.249923) < 1e-4, "poly(0.1) = %g",
              r->tr[1][BRANCH_COND].accumulator);
    strategy_destroy(&s);
    /* The 14B values are built in too (no file needed). */
    StrategyEnv env14 = env_for(8, "wan2.1-t2v-14b", NULL);
    create_ok(&s, "teacache:variant=e0", &env14);
    strategy_destroy(&s);
    free(r);
}

Test(strategies, teacache_coefficient_files) {
    char dir[64], path[128], weights[128];
    tmpdir_make(dir, sizeof dir);
    /* Round trip: the written numbers read back exactly. */
    snprintf(path, sizeof path, "%s/c.txt", dir);
    const double c[5] = {1.5e-3, -2.25, 3.0 / 7.0, 1e10, -0.1};
    Error err = {{0}};
    cr_assert_eq(teacache_write_coeffs(path, c, "fitted on 3 prompts\nseed 42", &err), 0, "%s", err.msg);
    double back[5];
    cr_assert_eq(teacache_read_coeffs(path, back, &err), 0, "%s", err.msg);
    for (int i = 0; i < 5; i++) cr_assert_eq(back[i], c[i], "coefficient %d: %.17g vs %.17g", i, back[i], c[i]);
    FILE *f = fopen(path, "r");
    char line[256];
    cr_assert(fgets(line, sizeof line, f) && strcmp(line, "# fitted on 3 prompts\n") == 0, "%s", line);
    cr_assert(fgets(line, sizeof line, f) && strcmp(line, "# seed 42\n") == 0, "%s", line);
    fclose(f);

    /* Hand-written files: comments anywhere, numbers over several lines. Bad ones name the problem. */
    const char *files[][2] = {
        {"# header\n  # indented comment\n1 2\n\n3\n# mid\n4 5\n", NULL},
        {"1 2 3 4\n", "expected 5 coefficients (highest degree first), found 4"},
        {"1 2 3 4 5 6\n", "more than 5 coefficients"},
        {"1 2 x 4 5\n", ":1: \"x\" is not a finite number"},
        {"# c\n1 2 3 4 inf\n", ":2: \"inf\" is not a finite number"},
    };
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
        f = fopen(path, "w");
        fputs(files[k][0], f);
        fclose(f);
        memset(&err, 0, sizeof err);
        int rc = teacache_read_coeffs(path, back, &err);
        if (!files[k][1]) {
            cr_assert_eq(rc, 0, "%s", err.msg);
            for (int i = 0; i < 5; i++) cr_assert_eq(back[i], i + 1.0);
        } else {
            cr_assert_eq(rc, -1);
            cr_assert(strstr(err.msg, files[k][1]) && strstr(err.msg, path), "message: %s", err.msg);
        }
    }

    /* A model without built-in values: the file beside the weights, or an error that says to calibrate. */
    snprintf(weights, sizeof weights, "%s/tiny.safetensors", dir);
    StrategyEnv env = env_for(8, "tiny", weights);
    create_fails("teacache", &env, "teacache_coeffs_e.txt not found: run `cachebench calibrate`");
    create_fails("teacache:variant=e0", &env, "teacache_coeffs_e0.txt not found");
    char given[256];
    snprintf(given, sizeof given, "teacache:coeffs=%s/nope.txt", dir);
    create_fails(given, &env, "nope.txt not found: run `cachebench calibrate`");
    StrategyEnv no_weights = env_for(8, "tiny", NULL);
    create_fails("teacache", &no_weights, "cachebench calibrate");

    char beside[128], want[256];
    snprintf(beside, sizeof beside, "%s/teacache_coeffs_e.txt", dir);
    cr_assert_eq(teacache_write_coeffs(beside, identity_poly, "tiny", &err), 0, "%s", err.msg);
    Strategy s;
    create_ok(&s, "teacache", &env);
    snprintf(want, sizeof want, "teacache:thresh=0.08,variant=e,warmup=1,cutoff=1,coeffs=%s", beside);
    cr_assert_str_eq(s.spec, want);
    strategy_destroy(&s);
    tmpdir_remove(dir, (const char *const[]){"c.txt", "teacache_coeffs_e.txt", NULL});
}

/* ---------------------------------------------------------------- CPU VecOps */

Test(strategies, cpu_vec_ops_reductions_in_double) {
    const VecOps *ops = cpu_vec_ops();
    size_t n = 100003; /* above the parallel threshold, not a multiple of the chunk count */
    float *a = ops->alloc(ops->ctx, n), *b = ops->alloc(ops->ctx, n), *o = ops->alloc(ops->ctx, n);
    cr_assert(a && b && o);
    cr_assert_eq(a[n - 1], 0.0f, "alloc zero-fills");
    double sa = 0, sd = 0;
    for (size_t i = 0; i < n; i++) {
        a[i] = rnd_nonzero();
        b[i] = rnd_nonzero();
        sa += fabs((double)a[i]);
        sd += fabs((double)a[i] - (double)b[i]);
    }
    cr_assert(fabs(ops->mean_abs(ops->ctx, a, n) - sa / (double)n) < 1e-12);
    cr_assert(fabs(ops->mean_abs_diff(ops->ctx, a, b, n) - sd / (double)n) < 1e-12);
    cr_assert_eq(ops->mean_abs(ops->ctx, a, 0), 0.0);
    ops->sub(ops->ctx, o, a, b, n);
    ops->add(ops->ctx, o, o, b, n); /* in place */
    for (size_t i = 0; i < n; i += 997) cr_assert_eq(o[i], (a[i] - b[i]) + b[i]);
    ops->copy(ops->ctx, o, a, n);
    cr_assert(memcmp(o, a, n * sizeof *a) == 0);
    ops->release(ops->ctx, a);
    ops->release(ops->ctx, b);
    ops->release(ops->ctx, o);
}
