/* MagCache (strategies/magcache.c) against the official MagCache4Wan2.1 code (Zehong-Ma/MagCache df81cb1):
 *   - the model-free golden schedules of strategies-2.md §1 on the official tables (the schedule depends only on
 *     the table, thresh, K, retention, steps and ratio_power, never on the data: driven with random tensors);
 *   - decision strings worked out by hand on small tables;
 *   - nearest_interp against a numpy transcription (tests/magcache_official.py);
 *   - the tiny model: `cachebench calibrate --for magcache` against the Python transcription of magcache_calibration,
 *     and `cachebench run --strategy magcache` against a Python replay of magcache_forward (tests/strategy_replay.py);
 *   - bad tables, bad parameters and the calibrate command's refusals. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/sha256.h"
#include "harness/experiment.h"
#include "models/backend.h"
#include "models/dit/config.h"
#include "models/safetensors.h"
#include "results/record.h"
#include "strategies/magcache.h"
#include "strategies/strategy.h"
#include "tests/fixtures.h"

#define N 29        /* tokens numel of the synthetic calls */
#define MAXS 50

static StrategyEnv env_for(int steps, const char *model, const char *weights) {
    StrategyEnv env = {.num_steps = steps, .num_layers = 2, .num_heads = 1, .dim = N, .model_numel = N,
                       .tokens_numel = N, .ops = cpu_vec_ops(), .model_name = model, .weights_path = weights};
    return env;
}

static void create_ok(Strategy *s, const char *spec, const StrategyEnv *env) {
    Error err = {{0}};
    cr_assert_eq(strategy_create(s, spec, env, &err), 0, "strategy_create(\"%s\"): %s", spec, err.msg);
}

static void create_fails(const char *spec, const StrategyEnv *env, const char *want1, const char *want2) {
    Strategy s;
    Error err = {{0}};
    cr_assert_eq(strategy_create(&s, spec, env, &err), -1, "strategy_create(\"%s\") should fail", spec);
    cr_assert(strstr(err.msg, want1), "\"%s\": message \"%s\" lacks \"%s\"", spec, err.msg, want1);
    if (want2) cr_assert(strstr(err.msg, want2), "\"%s\": message \"%s\" lacks \"%s\"", spec, err.msg, want2);
    cr_assert_null(s.state);
}

/* One synthetic trajectory through the block-stack hooks as harness/runner.c calls them: embed gives random tokens
 * in[t][b], a computed stack replaces them with random out[t][b]. Decisions go to dec[b] ('C'/'R'), the traces to tr;
 * every reused output must equal in + (out_c - in_c) of the branch's last computed call c, in float. */
typedef struct {
    int steps, branches;
    char dec[BRANCH_COUNT][MAXS + 1];
    BranchTrace tr[MAXS][BRANCH_COUNT];
    float in[MAXS][BRANCH_COUNT][N], out[MAXS][BRANCH_COUNT][N];
} Traj;

static uint64_t rng = 0x2545F4914F6CDD1Dull;

static float rnd(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0) + 0.25f;
}

static Traj *traj_new(int steps, int branches) {
    Traj *r = calloc(1, sizeof *r);
    cr_assert_not_null(r);
    r->steps = steps, r->branches = branches;
    for (int t = 0; t < MAXS; t++)
        for (int b = 0; b < BRANCH_COUNT; b++)
            for (int i = 0; i < N; i++) r->in[t][b][i] = rnd(), r->out[t][b][i] = rnd();
    memset(r->dec, 0, sizeof r->dec);
    return r;
}

/* Steps [from, to) of r with s. */
static void drive_range(Strategy *s, Traj *r, int from, int to) {
    for (int t = from; t < to; t++)
        for (int b = 0; b < r->branches; b++) {
            StepInfo st = {.step = t, .num_steps = r->steps, .branch = (Branch)b, .guidance_on = r->branches == 2,
                           .sigma = 1.0f - (float)t / (float)r->steps};
            st.timestep = 1000.0f * st.sigma;
            BranchTrace tr = {.computed = 1, .signal = NAN, .accumulator = NAN, .threshold = NAN, .k = NAN};
            float tokens[N], e[N], e0[6 * N];
            for (int i = 0; i < N; i++) e[i] = rnd();
            for (int i = 0; i < 6 * N; i++) e0[i] = rnd();
            memcpy(tokens, r->in[t][b], sizeof tokens);
            BlockInputs in = {.e = e, .e0 = e0, .dim = N, .tokens = tokens, .n_tokens = N};
            if (s->blocks_begin(s, &st, &in, &tr) == STRATEGY_REUSE) {
                s->blocks_reuse(s, &st, tokens, N);
                r->dec[b][t] = 'R';
                int c = t - 1;
                while (c >= 0 && r->dec[b][c] != 'C') c--;
                cr_assert_geq(c, 0, "branch %d reused at step %d before any compute", b, t);
                for (int i = 0; i < N; i++) {
                    float want = r->in[t][b][i] + (r->out[c][b][i] - r->in[c][b][i]);
                    cr_assert(tokens[i] == want, "branch %d step %d [%d]: %.9g, want %.9g", b, t, i, tokens[i],
                              want);
                }
            } else {
                memcpy(tokens, r->out[t][b], sizeof tokens);
                s->blocks_end(s, &st, tokens, N);
                r->dec[b][t] = 'C';
            }
            cr_assert_eq(tr.computed, r->dec[b][t] == 'C', "step %d branch %d: trace.computed", t, b);
            r->tr[t][b] = tr;
        }
}

