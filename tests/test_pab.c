/* pab (strategies/pab.c) against VideoSys's rule and the engine contract of module plans.
 *   - Flags: for the harness's own timestep lists (the tiny model's Euler schedule, a 50-step shift-5 Euler and
 *     UniPC schedule), every (video, step, branch, layer, kind) broadcast decision equals tests/pab_official.py, an
 *     independent transcription of VideoSys's PABManager.if_broadcast_* and CogVideoXBlock's per-block counters.
 *   - Broadcast outputs are bit-equal to what the same branch's module last computed (the hooks driven directly, the
 *     engine simulated by writing random outputs into the buffers a COMPUTE plan hands out).
 *   - cond and uncond keep their own counters and caches: tests that fail if either were shared (diffusers' hook).
 *   - Through the real runner on a small random model: the FLOPs of every step are those of the full step less
 *     exactly the supplied modules (dit_flops_module), the trace's signal counts them, bytes held are one output per
 *     hooked module and branch, and ranges of 1 (nothing broadcast, outputs still copied) equal `none` bit for bit.
 *   - clone continues identically; bad parameters are refused. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/runner.h"
#include "models/dit/dit.h"
#include "models/dit/engine.h"
#include "models/safetensors.h"
#include "results/record.h"
#include "harness/solvers/solver.h"
#include "strategies/strategy.h"
#include "tests/fixtures.h"
#ifdef CACHEBENCH_CUDA
#include "models/dit/engine_cuda.h"
#endif

#define LAYERS 3
#define TOK 29 /* floats in one module output */
#define MAX_STEPS 50

static StrategyEnv small_env(int steps) {
    StrategyEnv env = {.num_steps = steps, .num_layers = LAYERS, .num_heads = 1, .dim = TOK, .model_numel = TOK,
                       .tokens_numel = TOK, .ops = cpu_vec_ops(), .model_name = "test"};
    return env;
}

static void create(Strategy *s, const char *spec, int steps) {
    StrategyEnv env = small_env(steps);
    Error err = {{0}};
    cr_assert_eq(strategy_create(s, spec, &env, &err), 0, "%s: %s", spec, err.msg);
}

/* The engine's side of one block for the hooks: a COMPUTE module with a buffer gets a fresh random output (seeded by
 * its position, never zero), as dit_block copies its pre-gate output there. Returns the plan for inspection. */
static uint64_t output_seed(int video, int step, int branch, int layer, int m) {
    return 1000003ull * (uint64_t)(((video * MAX_STEPS + step) * 2 + branch) * LAYERS + layer) + (uint64_t)m + 7;
}

typedef struct {
    int videos, branches;
    int until;                                      /* steps driven per video (0: all num_steps) */
    const float *timesteps;
    char flags[2 * MAX_STEPS * 2 * LAYERS * 2 + 1]; /* '0'/'1' per (video, step, branch, layer, kind self, cross) */
    float signal[2][MAX_STEPS][2];                  /* trace signal per (video, step, branch) */
    int supplied_checked;                           /* supplied outputs compared bit for bit */
} Drive;

/* Calls the hooks the way harness/runner.c does for num_steps steps (cond then uncond), `videos` times in a row on
 * the same state, and checks every supplied output against the last one its (branch, layer, module) computed. */
