/* Shared computation (fork trees, harness/runner.h runner_sample_shared and the sweep's groups): every record of a
 * tree is bit-identical to the same setting run alone (decisions, signals, latents after every step, video, FLOPs,
 * calls, SVG trace, metrics) for every built-in strategy and for probe strategies that use the interface-v2 hooks
 * generically (module outputs copied out, supplied modules, layer_end jumps and token rewrites); the sweep gives the
 * same files with and without --no-share, also in trees of at most 3 (--share-max), as a worker and when killed with
 * SIGKILL in the middle of a tree and resumed; every solver's history copy continues its trajectory bit for bit.
 * Only the timing fields and the sharing counts may differ. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness/experiment.h"
#include "harness/runner.h"
#include "strategies/strategy.h"
#include "tests/fixtures.h"

/* ---------------------------------------------------------------------------------------------------------------
 * Comparing records: everything but time, load, memory and the sharing counts. */

#define SAME(a, b, what)                                                                                              \
    cr_expect(memcmp(&(a), &(b), sizeof(a)) == 0, "%s: %s differs", label, what)

static void expect_same_arrays(const char *label, const void *a, const void *b, size_t bytes, const char *what) {
    cr_expect((a == NULL) == (b == NULL), "%s: %s present in one record only", label, what);
    if (a && b) cr_expect(memcmp(a, b, bytes) == 0, "%s: %s differs", label, what);
}