static void drive(Strategy *s, Traj *r) { drive_range(s, r, 0, r->steps); }

/* "10,11,13" -> the decision string of steps with those steps reused. */
static void expected_string(const char *skipped, int steps, char *out) {
    memset(out, 'C', (size_t)steps);
    out[steps] = '\0';
    for (const char *p = skipped; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        cr_assert(v >= 0 && v < steps);
        out[v] = 'R';
        p = *end ? end + 1 : end;
    }
}

static int count_computed(const Traj *r) {
    int n = 0;
    for (int b = 0; b < r->branches; b++)
        for (int t = 0; t < r->steps; t++) n += r->dec[b][t] == 'C';
    return n;
}

static void golden(const char *model, const char *params, const char *skipped, int computed_calls) {
    StrategyEnv env = env_for(50, model, NULL);
    Strategy s;
    char spec[256];
    snprintf(spec, sizeof spec, "magcache:retention=0.2%s%s", params[0] ? "," : "", params);
    create_ok(&s, spec, &env);
    Traj *r = traj_new(50, 2);
    drive(&s, r);
    if (skipped) {
        char want[MAXS + 1];
        expected_string(skipped, 50, want);
        for (int b = 0; b < 2; b++) cr_assert_str_eq(r->dec[b], want, "%s %s branch %d", model, spec, b);
    }
    cr_assert_eq(count_computed(r), computed_calls, "%s %s: %d computed calls, want %d (cond %s)", model, spec,
                 count_computed(r), computed_calls, r->dec[0]);
    strategy_destroy(&s);
    free(r);
}

/* strategies-2.md §1 "Golden schedules" (derived there from the official rule on the released tables). */
Test(magcache, golden_schedules_of_the_official_tables) {
    golden("wan2.1-t2v-1.3b", "thresh=0.12,max_skip=2",
           "10,11,13,14,16,17,19,20,22,23,25,26,28,29,31,32,34,35,37,38,40,41,43,45,47", 50);
    golden("wan2.1-t2v-1.3b", "thresh=0.12,max_skip=4",
           "10,11,12,13,15,16,17,18,20,21,22,23,25,26,27,28,30,31,32,33,35,36,37,39,40,42,43,45,47", 42);
    golden("wan2.1-t2v-1.3b", "thresh=0.12,max_skip=4,ratio_power=0.5",
           "10,11,12,13,15,16,17,18,20,21,22,23,25,26,27,28,30,31,32,33,35,36,37,38,40,41,42,44,45,47,49", 38);
    golden("wan2.1-t2v-14b", "thresh=0.24,max_skip=6", NULL, 36);
    /* The same through ratios=builtin:NAME on any model, and the defaults (0.12, K 2, retention 0.2, power 1). */
    golden("tiny", "ratios=builtin:wan2.1-t2v-1.3b", "10,11,13,14,16,17,19,20,22,23,25,26,28,29,31,32,34,35,37,38,40,"
           "41,43,45,47", 50);
    /* warmup=10 steps is retention 0.2 of 50 steps. */
    StrategyEnv env = env_for(50, "wan2.1-t2v-1.3b", NULL);
    Strategy a, b;
    create_ok(&a, "magcache:warmup=10,max_skip=4", &env);
    create_ok(&b, "magcache:retention=0.2,max_skip=4", &env);
    Traj *ra = traj_new(50, 2), *rb = traj_new(50, 2);
    drive(&a, ra);
    drive(&b, rb);
    cr_assert_str_eq(ra->dec[0], rb->dec[0]);
    cr_assert_str_eq(ra->dec[1], rb->dec[1]);
    strategy_destroy(&a);
    strategy_destroy(&b);
    free(ra);
    free(rb);
}