static void drive(Strategy *s, int num_steps, Drive *d) {
    static float last[2][LAYERS][MODULE_COUNT][TOK];
    int have[2][LAYERS][MODULE_COUNT] = {{{0}}};
    size_t at = 0;
    d->supplied_checked = 0;
    for (int v = 0; v < d->videos; v++) {
        for (int t = 0; t < (d->until ? d->until : num_steps); t++) {
            for (int b = 0; b < d->branches; b++) {
                StepInfo st = {.step = t, .num_steps = num_steps, .branch = (Branch)b, .guidance_on = d->branches == 2,
                               .timestep = d->timesteps[t], .sigma = d->timesteps[t] / 1000.0f};
                BranchTrace tr = {.computed = 1, .signal = NAN, .accumulator = NAN, .threshold = NAN, .k = NAN};
                for (int layer = 0; layer < LAYERS; layer++) {
                    ModulePlan plan = {{MODULE_COMPUTE, MODULE_COMPUTE, MODULE_COMPUTE}, {NULL, NULL, NULL}};
                    s->module_plan(s, &st, layer, &plan);
                    cr_assert_eq(plan.mode[MODULE_FFN], MODULE_COMPUTE, "the FFN is never broadcast");
                    for (int m = 0; m < MODULE_COUNT; m++) {
                        if (plan.mode[m] == MODULE_SUPPLY) {
                            cr_assert_not_null(plan.out[m]);
                            cr_assert(have[b][layer][m], "video %d step %d branch %d layer %d module %d: supplied "
                                      "before any computed output", v, t, b, layer, m);
                            cr_assert(memcmp(plan.out[m], last[b][layer][m], sizeof last[b][layer][m]) == 0,
                                      "video %d step %d branch %d layer %d module %d: the supplied output is not the "
                                      "branch's last computed one", v, t, b, layer, m);
                            d->supplied_checked++;
                        } else if (plan.out[m]) {
                            fixture_random(plan.out[m], TOK, output_seed(v, t, b, layer, m));
                            memcpy(last[b][layer][m], plan.out[m], sizeof last[b][layer][m]);
                            have[b][layer][m] = 1;
                        }
                    }
                    d->flags[at++] = plan.mode[MODULE_SELF_ATTN] == MODULE_SUPPLY ? '1' : '0';
                    d->flags[at++] = plan.mode[MODULE_CROSS_ATTN] == MODULE_SUPPLY ? '1' : '0';
                    float tokens[TOK] = {0};
                    cr_assert_eq(s->layer_end(s, &st, layer, tokens, TOK, &tr), layer + 1);
                }
                cr_assert_eq(tr.computed, 1, "a PAB call always runs");
                d->signal[v][t][b] = tr.signal;
            }
        }
    }
    d->flags[at] = '\0';
}

/* Runs tests/pab_official.py flags; returns its output line (malloc'd). */
static char *official_flags(int steps, int branches, int videos, int warmup, const char *self, const char *cross,
                            const float *timesteps) {
    char *cmd = malloc(16384);
    int len = snprintf(cmd, 16384, "'%s' tests/pab_official.py flags %d %d %d %d %d %s %s ", fixture_python(), steps,
                       LAYERS, branches, videos, warmup, self, cross);
    for (int i = 0; i < steps; i++) len += snprintf(cmd + len, 16384 - (size_t)len, "%s%.9g", i ? "," : "", timesteps[i]);
    snprintf(cmd + len, 16384 - (size_t)len, " 2>&1");
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "cannot run %s", cmd);
    char *out = calloc(1, 8192);
    size_t n = fread(out, 1, 8191, p);
    out[n] = '\0';
    int status = pclose(p);
    cr_assert_eq(status, 0, "%s failed:\n%s", cmd, out);
    out[strcspn(out, "\n")] = '\0';
    free(cmd);
    return out;
}

static void schedule(const char *solver, int steps, float shift, float *timesteps) {
    float sigmas[MAX_STEPS + 1];
    solver_by_name(solver)->schedule(steps, shift, sigmas, timesteps);
}

/* Creates spec for `steps` Euler steps at shift 3 (timesteps into ts) and drives one video with both branches. */
static void drive_euler(Strategy *s, const char *spec, int steps, float *ts, Drive *d) {
    schedule("euler", steps, 3.0f, ts);
    create(s, spec, steps);
    *d = (Drive){.videos = 1, .branches = 2, .timesteps = ts};
    drive(s, steps, d);
}

typedef struct {
    const char *spec;
    const char *self, *cross; /* pab_official.py's "range,lo,hi" */
    int warmup;
    const char *solver;
    int steps;
    float shift;
    int branches;
} FlagCase;