static void expect_same_record(const RunRecord *a, const RunRecord *b, const char *label) {
    cr_assert_eq(a->steps, b->steps, "%s: steps", label);
    SAME(a->failed, b->failed, "failed");
    SAME(a->failed_step, b->failed_step, "failed_step");
    SAME(a->calls_total, b->calls_total, "calls_total");
    SAME(a->calls_computed, b->calls_computed, "calls_computed");
    SAME(a->calls_skipped, b->calls_skipped, "calls_skipped");
    SAME(a->flops_spent, b->flops_spent, "flops_spent");
    SAME(a->flops_full, b->flops_full, "flops_full");
    SAME(a->strategy_bytes_peak, b->strategy_bytes_peak, "strategy_bytes_peak");
    cr_expect_str_eq(a->strategy_spec, b->strategy_spec, "%s: spec", label);
    for (int i = 0; i < a->steps; i++) {
        const StepRecord *x = &a->step[i], *y = &b->step[i];
        char what[64];
#define STEP_FIELD(f)                                                                                                 \
    snprintf(what, sizeof what, "step %d " #f, i);                                                                    \
    SAME(x->f, y->f, what);
        STEP_FIELD(timestep)
        STEP_FIELD(sigma)
        STEP_FIELD(flops)
        STEP_FIELD(computed)
        STEP_FIELD(signal)
        STEP_FIELD(accumulator)
        STEP_FIELD(threshold)
        STEP_FIELD(k)
        STEP_FIELD(layers_run)
        STEP_FIELD(strategy_bytes)
#undef STEP_FIELD
    }
    cr_assert_eq(a->frames * a->height * a->width, b->frames * b->height * b->width, "%s: video size", label);
    expect_same_arrays(label, a->video, b->video, (size_t)a->frames * a->height * a->width * 3, "video");
    expect_same_arrays(label, a->latents, b->latents, (size_t)a->steps * a->lc * a->lf * a->lh * a->lw * sizeof(float),
                       "latents");
    cr_expect_eq(a->svg_layers, b->svg_layers, "%s: SVG trace", label);
    if (a->svg_layers && a->svg_layers == b->svg_layers) {
        const size_t at = (size_t)a->steps * 2 * a->svg_layers;
        expect_same_arrays(label, a->svg_spatial_heads, b->svg_spatial_heads, at * sizeof(int32_t), "svg_spatial_heads");
        expect_same_arrays(label, a->svg_temporal_heads, b->svg_temporal_heads, at * sizeof(int32_t),
                           "svg_temporal_heads");
        expect_same_arrays(label, a->svg_density, b->svg_density, at * a->svg_heads * sizeof(float), "svg_density");
        expect_same_arrays(label, a->attn_flops, b->attn_flops, (size_t)a->steps * sizeof(double), "attn_flops");
        expect_same_arrays(label, a->attn_flops_dense, b->attn_flops_dense, (size_t)a->steps * sizeof(double),
                           "attn_flops_dense");
    }
    cr_expect_eq(a->metrics.frames, b->metrics.frames, "%s: metrics", label);
    if (a->metrics.frames && a->metrics.frames == b->metrics.frames) {
        const size_t n = (size_t)a->metrics.frames * sizeof(double);
        expect_same_arrays(label, a->metrics.psnr, b->metrics.psnr, n, "psnr");
        expect_same_arrays(label, a->metrics.ssim, b->metrics.ssim, n, "ssim");
        expect_same_arrays(label, a->metrics.lpips, b->metrics.lpips, n, "lpips");
    }
}

/* ---------------------------------------------------------------------------------------------------------------
 * Probes: strategies written only for this test, each using the v2 hooks in a way that must part it from a shared
 * call at chosen steps (and keep it there at the others). Registered at run time. */

typedef struct {
    int kind;               /* 0 observer, 1 jumper (stops the stack, supplies self-attention), 2 rewriter */
    int from;               /* first step at which it departs */
    float *out[MODULE_COUNT]; /* [n_tokens] module outputs copied out by the engine */
    float *bump;            /* [n_tokens] what the rewriter adds */
    size_t n_tokens;
    int num_layers;
    double seen;            /* what the observer read from the outputs copied to it */
} Probe;

static void probe_destroy(Strategy *s) {
    Probe *p = s->state;
    if (!p) return;
    for (int m = 0; m < MODULE_COUNT; m++) s->ops->release(s->ops->ctx, p->out[m]);
    s->ops->release(s->ops->ctx, p->bump);
    free(p);
    s->state = NULL;
}

static int probe_clone(Strategy *dst, const Strategy *src, Error *err) {
    const Probe *p = src->state;
    Probe *q = malloc(sizeof *q);
    if (!q) return error_set(err, "probe: out of memory");
    *q = *p;
    dst->state = q;
    int failed = 0;
    for (int m = 0; m < MODULE_COUNT; m++) q->out[m] = strategy_copy_buffer(src->ops, p->out[m], p->n_tokens, &failed);
    q->bump = strategy_copy_buffer(src->ops, p->bump, p->n_tokens, &failed);
    if (failed) {
        probe_destroy(dst);
        return error_set(err, "probe: out of memory");
    }
    return 0;
}

static void probe_module_plan(Strategy *s, const StepInfo *st, int layer, ModulePlan *plan) {
    Probe *p = s->state;
    for (int m = 0; m < MODULE_COUNT; m++) plan->out[m] = p->out[m];
    /* The jumper supplies layer 0's self-attention from its copy (of the previous call) at every third step. */
    if (p->kind == 1 && layer == 0 && st->step >= p->from && st->step % 3 == 0) plan->mode[MODULE_SELF_ATTN] = MODULE_SUPPLY;
}

static int probe_layer_end(Strategy *s, const StepInfo *st, int layer, float *tokens, size_t n, BranchTrace *trace) {
    Probe *p = s->state;
    const VecOps *o = s->ops;
    p->seen += o->mean_abs(o->ctx, p->out[MODULE_FFN], n) + o->mean_abs(o->ctx, p->out[MODULE_SELF_ATTN], n);
    trace->signal = (float)p->seen;
    if (p->kind == 1 && layer == 1 && st->step >= p->from && st->step % 2 == 1) {
        trace->computed = 0;
        const int next = layer + 2 + (st->step % 4 == 1); /* a jump over one layer, or a stop */
        return next < p->num_layers ? next : p->num_layers;
    }
    if (p->kind == 2 && layer == 0 && st->step >= p->from) {
        if (st->step % 2) o->add(o->ctx, tokens, tokens, p->bump, n); /* rewritten */
        else o->copy(o->ctx, tokens, tokens, n);                        /* touched, unchanged */
    }
    return layer + 1;
}

static const char *const probe_params[] = {"kind", "from", NULL};

static int probe_create(Strategy *s, const StrategyParams *pr, const StrategyEnv *env, Error *err) {
    Probe *p = calloc(1, sizeof *p);
    if (!p) return error_set(err, "probe: out of memory");
    s->state = p;
    s->destroy = probe_destroy;
    if (strategy_param_int(pr, "kind", 0, 0, 2, &p->kind, err) || strategy_param_int(pr, "from", 3, 0, 1000, &p->from, err))
        return -1;
    p->n_tokens = env->tokens_numel;
    p->num_layers = env->num_layers;
    for (int m = 0; m < MODULE_COUNT; m++)
        if (!(p->out[m] = s->ops->alloc(s->ops->ctx, p->n_tokens))) return error_set(err, "probe: out of memory");
    if (!(p->bump = s->ops->alloc(s->ops->ctx, p->n_tokens))) return error_set(err, "probe: out of memory");
    for (size_t i = 0; i < p->n_tokens; i++) p->bump[i] = 1e-3f * (float)(i % 7); /* CPU backend: host memory */
    s->module_plan = probe_module_plan;
    s->layer_end = probe_layer_end;
    s->clone = probe_clone;
    snprintf(s->spec, sizeof s->spec, "probe:kind=%d,from=%d", p->kind, p->from);
    return 0;
}

static const StrategyInfo probe_info = {.name = "probe", .summary = "test probe", .params_help = "",
                                        .param_names = probe_params, .create = probe_create};

/* ---------------------------------------------------------------------------------------------------------------
 * The runner: a tree against each setting alone. */

static const char *const TREE[] = {
    "none",
    "static:interval=2,warmup=2",
    "static:interval=3,warmup=2",
    "teacache:thresh=0.1",
    "teacache:thresh=0.4",
    "easycache:thresh=0.05,warmup=2",
    "easycache:thresh=0.3,warmup=2",
    "svg:dense_steps=0.3,dense_layers=0.25",
    "easycache+svg:thresh=0.1,warmup=2,dense_steps=0.2,dense_layers=0.25",
    "teacache+svg:thresh=0.2,dense_steps=0.2,dense_layers=0.25",
    "magcache:max_skip=2",
    "taylorseer:interval=3",
    "taylorseer:interval=3,lite=1",
    "fbcache:thresh=0.3",
    "dbcache:fn=1,bn=1,thresh=0.3,warmup=2",
    "dbcache:fn=1,bn=1,thresh=0.3,warmup=2,taylorseer=1",
    "pab:self_hi=1000,cross_hi=1000",
    "dicache:thresh=0.3,warmup=2",
    "probe:kind=0",
    "probe:kind=0,from=4", /* the same observer twice: both receive the module outputs */
    "probe:kind=1,from=3",
    "probe:kind=2,from=4",
};
enum { N_TREE = sizeof TREE / sizeof TREE[0] };

static void open_tiny(ExperimentContext *ctx) {
    char weights[4096];
    Error err = {{0}};
    experiment_default_weights(weights, sizeof weights);
    cr_assert_eq(experiment_open(ctx, "tiny", weights, "cpu", &err), 0, "%s", err.msg);
}

static ExperimentSpec small_spec(void) {
    return (ExperimentSpec){.prompt_id = "p0", .prompt = "a red circle moving left on a black background",
                            .seed = 7, .steps = 10, .F = 4, .H = 32, .W = 32, .record_latents = 1};
}

Test(share, tree_equals_every_setting_alone, .timeout = 120) {
    Error err = {{0}};
    if (!strategy_find("probe")) cr_assert_eq(strategy_register(&probe_info, &err), 0, "%s", err.msg);
    ExperimentContext ctx;
    open_tiny(&ctx);
    ExperimentSpec spec = small_spec();
    StrategyEnv env;
    cr_assert_eq(experiment_strategy_env(&ctx, &spec, &env, &err), 0, "%s", err.msg);
    Strategy tree[N_TREE];
    RunRecord shared[N_TREE];
    for (int j = 0; j < N_TREE; j++) cr_assert_eq(strategy_create(&tree[j], TREE[j], &env, &err), 0, "%s: %s", TREE[j], err.msg);
    RunnerShareStats stats = {0};
    cr_assert_eq(experiment_run_shared(&ctx, &spec, tree, N_TREE, shared, &stats, &err), 0, "%s", err.msg);
    for (int j = 0; j < N_TREE; j++) strategy_destroy(&tree[j]);
    int shared_calls = 0;
    for (int j = 0; j < N_TREE; j++) {
        RunRecord alone;
        spec.strategy_spec = TREE[j];
        cr_assert_eq(experiment_run(&ctx, &spec, &alone, &err), 0, "%s: %s", TREE[j], err.msg);
        expect_same_record(&shared[j], &alone, TREE[j]);
        cr_expect_eq(alone.calls_shared, 0, "%s alone", TREE[j]);
        int flagged = 0;
        for (int i = 0; i < shared[j].steps; i++) flagged += shared[j].step[i].shared[0] + shared[j].step[i].shared[1];
        cr_expect_eq(flagged, shared[j].calls_shared, "%s: shared flags and count disagree", TREE[j]);
        cr_expect(shared[j].calls_shared > 0, "%s shared no call (every setting computes step 0)", TREE[j]);
        shared_calls += shared[j].calls_shared;
        record_free(&alone);
        record_free(&shared[j]);
    }
    /* The tree did less: fewer engine calls and FLOPs than the members as if alone; every departure kind happened. */
    cr_expect(stats.calls_run < stats.calls_alone, "calls made %ld, alone %ld", stats.calls_run, stats.calls_alone);
    cr_expect(stats.flops_run < stats.flops_alone, "FLOPs %g, alone %g", stats.flops_run, stats.flops_alone);
    cr_expect(stats.replays > 0, "no member left a shared call mid-way");
    cr_expect(stats.forks > 0 && stats.forks < N_TREE * 10, "forks %ld", stats.forks);
    cr_log_info("tree of %d: %ld calls for %ld alone, %ld replays, %ld forks, %d member calls shared", N_TREE,
                stats.calls_run, stats.calls_alone, stats.replays, stats.forks, shared_calls);
    experiment_close(&ctx);
}

/* A strategy without clone cannot join a tree; alone it runs as ever. */
static int noclone_create(Strategy *s, const StrategyParams *p, const StrategyEnv *env, Error *err) {
    (void)p, (void)env, (void)err;
    snprintf(s->spec, sizeof s->spec, "noclone");
    return 0;
}
static const char *const no_params[] = {NULL};
static const StrategyInfo noclone_info = {.name = "noclone", .summary = "test", .params_help = "",
                                          .param_names = no_params, .create = noclone_create};

Test(share, strategy_without_clone_is_refused_in_a_tree) {
    Error err = {{0}};
    if (!strategy_find("noclone")) cr_assert_eq(strategy_register(&noclone_info, &err), 0, "%s", err.msg);
    ExperimentContext ctx;
    open_tiny(&ctx);
    ExperimentSpec spec = small_spec();
    spec.steps = 2;
    StrategyEnv env;
    cr_assert_eq(experiment_strategy_env(&ctx, &spec, &env, &err), 0, "%s", err.msg);
    Strategy s[2];
    RunRecord r[2];
    cr_assert_eq(strategy_create(&s[0], "none", &env, &err), 0);
    cr_assert_eq(strategy_create(&s[1], "noclone", &env, &err), 0);
    cr_expect_eq(experiment_run_shared(&ctx, &spec, s, 2, r, NULL, &err), -1);
    cr_expect(strstr(err.msg, "noclone") && strstr(err.msg, "clone"), "%s", err.msg);
    cr_expect_eq(experiment_run_shared(&ctx, &spec, &s[1], 1, r, NULL, &err), 0, "%s", err.msg);
    record_free(&r[0]);
    strategy_destroy(&s[0]);
    strategy_destroy(&s[1]);
    experiment_close(&ctx);
}

/* ---------------------------------------------------------------------------------------------------------------
 * The sweep: the demo grid (datasets/demo_sweep.ini: none and every strategy) on a small geometry. */

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

static int count_h5(const char *out) {
    char runs[1024];
    snprintf(runs, sizeof runs, "%s/runs", out);
    DIR *d = opendir(runs);
    if (!d) return 0;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        n += len > 3 && strcmp(e->d_name + len - 3, ".h5") == 0;
    }
    closedir(d);
    return n;
}