/* Writes a table file of steps rows from per-branch ratios. */
static void write_table(const char *path, int steps, const double *cond, const double *uncond) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "# test table\nformat cachebench-magcache-ratios 1\nmodel tiny\nsteps %d\n", steps);
    for (int t = 0; t < steps; t++) fprintf(f, "%d %.17g %.17g nan nan nan nan\n", t, cond[t], uncond[t]);
    fclose(f);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

/* 8 steps, warmup 2 (calls 0-3 compute), thresh 0.12, K 2.
 * cond ratios from step 2: 0.95 0.96 1.0 0.9 0.99 0.99
 *   step 2: Π 0.95, E 0.05 (1 call)  R      step 3: Π 0.912, E 0.05+0.088 = 0.138 >= 0.12  C (reset, γ dropped)
 *   step 4: Π 1, E 0 (1)             R      step 5: Π 0.9, E 0.1 (2)                       R
 *   step 6: Π 0.891, E 0.209         C      step 7: Π 0.99, E 0.01 (1)                     R     -> CCRCRRCR
 * uncond ratios all 1: E stays 0, the cap K = 2 decides: R R C R R C from step 2             -> CCRRCRRC
 * ratio_power 0.5 on the cond table, γ = sqrt(ratio):
 *   step 2: Π 0.97468, E 0.02532 R;  step 3: Π 0.95499, E 0.07033 (2) R;  step 4: third call > K  C
 *   step 5: Π 0.94868, E 0.05132 R;  step 6: Π 0.94393, E 0.10739 (2) R;  step 7: third call > K  C -> CCRRCRRC */