Test(pab, flags_equal_a_replay_of_videosys_on_the_harness_schedules) {
    /* Latte's config (LattePABConfig: spatial 2, temporal 3, cross 6, all in [100, 800]) mapped to Wan's kinds:
     * spatial -> self, cross -> cross; temporal's range 3 also tried on self. Then our defaults, a warm-up, CFG
     * off, and Wan's UniPC timesteps. Two videos in a row on one state check that counters restart (mod steps). */
    const FlagCase cases[] = {
        {"pab:self_range=2,self_lo=100,self_hi=800,cross_range=6,cross_lo=100,cross_hi=800", "2,100,800", "6,100,800",
         0, "euler", 30, 3.0f, 2},
        {"pab:self_range=2,self_lo=100,self_hi=800,cross_range=6,cross_lo=100,cross_hi=800", "2,100,800", "6,100,800",
         0, "euler", 50, 5.0f, 2},
        {"pab:self_range=3,self_lo=100,self_hi=800,cross_range=6,cross_lo=100,cross_hi=800", "3,100,800", "6,100,800",
         0, "euler", 50, 5.0f, 2},
        {"pab", "2,100,850", "6,100,850", 0, "euler", 50, 3.0f, 2},
        {"pab:warmup=30", "2,100,850", "6,100,850", 30, "euler", 50, 3.0f, 2},
        {"pab:cross_range=0", "2,100,850", "0,100,850", 0, "euler", 30, 3.0f, 1},
        {"pab:self_range=4,self_lo=300,self_hi=990,cross_range=5,cross_lo=150.5,cross_hi=700", "4,300,990",
         "5,150.5,700", 0, "unipc", 50, 5.0f, 2},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const FlagCase *fc = &cases[c];
        float ts[MAX_STEPS];
        schedule(fc->solver, fc->steps, fc->shift, ts);
        Strategy s;
        create(&s, fc->spec, fc->steps);
        Drive d = {.videos = 2, .branches = fc->branches, .timesteps = ts};
        drive(&s, fc->steps, &d);
        char *want = official_flags(fc->steps, fc->branches, 2, fc->warmup, fc->self, fc->cross, ts);
        cr_assert_str_eq(d.flags, want, "%s on %d %s steps (shift %g): flags differ from VideoSys's rule", fc->spec,
                         fc->steps, fc->solver, fc->shift);
        cr_assert(strchr(d.flags, '1') && d.supplied_checked > 0, "%s: the case broadcasts nothing", fc->spec);
        /* The trace counts the modules supplied per call. */
        const size_t per_call = 2 * LAYERS;
        for (int v = 0; v < 2; v++)
            for (int t = 0; t < fc->steps; t++)
                for (int b = 0; b < fc->branches; b++) {
                    const char *f = d.flags + (((size_t)v * fc->steps + t) * fc->branches + b) * per_call;
                    int n = 0;
                    for (size_t i = 0; i < per_call; i++) n += f[i] == '1';
                    cr_assert_eq(d.signal[v][t][b], (float)n, "%s step %d branch %d: signal %g, supplied %d", fc->spec,
                                 t, b, d.signal[v][t][b], n);
                }
        free(want);
        strategy_destroy(&s);
    }
}

Test(pab, a_hand_derived_schedule) {
    /* Timesteps 900, 800, ..., 0 (10 steps) but 100.5 at step 8, self R 2 in (100, 850), cross R 3 in (100, 850),
     * one branch, layer 0:
     *   step   0   1   2   3   4   5   6   7     8   9
     *   t    900 800 700 600 500 400 300 200 100.5   0
     *   self   -   B   -   B   -   B   -   B     -   -     (count odd and 100 < int(t) < 850)
     *   cross  -   B   B   -   B   B   -   B     -   -     (count % 3 != 0; at step 8 int(100.5) = 100 is outside)*/
    float ts[10];
    for (int i = 0; i < 10; i++) ts[i] = 900.0f - 100.0f * (float)i;
    ts[8] = 100.5f;
    Strategy s;
    create(&s, "pab:self_range=2,cross_range=3", 10);
    Drive d = {.videos = 1, .branches = 1, .timesteps = ts};
    drive(&s, 10, &d);
    char self[11], cross[11];
    for (int t = 0; t < 10; t++) {
        self[t] = d.flags[(size_t)t * 2 * LAYERS] == '1' ? 'B' : '-';
        cross[t] = d.flags[(size_t)t * 2 * LAYERS + 1] == '1' ? 'B' : '-';
    }
    self[10] = cross[10] = '\0';
    cr_assert_str_eq(self, "-B-B-B-B--");
    cr_assert_str_eq(cross, "-BB-BB-B--");
    strategy_destroy(&s);
}

Test(pab, broadcast_outputs_are_bit_equal_to_the_stored_ones) {
    /* A wide window so most calls broadcast; drive() compares every supplied buffer with the output the engine last
     * wrote for the same branch, layer and module, and that only computed modules get a buffer to fill. */
    float ts[20];
    Strategy s;
    Drive d;
    drive_euler(&s, "pab:self_range=3,self_lo=0,self_hi=1000,cross_range=2,cross_lo=0,cross_hi=1000", 20, ts, &d);
    /* counts 1..19 (step 0 computes): self broadcasts where count % 3 != 0 (13 steps), cross where odd (10). */
    cr_assert_eq(d.supplied_checked, 2 * LAYERS * (13 + 10), "supplied %d", d.supplied_checked);
    strategy_destroy(&s);
}