/* Every run file of a equals b's (same names, same contents but time). */
static void expect_same_sweeps(const char *a, const char *b, int want) {
    cr_assert_eq(count_h5(a), want, "%s", a);
    cr_assert_eq(count_h5(b), want, "%s", b);
    char runs[1024];
    snprintf(runs, sizeof runs, "%s/runs", a);
    DIR *d = opendir(runs);
    cr_assert(d);
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len <= 3 || strcmp(e->d_name + len - 3, ".h5")) continue;
        char pa[2048], pb[2048];
        snprintf(pa, sizeof pa, "%s/runs/%s", a, e->d_name);
        snprintf(pb, sizeof pb, "%s/runs/%s", b, e->d_name);
        RunRecord ra, rb;
        Error err = {{0}};
        cr_assert_eq(record_read(pa, &ra, &err), 0, "%s", err.msg);
        cr_assert_eq(record_read(pb, &rb, &err), 0, "%s", err.msg);
        expect_same_record(&ra, &rb, e->d_name);
        record_free(&ra);
        record_free(&rb);
    }
    closedir(d);
}

#define DEMO_RUNS 48 /* (none + 23 settings) x 2 prompts */
/* 12 steps: EasyCache (warm-up 10) measures something, which its plot needs */
#define DEMO_ARGS(prompts, out)                                                                                       \
    "sweep", "--config", "datasets/demo_sweep.ini", "--prompts", prompts, "--steps", "12", "--frames", "4",           \
        "--height", "32", "--width", "32", "--out", out, "--quiet"