Test(magcache, hand_derived_decisions_traces_and_power) {
    char *dir = fixture_tmpdir();
    char path[4200];
    snprintf(path, sizeof path, "%s/t.txt", dir);
    const double cond[8] = {1, 1.2, 0.95, 0.96, 1.0, 0.9, 0.99, 0.99}, uncond[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    write_table(path, 8, cond, uncond);
    StrategyEnv env = env_for(8, "tiny", NULL);
    char spec[4400];
    snprintf(spec, sizeof spec, "magcache:warmup=2,ratios=%s", path);
    Strategy s;
    create_ok(&s, spec, &env);
    char want_spec[4400];
    snprintf(want_spec, sizeof want_spec, "magcache:thresh=0.12,max_skip=2,warmup=2,ratio_power=1,ratios=%s", path);
    cr_assert_str_eq(s.spec, want_spec);
    Traj *r = traj_new(8, 2);
    drive(&s, r);
    cr_assert_str_eq(r->dec[0], "CCRCRRCR");
    cr_assert_str_eq(r->dec[1], "CCRRCRRC");
    /* Traces: γ of the call (NAN in retention), acc_err after it (0 after a reset), the threshold. */
    cr_assert(isnan(r->tr[1][0].signal) && r->tr[1][0].accumulator == 0.0f);
    cr_assert_float_eq(r->tr[2][0].signal, 0.95f, 1e-7);
    cr_assert_float_eq(r->tr[2][0].accumulator, 0.05f, 1e-6);
    cr_assert_float_eq(r->tr[3][0].signal, 0.96f, 1e-7);
    cr_assert_eq(r->tr[3][0].accumulator, 0.0f);
    cr_assert_float_eq(r->tr[5][0].accumulator, 0.1f, 1e-6);
    cr_assert_float_eq(r->tr[5][0].threshold, 0.12f, 1e-7);
    cr_assert(isnan(r->tr[5][0].k));
    /* A second run with the same strategy starts afresh (the script's reset after 2·steps calls). */
    Traj *again = traj_new(8, 2);
    drive(&s, again);
    cr_assert_str_eq(again->dec[0], "CCRCRRCR");
    cr_assert_str_eq(again->dec[1], "CCRRCRRC");
    strategy_destroy(&s);

    snprintf(spec, sizeof spec, "magcache:warmup=2,ratio_power=0.5,ratios=%s", path);
    create_ok(&s, spec, &env);
    Traj *p = traj_new(8, 2);
    drive(&s, p);
    cr_assert_str_eq(p->dec[0], "CCRRCRRC");
    cr_assert_float_eq(p->tr[2][0].signal, (float)sqrt(0.95), 1e-7);
    strategy_destroy(&s);
    fixture_rmdir(dir);
    free(dir);
    free(r);
    free(again);
    free(p);
}

/* Retention counts calls 2·step + branch, as the script's int(2·steps·ratio): 5 steps, retention 0.3 ->
 * int(3.0000000000000004) = 3 calls: step 1's cond call computes, its uncond call is tested. Ratios all 1, K 10:
 * every tested call reuses.   cond CCRRR, uncond CRRRR.   warmup=1 = 2 calls: CRRRR for both.
 * Retention 0: the first call is tested but has no residual: it computes (the script would fail), then reuse.
 * Guidance off: only cond calls, same table entries. */
Test(magcache, retention_counts_calls_and_the_first_call_needs_a_residual) {
    char *dir = fixture_tmpdir();
    char path[4200], spec[4400];
    snprintf(path, sizeof path, "%s/ones.txt", dir);
    const double ones[5] = {1, 1, 1, 1, 1};
    write_table(path, 5, ones, ones);
    StrategyEnv env = env_for(5, "tiny", NULL);
    const struct {
        const char *params;
        int branches;
        const char *cond, *uncond;
    } cases[] = {{"retention=0.3", 2, "CCRRR", "CRRRR"},
                 {"warmup=1", 2, "CRRRR", "CRRRR"},
                 {"retention=0", 2, "CRRRR", "CRRRR"},
                 {"retention=0.3", 1, "CCRRR", ""}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(spec, sizeof spec, "magcache:%s,max_skip=10,ratios=%s", cases[i].params, path);
        Strategy s;
        create_ok(&s, spec, &env);
        Traj *r = traj_new(5, cases[i].branches);
        drive(&s, r);
        cr_assert_str_eq(r->dec[0], cases[i].cond, "%s", spec);
        cr_assert_str_eq(r->dec[1], cases[i].uncond, "%s", spec);
        strategy_destroy(&s);
        free(r);
    }
    fixture_rmdir(dir);
    free(dir);
}

/* clone mid-run: the copy continues exactly as the original (decisions and outputs), with its own buffers;
 * bytes_held counts the two residuals and the tables. */
Test(magcache, clone_and_bytes_held) {
    StrategyEnv env = env_for(50, "wan2.1-t2v-1.3b", NULL);
    Strategy s, c;
    create_ok(&s, "magcache:max_skip=4", &env);
    size_t tables = 2 * 50 * sizeof(double);
    cr_assert_geq(strategy_bytes_held(&s), tables);
    cr_assert_lt(strategy_bytes_held(&s), tables + 1024, "no residual before the first call");
    Traj *r = traj_new(50, 2), *r2 = calloc(1, sizeof *r2);
    cr_assert_not_null(r2);
    drive_range(&s, r, 0, 21);
    size_t held = strategy_bytes_held(&s);
    cr_assert_geq(held, tables + 2 * N * sizeof(float));
    Error err = {{0}};
    cr_assert_eq(strategy_clone(&c, &s, &err), 0, "%s", err.msg);
    cr_assert_eq(strategy_bytes_held(&c), held);
    cr_assert_str_eq(c.spec, s.spec);
    *r2 = *r;
    drive_range(&s, r, 21, 50);
    strategy_destroy(&s); /* the copy owns its buffers */
    drive_range(&c, r2, 21, 50);
    cr_assert_str_eq(r->dec[0], r2->dec[0]);
    cr_assert_str_eq(r->dec[1], r2->dec[1]);
    cr_assert_eq(count_computed(r), 42);
    strategy_destroy(&c);
    free(r);
    free(r2);
}

/* The official nearest_interp, numpy round half to even included (scale 0.5 lands on .5 exactly), against
 * tests/magcache_official.py on arange(n). */
Test(magcache, nearest_interp_matches_numpy) {
    const char *py = fixture_python();
    char cmd[512];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import numpy' >/dev/null 2>&1", py);
    if (system(cmd) != 0) cr_skip_test("%s cannot import numpy", py);
    const int cases[][2] = {{5, 9}, {3, 5}, {50, 30}, {16, 12}, {50, 100}, {50, 1}, {1, 4}, {7, 7}, {40, 50}, {2, 6}};
    const int ncases = (int)(sizeof cases / sizeof cases[0]);
    int w = snprintf(cmd, sizeof cmd, "'%s' tests/magcache_official.py interp", py);
    for (int k = 0; k < ncases; k++) w += snprintf(cmd + w, sizeof cmd - (size_t)w, " %d:%d", cases[k][0], cases[k][1]);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    for (int k = 0; k < ncases; k++) {
        int n = cases[k][0], T = cases[k][1];
        double src[128], dst[128];
        for (int i = 0; i < n; i++) src[i] = i;
        magcache_nearest_interp(src, n, dst, T);
        for (int i = 0; i < T; i++) {
            int want;
            cr_assert_eq(fscanf(p, "%d", &want), 1, "n %d T %d: numpy gave fewer than %d values", n, T, T);
            cr_assert_eq((int)dst[i], want, "n %d T %d: index %d: C %g, numpy %d", n, T, i, dst[i], want);
        }
    }
    cr_assert_eq(pclose(p), 0);
}

Test(magcache, bad_parameters_and_tables_are_refused) {
    char *dir = fixture_tmpdir();
    StrategyEnv env = env_for(50, "wan2.1-t2v-1.3b", NULL);
    create_fails("magcache:warmup=5,retention=0.2", &env, "not both", NULL);
    create_fails("magcache:ratio_power=0", &env, "ratio_power", "(0, 4]");
    create_fails("magcache:ratio_power=5", &env, "ratio_power", NULL);
    create_fails("magcache:thresh=-0.1", &env, "thresh", ">= 0");
    create_fails("magcache:retention=1.5", &env, "retention", "[0, 1]");
    create_fails("magcache:max_skip=-1", &env, "max_skip", NULL);
    create_fails("magcache:K=2", &env, "unknown parameter", "max_skip");
    create_fails("magcache:table_steps=30", &env, "table_steps=30", "50 steps");
    create_fails("magcache:ratios=builtin:wan2.2", &env, "no built-in ratio table", "wan2.1-t2v-1.3b");
    /* No table for the tiny model: the message says how to make one. */
    StrategyEnv tiny = env_for(30, "tiny", "/nonexistent-dir/tiny.safetensors");
    create_fails("magcache", &tiny, "cachebench calibrate --for magcache", "ratios=FILE");

    const struct {
        const char *name, *text, *want;
    } bad[] = {
        {"empty.txt", "", "empty file"},
        {"other.txt", "0 1 1 nan nan nan nan\n", "not a MagCache ratio table"},
        {"odd.txt", "format cachebench-magcache-ratios 1\n0 1 1 nan nan nan nan\n1 1.0 0.9 nan nan nan\n",
         "expected 7 columns"},
        {"gap.txt", "format cachebench-magcache-ratios 1\n0 1 1 nan nan nan nan\n2 1 1 nan nan nan nan\n",
         "step 2 where step 1 was expected"},
        {"zero.txt", "format cachebench-magcache-ratios 1\n0 1 1 nan nan nan nan\n1 0 1 nan nan nan nan\n",
         "ratio_cond must be a finite number > 0"},
        {"word.txt", "format cachebench-magcache-ratios 1\n0 1 1 nan nan nan nan\n1 1 x nan nan nan nan\n",
         "ratio_uncond \"x\" is not a number"},
        {"short.txt", "format cachebench-magcache-ratios 1\nsteps 3\n0 1 1 nan nan nan nan\n1 1 1 nan nan nan nan\n",
         "says steps 3 but holds 2 rows"},
        {"rows.txt", "format cachebench-magcache-ratios 1\nsteps 3\n", "no rows"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[4200], spec[4400];
        snprintf(path, sizeof path, "%s/%s", dir, bad[i].name);
        write_text(path, bad[i].text);
        snprintf(spec, sizeof spec, "magcache:ratios=%s", path);
        create_fails(spec, &env, path, bad[i].want);
    }
    char missing[4200], spec[4400];
    snprintf(missing, sizeof missing, "%s/missing.txt", dir);
    snprintf(spec, sizeof spec, "magcache:ratios=%s", missing);
    create_fails(spec, &env, missing, "cannot open");
    fixture_rmdir(dir);
    free(dir);
}

/* A table of another step count is resampled (both branches, nearest_interp) and the canonical spec says so with
 * table_steps, which parses back to the same strategy; magcache_ratios.txt beside the weights is the default. */
Test(magcache, resampled_table_default_file_and_canonical_spec) {
    char *dir = fixture_tmpdir();
    char weights[4200], table[4200], spec[4400], want[4400];
    snprintf(weights, sizeof weights, "%s/tiny.safetensors", dir);
    snprintf(table, sizeof table, "%s/magcache_ratios.txt", dir);
    double cond[20], uncond[20];
    for (int t = 0; t < 20; t++) cond[t] = 1.0 - 0.001 * t, uncond[t] = 1.0 - 0.002 * t;
    write_table(table, 20, cond, uncond);
    StrategyEnv env = env_for(12, "tiny", weights);
    Strategy s, again;
    create_ok(&s, "magcache:max_skip=3", &env);
    snprintf(want, sizeof want, "magcache:thresh=0.12,max_skip=3,retention=0.2,ratio_power=1,ratios=%s,table_steps=20",
             table);
    cr_assert_str_eq(s.spec, want);
    create_ok(&again, s.spec, &env);
    cr_assert_str_eq(again.spec, s.spec);
    Traj *r = traj_new(12, 2);
    drive(&s, r);
    double idx[12], src[20];
    for (int t = 0; t < 20; t++) src[t] = t;
    magcache_nearest_interp(src, 20, idx, 12);
    for (int t = 2; t < 12; t++) { /* retention: int(24 * 0.2) = 4 calls */
        cr_assert_float_eq(r->tr[t][0].signal, (float)cond[(int)idx[t]], 1e-7, "step %d", t);
        cr_assert_float_eq(r->tr[t][1].signal, (float)uncond[(int)idx[t]], 1e-7, "step %d", t);
    }
    strategy_destroy(&s);
    strategy_destroy(&again);
    /* A table of the run's step count: no table_steps. */
    StrategyEnv env20 = env_for(20, "tiny", weights);
    create_ok(&s, "magcache", &env20);
    snprintf(want, sizeof want, "magcache:thresh=0.12,max_skip=2,retention=0.2,ratio_power=1,ratios=%s", table);
    cr_assert_str_eq(s.spec, want);
    strategy_destroy(&s);
    snprintf(spec, sizeof spec, "magcache:ratios=%s,table_steps=20", table);
    create_ok(&s, spec, &env);
    strategy_destroy(&s);
    fixture_rmdir(dir);
    free(dir);
    free(r);
}

/* Reads the [steps][2] array name of a safetensors file written by the Python oracle. */
static float *read_array(const char *path, const char *name, size_t want_n) {
    StFile f;
    Error err = {{0}};
    cr_assert_eq(st_open(&f, path, &err), 0, "%s", err.msg);
    const StTensor *t = st_find(&f, name);
    cr_assert_not_null(t, "%s: no %s", path, name);
    cr_assert_eq(st_numel(t->ndim, t->shape), want_n, "%s: %s size", path, name);
    float *v = malloc(want_n * sizeof *v);
    cr_assert_eq(st_to_f32(t, v, &err), 0, "%s", err.msg);
    st_close(&f);
    return v;
}

#define WEIGHTS "models/tiny/tiny.safetensors"
#define PROMPT "red circle moving right"

/* The tiny model end to end against the Python transcription of the official code (one Python process: about 25
 * float64 model calls):
 *  1. `cachebench calibrate --for magcache` (8 steps) against magcache_calibration in Python on the same run:
 *     ratio, std and cos_dis per step and branch within 1.5e-5 (the file holds 5 decimals: 5e-6 of rounding, plus
 *     float32 against float64 over 4 layers; measured 4.9e-6).
 *  2. `cachebench run --strategy magcache` (6 steps: the 8-step table resampled) against magcache_forward replayed in
 *     Python with the same table file: identical decisions per step and branch, latents within 5e-5 of their scale
 *     (measured 9e-6 at step 6, the driver's own agreement).
 *     The decisions depend only on the table (the same file on both sides), and both accumulate in double; the test
 *     still checks that no tested error lies within 1e-3 of thresh, so that no rounding could flip a decision. */
Test(magcache, tiny_model_against_the_official_code, .timeout = 300) {
    const char *py = fixture_python();
    char cmd[32768], log[8192];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import numpy, torch' >/dev/null 2>&1", py);
    if (system(cmd) != 0) cr_skip_test("%s cannot import numpy and torch (Debian: python3-numpy, python3-torch)", py);
    char *dir = fixture_tmpdir();
    char prompts[4200], table[4200], out[4200], case_cal[4200], case_run[4200], py_cal[4200], py_rep[4200];
    char rec_path[4400];
    snprintf(prompts, sizeof prompts, "%s/prompts.txt", dir);
    snprintf(table, sizeof table, "%s/ratios.txt", dir);
    snprintf(out, sizeof out, "%s/runs", dir);
    snprintf(case_cal, sizeof case_cal, "%s/case_cal.safetensors", dir);
    snprintf(case_run, sizeof case_run, "%s/case_run.safetensors", dir);
    snprintf(py_cal, sizeof py_cal, "%s/py_cal.safetensors", dir);
    snprintf(py_rep, sizeof py_rep, "%s/py_rep.safetensors", dir);
    write_text(prompts, "p0\t" PROMPT "\n");
    const DitConfig *cfg = dit_config_by_name("tiny");
    enum { CAL_STEPS = 8, RUN_STEPS = 6 };
    /* thresh 0.2, K 2 on this table: calls 3, 4, 8 and 11 reuse; the nearest tested error is 0.174. */
    const char *thresh = "0.2", *K = "2";

    const char *cal[] = {"calibrate", "--for", "magcache", "--prompts", prompts, "--steps", "8", "--seeds", "3",
                         "--out", table, NULL};
    cr_assert_eq(fixture_run_cli(log, sizeof log, cal), 0, "%s", log);
    char spec[4400];
    snprintf(spec, sizeof spec, "magcache:thresh=%s,max_skip=%s,ratios=%s", thresh, K, table);
    const char *run[] = {"run", "--prompt", PROMPT, "--seed", "3", "--steps", "6", "--latents", "--quiet",
                         "--strategy", spec, "--out", out, NULL};
    cr_assert_eq(fixture_run_cli(log, sizeof log, run), 0, "%s", log);
    cr_assert_eq(fixture_replay_case(case_cal, cfg, WEIGHTS, PROMPT, "", 3, CAL_STEPS, cfg->default_shift,
                                     cfg->default_guidance),
                 0);
    cr_assert_eq(fixture_replay_case(case_run, cfg, WEIGHTS, PROMPT, "", 3, RUN_STEPS, cfg->default_shift,
                                     cfg->default_guidance),
                 0);
    snprintf(cmd, sizeof cmd, "'%s' tests/magcache_official.py check '%s' '%s' '%s' '%s' %s %s 0.2 1 '%s' 2>&1", py,
             case_cal, py_cal, case_run, table, thresh, K, py_rep);
    cr_assert_eq(system(cmd), 0, "%s", cmd);

    /* 1. calibration */
    MagTable t;
    Error err = {{0}};
    cr_assert_eq(magcache_read_table(table, &t, &err), 0, "%s", err.msg);
    cr_assert_eq(t.steps, CAL_STEPS);
    cr_assert_eq(t.ratio[0][0], 1.0);
    cr_assert_eq(t.ratio[1][0], 1.0);
    float *ratio = read_array(py_cal, "ratio", 2 * CAL_STEPS), *std = read_array(py_cal, "std", 2 * CAL_STEPS),
          *cos = read_array(py_cal, "cos_dis", 2 * CAL_STEPS);
    for (int s = 1; s < CAL_STEPS; s++)
        for (int b = 0; b < 2; b++) {
            const double pairs[3][2] = {{t.ratio[b][s], ratio[2 * s + b]}, {t.std[b][s], std[2 * s + b]},
                                        {t.cos_dis[b][s], cos[2 * s + b]}};
            for (int k = 0; k < 3; k++)
                cr_expect_leq(fabs(pairs[k][0] - pairs[k][1]), 1.5e-5, "step %d branch %d %s: C %.6f, Python %.6f", s,
                              b, k == 0 ? "ratio" : k == 1 ? "std" : "cos_dis", pairs[k][0], pairs[k][1]);
        }

    /* 2. replay */
    snprintf(cmd, sizeof cmd, "ls '%s'/*.h5", out);
    FILE *ls = popen(cmd, "r");
    cr_assert(ls && fgets(rec_path, sizeof rec_path, ls));
    pclose(ls);
    rec_path[strcspn(rec_path, "\n")] = '\0';
    cr_assert(strstr(rec_path, "table_steps-8"), "the resampled table shows in the spec: %s", rec_path);
    RunRecord rec = {0};
    cr_assert_eq(record_read(rec_path, &rec, &err), 0, "%s", err.msg);
    float *dec = read_array(py_rep, "decisions", 2 * RUN_STEPS), *tested = read_array(py_rep, "tested", 2 * RUN_STEPS);
    int reused = 0;
    for (int s = 0; s < RUN_STEPS; s++)
        for (int b = 0; b < 2; b++) {
            cr_assert_eq(rec.step[s].computed[b], (int)dec[2 * s + b], "step %d branch %d: C %s, official %s", s, b,
                         rec.step[s].computed[b] ? "computed" : "reused", dec[2 * s + b] ? "computed" : "reused");
            reused += !rec.step[s].computed[b];
            if (!isnan(tested[2 * s + b])) {
                cr_assert_gt(fabs(tested[2 * s + b] - atof(thresh)), 1e-3, "step %d branch %d: error at thresh", s, b);
                cr_assert_float_eq(rec.step[s].accumulator[b], rec.step[s].computed[b] ? 0.0f : tested[2 * s + b],
                                   1e-6, "step %d branch %d: the trace's acc_err", s, b);
            }
        }
    cr_assert(reused >= 2 && reused <= 8, "a mix of reuse and compute: %d of %d calls reused", reused, 2 * RUN_STEPS);
    const size_t per = (size_t)rec.lc * rec.lf * rec.lh * rec.lw;
    float *lat = read_array(py_rep, "latents", RUN_STEPS * per);
    for (int s = 0; s < RUN_STEPS; s++) {
        double diff = 0.0, scale = 0.0;
        for (size_t j = 0; j < per; j++) {
            diff = fmax(diff, fabs((double)rec.latents[(size_t)s * per + j] - lat[(size_t)s * per + j]));
            scale = fmax(scale, fabs((double)lat[(size_t)s * per + j]));
        }
        cr_expect_leq(diff, 5e-5 * scale, "step %d: max |C - Python| %.3g (scale %.3g)", s, diff, scale);
    }
    record_free(&rec);
    magcache_table_free(&t);
    free(ratio), free(std), free(cos), free(dec), free(tested), free(lat);
    fixture_rmdir(dir);
    free(dir);
}

/* calibrate --for magcache refuses what it cannot do, and never replaces a table without --force. */
Test(magcache, calibrate_refusals, .timeout = 120) {
    char *dir = fixture_tmpdir();
    char prompts[4200], table[4200], log[8192];
    snprintf(prompts, sizeof prompts, "%s/prompts.txt", dir);
    snprintf(table, sizeof table, "%s/ratios.txt", dir);
    write_text(prompts, "p0\t" PROMPT "\n");
    write_text(table, "keep me\n");
    const char *exists[] = {"calibrate", "--for", "magcache", "--prompts", prompts, "--steps", "3", "--out", table,
                            NULL};
    cr_assert_eq(fixture_run_cli(log, sizeof log, exists), 2, "%s", log);
    cr_assert(strstr(log, "exists: pass --force"), "%s", log);
    char *kept = fixture_read_file(table);
    cr_assert_str_eq(kept, "keep me\n");
    free(kept);
    /* The shipped table beside the embedded weights is kept too. */
    const char *shipped[] = {"calibrate", "--for", "magcache", "--prompts", prompts, NULL};
    cr_assert_eq(fixture_run_cli(log, sizeof log, shipped), 2, "%s", log);
    cr_assert(strstr(log, "magcache_ratios.txt exists: pass --force"), "%s", log);
    const char *seeds[] = {"calibrate", "--for", "magcache", "--prompts", prompts, "--seeds", "0,1", NULL};
    cr_assert_eq(fixture_run_cli(log, sizeof log, seeds), 2, "%s", log);
    cr_assert(strstr(log, "one seed"), "%s", log);
    const char *variant[] = {"calibrate", "--for", "magcache", "--variant", "e0", "--prompts", prompts, NULL};
    cr_assert_eq(fixture_run_cli(log, sizeof log, variant), 2, "%s", log);
    cr_assert(strstr(log, "--variant is TeaCache's"), "%s", log);
    const char *what[] = {"calibrate", "--for", "pab", "--prompts", prompts, NULL};
    cr_assert_eq(fixture_run_cli(log, sizeof log, what), 2, "%s", log);
    cr_assert(strstr(log, "use teacache or magcache"), "%s", log);
    /* --force replaces it with a table that reads back. */
    const char *force[] = {"calibrate", "--for", "magcache", "--prompts", prompts, "--steps", "3", "--out", table,
                           "--force", NULL};
    cr_assert_eq(fixture_run_cli(log, sizeof log, force), 0, "%s", log);
    MagTable t;
    Error err = {{0}};
    cr_assert_eq(magcache_read_table(table, &t, &err), 0, "%s", err.msg);
    cr_assert_eq(t.steps, 3);
    magcache_table_free(&t);
    char *text = fixture_read_file(table);
    cr_assert(strstr(text, "\nmodel tiny\n") && strstr(text, "\nsolver euler\n") && strstr(text, "\nshift 3\n") &&
                  strstr(text, "\nweights_sha256 ") && strstr(text, "\nsteps 3\n") && strstr(text, "\nprompt p0\n"),
              "%s", text);
    free(text);
    fixture_rmdir(dir);
    free(dir);
}

/* A run id names a ratios=FILE table by the first 12 hex digits of its sha256 (as TeaCache's coeffs=FILE), so the
 * same table reached by another path gives the same id; builtin tables stay as written. */
Test(magcache, run_id_names_the_table_by_content) {
    char *dir = fixture_tmpdir();
    char path[4200], spec[4400], id[512], hex[65];
    snprintf(path, sizeof path, "%s/t.txt", dir);
    const double ones[3] = {1, 1, 1};
    write_table(path, 3, ones, ones);
    Error err = {{0}};
    cr_assert_eq(sha256_file_hex(path, hex, &err), 0, "%s", err.msg);
    snprintf(spec, sizeof spec, "magcache:thresh=0.12,max_skip=2,retention=0.2,ratio_power=1,ratios=%s,table_steps=3",
             path);
    experiment_run_id(spec, "p0", 1, id, sizeof id);
    char want[128];
    snprintf(want, sizeof want, "_ratios-%.12s_table_steps-3__p0__s1", hex);
    cr_assert(strstr(id, want), "%s lacks %s", id, want);
    cr_assert_null(strstr(id, "t.txt"), "%s names the file", id);
    experiment_run_id("magcache:thresh=0.12,ratios=builtin:wan2.1-t2v-1.3b", "p0", 1, id, sizeof id);
    cr_assert_str_eq(id, "magcache_thresh-0.12_ratios-builtin_wan2.1-t2v-1.3b__p0__s1");
    fixture_rmdir(dir);
    free(dir);
}