Test(pab, cond_and_uncond_keep_separate_counters_and_caches) {
    /* One counter per module shared by both branches (diffusers' hook under sequential CFG) advances twice per step:
     * with R = 2 the cond call would always compute and the uncond call always broadcast. Per branch, both branches
     * broadcast on the same (odd) steps. And an uncond broadcast must return the uncond call's own output: the cond
     * and uncond outputs the simulated engine writes differ, and drive() compares against the same branch's. */
    float ts[12];
    Strategy s;
    Drive d;
    drive_euler(&s, "pab:self_range=2,self_lo=0,self_hi=1000,cross_range=2,cross_lo=0,cross_hi=1000", 12, ts, &d);
    const size_t per_call = 2 * LAYERS;
    for (int t = 0; t < 12; t++) {
        const char *cond = d.flags + (size_t)t * 2 * per_call, *uncond = cond + per_call;
        cr_assert(memcmp(cond, uncond, per_call) == 0, "step %d: cond %.6s, uncond %.6s", t, cond, uncond);
        cr_assert_eq(cond[0], t % 2 ? '1' : '0', "step %d: self-attention of the cond call", t);
    }
    /* The supplied pointers of the two branches are different buffers. */
    StepInfo st = {.step = 12, .num_steps = 13, .branch = BRANCH_COND, .timestep = 500.0f};
    ModulePlan pc = {{MODULE_COMPUTE, MODULE_COMPUTE, MODULE_COMPUTE}, {NULL, NULL, NULL}}, pu = pc;
    s.module_plan(&s, &st, 0, &pc);
    st.branch = BRANCH_UNCOND;
    s.module_plan(&s, &st, 0, &pu);
    cr_assert(pc.out[MODULE_SELF_ATTN] && pc.out[MODULE_SELF_ATTN] != pu.out[MODULE_SELF_ATTN]);
    strategy_destroy(&s);
}

Test(pab, clone_continues_identically_and_holds_as_many_bytes) {
    float ts[16];
    schedule("euler", 16, 3.0f, ts);
    const char *spec = "pab:self_range=2,self_lo=0,self_hi=1000,cross_range=3,cross_lo=0,cross_hi=1000";
    Strategy a, b;
    create(&a, spec, 16);
    cr_assert_eq(strategy_bytes_held(&a), 0, "nothing is held before the first computation");
    Drive first = {.videos = 1, .branches = 2, .until = 7, .timesteps = ts};
    drive(&a, 16, &first); /* 7 of 16 steps: counters at 7, caches filled */
    cr_assert_eq(strategy_bytes_held(&a), (size_t)2 * 2 * LAYERS * TOK * sizeof(float),
                 "one output per hooked module and branch: %zu bytes", strategy_bytes_held(&a));
    Error err = {{0}};
    cr_assert_eq(strategy_clone(&b, &a, &err), 0, "%s", err.msg);
    cr_assert_eq(strategy_bytes_held(&b), strategy_bytes_held(&a));
    cr_assert_str_eq(b.spec, a.spec);
    /* Both continue at step 7 with the same calls: same plans, and each supplies its own (equal) copy. */
    for (int t = 7; t < 16; t++) {
        for (int br = 0; br < 2; br++) {
            StepInfo st = {.step = t, .num_steps = 16, .branch = (Branch)br, .guidance_on = 1, .timestep = ts[t]};
            for (int layer = 0; layer < LAYERS; layer++) {
                ModulePlan pa = {{MODULE_COMPUTE, MODULE_COMPUTE, MODULE_COMPUTE}, {NULL, NULL, NULL}}, pb = pa;
                a.module_plan(&a, &st, layer, &pa);
                b.module_plan(&b, &st, layer, &pb);
                for (int m = 0; m < MODULE_COUNT; m++) {
                    cr_assert_eq(pa.mode[m], pb.mode[m], "step %d branch %d layer %d module %d", t, br, layer, m);
                    cr_assert_eq(!pa.out[m], !pb.out[m]);
                    if (!pa.out[m]) continue;
                    cr_assert_neq(pa.out[m], pb.out[m], "the clone must own its buffers");
                    if (pa.mode[m] == MODULE_SUPPLY) {
                        cr_assert(memcmp(pa.out[m], pb.out[m], TOK * sizeof(float)) == 0);
                    } else {
                        fixture_random(pa.out[m], TOK, output_seed(0, t, br, layer, m));
                        memcpy(pb.out[m], pa.out[m], TOK * sizeof(float));
                    }
                }
            }
        }
    }
    strategy_destroy(&a);
    /* The clone survives its source. */
    cr_assert_eq(strategy_bytes_held(&b), (size_t)2 * 2 * LAYERS * TOK * sizeof(float));
    strategy_destroy(&b);
}