static int demo_sweep(const char *prompts, const char *out, const char *flag) {
    static char log[65536];
    const char *args[] = {DEMO_ARGS(prompts, out), flag, NULL};
    int rc = fixture_run_cli(log, sizeof log, args);
    cr_expect_eq(rc, 0, "%s", log);
    return rc;
}

static void sleep_ms(int ms) {
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

Test(share, sweep_equals_no_share_also_as_worker_and_after_kill, .timeout = 180) {
    char *dir = fixture_tmpdir();
    char prompts[512], alone[512], shared[512], worker[512], killed[512];
    snprintf(prompts, sizeof prompts, "%s/prompts.txt", dir);
    write_text(prompts, "pa\ta red circle moving left on a black background\n"
                        "pb\ta blue square moving up on a gray background\n");
    snprintf(alone, sizeof alone, "%s/alone", dir);
    snprintf(shared, sizeof shared, "%s/shared", dir);
    snprintf(worker, sizeof worker, "%s/worker", dir);
    snprintf(killed, sizeof killed, "%s/killed", dir);
    cr_assert_eq(demo_sweep(prompts, alone, "--no-share"), 0);
    cr_assert_eq(demo_sweep(prompts, shared, NULL), 0);
    expect_same_sweeps(shared, alone, DEMO_RUNS);
    char path[1024];
    snprintf(path, sizeof path, "%s/sharing.tsv", shared);
    char *log = fixture_read_file(path);
    cr_assert(log && strstr(log, "\ton\t16\t"), "%s", log ? log : "no sharing.tsv");
    free(log);

    cr_assert_eq(demo_sweep(prompts, worker, "--worker"), 0);
    expect_same_sweeps(worker, alone, DEMO_RUNS);
    /* Trees of at most 3 settings: the later trees of a group start from the noise without the baseline. */
    char capped[512];
    snprintf(capped, sizeof capped, "%s/capped", dir);
    cr_assert_eq(demo_sweep(prompts, capped, "--share-max=3"), 0);
    expect_same_sweeps(capped, alone, DEMO_RUNS);
    snprintf(path, sizeof path, "%s/sharing.tsv", capped);
    log = fixture_read_file(path);
    const char *line = log ? strstr(log, "\ton\t3\t") : NULL;
    double wall = 0;
    long runs = 0, trees = 0;
    cr_assert(line && sscanf(line, "\ton\t3\t%lf\t%ld\t%ld", &wall, &runs, &trees) == 3, "%s", log ? log : "none");
    cr_expect(runs == DEMO_RUNS && trees == 16, "runs %ld, trees %ld (24 settings in trees of 3, 2 groups)", runs, trees);
    free(log);

    /* SIGKILL once the first tree's files are written: the second tree dies in the middle. */
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1), dup2(devnull, 2);
        char *argv[] = {(char *)fixture_cli_path(), DEMO_ARGS(prompts, killed), NULL};
        execv(argv[0], argv);
        _exit(127);
    }
    int n = 0;
    for (int i = 0; i < 60000 && (n = count_h5(killed)) < DEMO_RUNS / 2; i++) sleep_ms(1);
    sleep_ms(50);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFSIGNALED(status), "the sweep finished before the kill");
    n = count_h5(killed);
    cr_assert(n >= DEMO_RUNS / 2 && n < DEMO_RUNS, "%d run files after the kill", n);
    cr_assert_eq(demo_sweep(prompts, killed, NULL), 0);
    expect_same_sweeps(killed, alone, DEMO_RUNS);
    fixture_rmdir(dir);
    free(dir);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Solver history: a copy continues the trajectory exactly, for every solver; a tree under each solver. */