Test(pab, bad_parameters_are_refused) {
    const char *bad[] = {"pab:thresh=0.1",  "pab:self_range=-1", "pab:self_lo=900,self_hi=100",
                         "pab:cross_hi=1001", "pab:warmup=-2",    "pab:mlp_range=2"};
    StrategyEnv env = small_env(10);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        Strategy s;
        Error err = {{0}};
        cr_assert_neq(strategy_create(&s, bad[i], &env, &err), 0, "%s must be refused", bad[i]);
        cr_assert(err.msg[0], "%s: no message", bad[i]);
    }
    Strategy s;
    create(&s, "pab", 10);
    cr_assert_str_eq(s.spec, "pab:self_range=2,self_lo=100,self_hi=850,cross_range=6,cross_lo=100,cross_hi=850,"
                             "warmup=0");
    strategy_destroy(&s);
}

/* ---- through the runner on a small random model ---------------------------------------------------------------- */

static const int RF = 2, RH = 4, RW = 6, RSTEPS = 12;

/* One RSTEPS-step CFG run of spec on engine over a grid of F x H x W; returns the final latent (malloc'd). */
static float *run_grid(const DitModel *model, Engine *engine, const char *spec, int F, int H, int W, RunRecord *rec) {
    const DitConfig *cfg = &model->cfg;
    size_t tn = (size_t)cfg->text_len * cfg->text_dim, n = (size_t)cfg->in_dim * F * H * W;
    float *text = calloc(tn, sizeof(float)), *neg = calloc(tn, sizeof(float)), *x = malloc(n * sizeof(float));
    fixture_random(text, tn, 5);
    fixture_random(neg, tn, 6);
    Error err = {{0}};
    cr_assert_eq(engine->prepare(engine, F, H, W, &err), 0, "%s", err.msg);
    StrategyEnv env = fixture_strategy_env(engine, RSTEPS, n);
    Strategy s;
    cr_assert_eq(strategy_create(&s, spec, &env, &err), 0, "%s: %s", spec, err.msg);
    RunSettings rs = {.steps = RSTEPS, .shift = 3.0f, .guidance = 4.0f, .seed = 9, .F = F, .H = H, .W = W,
                      .text = {text, neg}};
    memset(rec, 0, sizeof *rec);
    cr_assert_eq(runner_sample(engine, &s, &rs, rec, x, &err), 0, "%s", err.msg);
    strategy_destroy(&s);
    free(text);
    free(neg);
    return x;
}

static float *run_model(const DitModel *model, Engine *engine, const char *spec, RunRecord *rec) {
    return run_grid(model, engine, spec, RF, RH, RW, rec);
}

Test(pab, runner_flops_subtract_exactly_the_supplied_modules) {
    DitModel model;
    Engine *engine;
    Error err = {{0}};
    cr_assert_eq(dit_init_random(&model, fixture_small_config(), 3, &err), 0, "%s", err.msg);
    cr_assert_eq(engine_create_cpu(&engine, &model, &err), 0, "%s", err.msg);
    const DitConfig *cfg = &model.cfg;
    RunRecord rec;
    /* Windows chosen so that the two kinds broadcast on different steps. */
    free(run_model(&model, engine, "pab:self_range=2,self_lo=0,self_hi=1000,cross_range=3,cross_lo=200,cross_hi=900",
                   &rec));
    const int L = engine->L, layers = cfg->num_layers;
    const double self = dit_flops_module(cfg, L, MODULE_SELF_ATTN), cross = dit_flops_module(cfg, L, MODULE_CROSS_ATTN);
    const double call = dit_flops_forward(cfg, L);
    int saw_self = 0, saw_cross = 0, saw_both = 0;
    for (int t = 0; t < RSTEPS; t++) {
        const StepRecord *r = &rec.step[t];
        const int tt = (int)r->timestep;
        const int bs = t % 2 != 0, bc = t % 3 != 0 && 200 < tt && tt < 900;
        saw_self += bs && !bc, saw_cross += bc && !bs, saw_both += bs && bc;
        const double want = 2 * (call - layers * (bs * self + bc * cross));
        cr_assert(fabs(r->flops - want) <= 1e-12 * call, "step %d (t %g): flops %.17g, want %.17g", t, r->timestep,
                  r->flops, want);
        for (int b = 0; b < 2; b++) {
            cr_assert_eq(r->computed[b], 1);
            cr_assert_eq(r->layers_run[b], layers);
            cr_assert_eq(r->signal[b], (float)(layers * (bs + bc)), "step %d branch %d: signal %g", t, b, r->signal[b]);
        }
        cr_assert_eq(r->strategy_bytes, (double)(2 * 2 * layers) * L * cfg->dim * sizeof(float));
    }
    cr_assert(saw_self && saw_cross && saw_both, "the schedule must exercise each kind alone and both");
    cr_assert_eq(rec.strategy_bytes_peak, (double)(2 * 2 * layers) * L * cfg->dim * sizeof(float));
    record_free(&rec);
    engine->destroy(engine);
    dit_free(&model);
}

Test(pab, ranges_of_one_reproduce_none_bit_for_bit) {
    /* Range 1 never broadcasts (count % 1 == 0) but hooks nothing either; range 2 with an empty window copies every
     * output into the caches and supplies none: both must leave the numerics untouched. */
    DitModel model;
    Engine *engine;
    Error err = {{0}};
    cr_assert_eq(dit_init_random(&model, fixture_small_config(), 4, &err), 0, "%s", err.msg);
    cr_assert_eq(engine_create_cpu(&engine, &model, &err), 0, "%s", err.msg);
    const size_t n = (size_t)model.cfg.in_dim * RF * RH * RW;
    RunRecord base, rec;
    float *ref = run_model(&model, engine, "none", &base);
    const char *specs[] = {"pab:self_range=1,cross_range=1", "pab:self_lo=500,self_hi=500,cross_lo=500,cross_hi=500"};
    for (size_t i = 0; i < 2; i++) {
        float *x = run_model(&model, engine, specs[i], &rec);
        cr_assert_eq(memcmp(x, ref, n * sizeof(float)), 0, "%s must equal none bit for bit", specs[i]);
        cr_assert_eq(rec.flops_spent, base.flops_spent);
        free(x);
        record_free(&rec);
    }
    free(ref);
    record_free(&base);
    engine->destroy(engine);
    dit_free(&model);
}

/* ---- the CUDA engine ---------------------------------------------------------------------------------------- */

Test(pab, cuda_engine_matches_cpu, .timeout = 300) {
    fixture_require_cuda_device();
#ifdef CACHEBENCH_CUDA
    Error err = {{0}};
    /* The strategy works through VecOps and module plans only, so on both engines (CUDA in fp32) the same modules are
     * supplied (trace signal), with the same FLOPs and bytes, and the final latents agree within 1e-3 of their scale. */
    DitModel m;
    cr_assert_eq(dit_init_random(&m, dit_config_by_name("tiny"), 3, &err), 0, "%s", err.msg);
    Engine *cpu, *gpu;
    const CudaOptions fp32 = {CUDA_PRECISION_FP32, CUDA_ATTENTION_SIMPLE};
    cr_assert_eq(engine_create_cpu(&cpu, &m, &err), 0, "%s", err.msg);
    cr_assert_eq(engine_create_cuda(&gpu, &m, &fp32, &err), 0, "%s", err.msg);
    const char *spec = "pab:self_range=2,self_lo=0,self_hi=1000,cross_range=3,cross_lo=200,cross_hi=900";
    const DitConfig *cfg = &m.cfg;
    const size_t n = (size_t)cfg->in_dim * cfg->frames * cfg->height * cfg->width;
    RunRecord a, b;
    float *xa = run_grid(&m, cpu, spec, cfg->frames, cfg->height, cfg->width, &a);
    float *xb = run_grid(&m, gpu, spec, cfg->frames, cfg->height, cfg->width, &b);
    cr_assert(!a.failed && !b.failed, "cpu %s / cuda %s", a.failure, b.failure);
    for (int i = 0; i < RSTEPS; i++) {
        for (int br = 0; br < 2; br++) cr_assert_eq(b.step[i].signal[br], a.step[i].signal[br], "step %d", i);
        cr_assert_eq(b.step[i].flops, a.step[i].flops, "step %d", i);
        cr_assert_eq(b.step[i].strategy_bytes, a.step[i].strategy_bytes, "step %d", i);
    }
    double diff = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++) diff = fmax(diff, fabs((double)xb[i] - xa[i])), scale = fmax(scale, fabs((double)xa[i]));
    cr_assert_leq(diff, 1e-3 * scale, "final latents differ by %.3g of their scale", diff / scale);
    free(xa), free(xb);
    record_free(&a), record_free(&b);
    cr_assert_null(engine_cuda_error(gpu), "%s", engine_cuda_error(gpu));
    cpu->destroy(cpu);
    gpu->destroy(gpu);
    dit_free(&m);