Test(share, solver_copy_continues_the_trajectory) {
    const size_t n = 257;
    const int steps = 6;
    const VecOps *ops = cpu_vec_ops();
    for (int k = 0; k < solver_count(); k++) {
        const SolverKind *kind = solver_at(k);
        cr_assert(kind->copy, "solver %s has no copy", kind->name);
        float sigmas[7], timesteps[6], xa[257], xb[257], v[257];
        kind->schedule(steps, 3.0f, sigmas, timesteps);
        Error err = {{0}};
        Solver *a = kind->create(ops, n, sigmas, steps, &err), *b = kind->create(ops, n, sigmas, steps, &err);
        cr_assert(a && b, "%s: %s", kind->name, err.msg);
        fixture_random(xa, n, 11);
        for (int i = 0; i < steps; i++) {
            fixture_random(v, n, 100 + (uint64_t)i);
            if (i == 3) { /* fork here: b takes a's history and x */
                kind->copy(b, a);
                memcpy(xb, xa, sizeof xa);
            }
            kind->step(a, i, xa, v);
            if (i >= 3) kind->step(b, i, xb, v);
        }
        cr_expect(memcmp(xa, xb, sizeof xa) == 0, "%s: the copy's trajectory differs", kind->name);
        kind->destroy(a);
        kind->destroy(b);
    }
}