#endif
}

/* ---- tiny-model replay against tests/pab_official.py (tests/strategy_replay.py) ------------------------------- */

#define WEIGHTS "models/tiny/tiny.safetensors"
#define REPLAY_STEPS 12

/* The C run's module plans, recorded by wrapping the strategy's module_plan: flags[step][branch][layer][kind]. */
typedef struct {
    void (*inner)(Strategy *, const StepInfo *, int, ModulePlan *);
    float flags[REPLAY_STEPS][2][8][2];
} PlanLog;
static PlanLog plan_log;

static void logged_module_plan(Strategy *s, const StepInfo *st, int layer, ModulePlan *plan) {
    plan_log.inner(s, st, layer, plan);
    plan_log.flags[st->step][st->branch][layer][0] = plan->mode[MODULE_SELF_ATTN] == MODULE_SUPPLY;
    plan_log.flags[st->step][st->branch][layer][1] = plan->mode[MODULE_CROSS_ATTN] == MODULE_SUPPLY;
}

static float *tensor_floats(const StFile *f, const char *name, size_t want) {
    Error err = {{0}};
    const StTensor *t = st_find(f, name);
    cr_assert_not_null(t, "no tensor %s", name);
    cr_assert_eq(st_numel(t->ndim, t->shape), want, "%s: %zu values, expected %zu", name, st_numel(t->ndim, t->shape),
                 want);
    float *v = malloc(want * sizeof(float));
    cr_assert_eq(st_to_f32(t, v, &err), 0, "%s", err.msg);
    return v;
}

typedef struct {
    const char *spec;
    int warmup;
    const char *self, *cross; /* pab_official.py's "range,lo,hi" */
} ReplayCase;

/* Returns the largest max|C - Python| / max|Python| over the steps' latents; the flags must agree exactly. */
static double replay_compare(const char *case_path, const char *py_out, const ReplayCase *rc) {
    const DitConfig *preset = dit_config_by_name("tiny");
    Error err = {{0}};
    DitModel model;
    Engine *engine;
    cr_assert_eq(dit_load(&model, preset, WEIGHTS, &err), 0, "%s", err.msg);
    const DitConfig *cfg = &model.cfg;
    cr_assert_leq(cfg->num_layers, 8);
    cr_assert_eq(engine_create_cpu(&engine, &model, &err), 0, "%s", err.msg);
    const int F = cfg->frames, H = cfg->height, W = cfg->width;
    cr_assert_eq(engine->prepare(engine, F, H, W, &err), 0, "%s", err.msg);
    StFile cf;
    cr_assert_eq(st_open(&cf, case_path, &err), 0, "%s", err.msg);
    const size_t text_n = (size_t)cfg->text_len * cfg->text_dim, n = (size_t)cfg->in_dim * F * H * W;
    float *text_c = tensor_floats(&cf, "text.cond", text_n), *text_u = tensor_floats(&cf, "text.uncond", text_n);
    st_close(&cf);
    StrategyEnv env = fixture_strategy_env(engine, REPLAY_STEPS, n);
    Strategy s;
    cr_assert_eq(strategy_create(&s, rc->spec, &env, &err), 0, "%s", err.msg);
    memset(&plan_log, 0, sizeof plan_log);
    plan_log.inner = s.module_plan;
    s.module_plan = logged_module_plan;
    RunSettings rs = {.steps = REPLAY_STEPS, .shift = preset->default_shift, .guidance = preset->default_guidance,
                      .seed = 7, .F = F, .H = H, .W = W, .record_latents = 1, .text = {text_c, text_u}};
    RunRecord rec = {0};
    cr_assert_eq(runner_sample(engine, &s, &rs, &rec, NULL, &err), 0, "%s", err.msg);
    strategy_destroy(&s);

    StFile pf;
    cr_assert_eq(st_open(&pf, py_out, &err), 0, "%s", err.msg);
    const size_t nflags = (size_t)REPLAY_STEPS * 2 * cfg->num_layers * 2;
    float *flags = tensor_floats(&pf, "flags", nflags), *latents = tensor_floats(&pf, "latents", REPLAY_STEPS * n);
    st_close(&pf);
    int broadcasts = 0;
    for (int i = 0; i < REPLAY_STEPS; i++)
        for (int b = 0; b < 2; b++)
            for (int l = 0; l < cfg->num_layers; l++)
                for (int k = 0; k < 2; k++) {
                    const float want = flags[((i * 2 + b) * cfg->num_layers + l) * 2 + k];
                    cr_assert_eq(plan_log.flags[i][b][l][k], want, "%s: step %d branch %d layer %d %s: C %g, official %g",
                                 rc->spec, i, b, l, k ? "cross" : "self", plan_log.flags[i][b][l][k], want);
                    broadcasts += want != 0.0f;
                }
    cr_assert_gt(broadcasts, 0, "%s broadcasts nothing on this schedule", rc->spec);
    double worst = 0.0;
    for (int i = 0; i < REPLAY_STEPS; i++) {
        double diff = 0.0, scale = 0.0;
        for (size_t j = 0; j < n; j++) {
            diff = fmax(diff, fabs((double)rec.latents[(size_t)i * n + j] - latents[(size_t)i * n + j]));
            scale = fmax(scale, fabs((double)latents[(size_t)i * n + j]));
        }
        worst = fmax(worst, diff / scale);
    }
    free(flags), free(latents), free(text_c), free(text_u);
    record_free(&rec);
    engine->destroy(engine);
    dit_free(&model);
    return worst;
}