Test(share, tree_equals_alone_under_every_solver, .timeout = 60) {
    static const char *const specs[] = {"none", "static:interval=2,warmup=2", "easycache:thresh=0.2,warmup=2",
                                        "teacache:thresh=0.3"};
    enum { N = sizeof specs / sizeof specs[0] };
    Error err = {{0}};
    ExperimentContext ctx;
    open_tiny(&ctx);
    for (int k = 0; k < solver_count(); k++) {
        ExperimentSpec spec = small_spec();
        spec.steps = 6;
        spec.solver = solver_at(k);
        StrategyEnv env;
        cr_assert_eq(experiment_strategy_env(&ctx, &spec, &env, &err), 0, "%s", err.msg);
        Strategy tree[N];
        RunRecord shared[N];
        for (int j = 0; j < N; j++) cr_assert_eq(strategy_create(&tree[j], specs[j], &env, &err), 0, "%s", err.msg);
        RunnerShareStats stats = {0};
        cr_assert_eq(experiment_run_shared(&ctx, &spec, tree, N, shared, &stats, &err), 0, "%s", err.msg);
        cr_expect(stats.forks > 0, "%s: no fork", spec.solver->name);
        for (int j = 0; j < N; j++) {
            strategy_destroy(&tree[j]);
            RunRecord alone;
            spec.strategy_spec = specs[j];
            cr_assert_eq(experiment_run(&ctx, &spec, &alone, &err), 0, "%s", err.msg);
            char label[128];
            snprintf(label, sizeof label, "%s under %s", specs[j], spec.solver->name);
            expect_same_record(&shared[j], &alone, label);
            record_free(&alone);
            record_free(&shared[j]);
        }
    }
    experiment_close(&ctx);
}