/* Latte's config mapped to Wan's kinds (self R 2, cross R 6 in (100, 800)) and a denser one with a warm-up, both
 * on the tiny model's Euler schedule (12 steps, shift 3). The flags depend only on the schedule, never on the data,
 * and both sides see the same float32 timesteps: they must agree exactly, float32 against float64 cannot flip them.
 * The latents, float32 C against float64 torch over 12 CFG steps: within 1e-4 of their scale (measured: 9.5e-6 and
 * 1.7e-5; at 30 steps 4.9e-5 and 2.5e-5). */
Test(pab, tiny_model_matches_the_official_transcription, .timeout = 240) {
    const ReplayCase cases[] = {
        {"pab:self_range=2,self_lo=100,self_hi=800,cross_range=6,cross_lo=100,cross_hi=800", 0, "2,100,800",
         "6,100,800"},
        {"pab:self_range=3,self_lo=50,self_hi=990,cross_range=2,cross_lo=100,cross_hi=900,warmup=4", 4, "3,50,990",
         "2,100,900"},
    };
    const int count = sizeof cases / sizeof cases[0];
    const char *py = fixture_python();
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import numpy, torch' >/dev/null 2>&1", py);
    if (system(cmd) != 0) cr_skip_test("%s cannot import numpy and torch (Debian: python3-numpy, python3-torch)", py);
    const DitConfig *preset = dit_config_by_name("tiny");
    char *dir = fixture_tmpdir(), case_path[4300], py_out[2][4300];
    snprintf(case_path, sizeof case_path, "%s/case.safetensors", dir);
    cr_assert_eq(fixture_replay_case(case_path, preset, WEIGHTS, "red circle moving right", "", 7, REPLAY_STEPS,
                                     preset->default_shift, preset->default_guidance),
                 0);
    int at = snprintf(cmd, sizeof cmd, "'%s' tests/pab_official.py replay '%s'", py, case_path);
    for (int c = 0; c < count; c++) {
        snprintf(py_out[c], sizeof py_out[c], "%s/py%d.safetensors", dir, c);
        at += snprintf(cmd + at, sizeof cmd - (size_t)at, " '%s' %d %s %s", py_out[c], cases[c].warmup, cases[c].self,
                       cases[c].cross);
    }
    snprintf(cmd + at, sizeof cmd - (size_t)at, " 2>&1");
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    for (int c = 0; c < count; c++) {
        double worst = replay_compare(case_path, py_out[c], &cases[c]);
        cr_assert_leq(worst, 1e-4, "%s: latents differ by %.3g of their scale", cases[c].spec, worst);
        cr_log_info("%s: latents within %.3g of their scale", cases[c].spec, worst);
    }
    fixture_rmdir(dir);
    free(dir);
}
