/* Wan's solvers (harness/solvers/unipc.c, dpmpp.c) against tests/solver_reference.py, a numpy transcription of
 * Wan2.1's FlowUniPCMultistepScheduler and FlowDPMSolverMultistepScheduler as wan/text2video.py drives them: the
 * sigma/timestep grids exactly, whole trajectories on a smooth nonlinear velocity field (float32 solver against a
 * float64 reference), a closed-form flow, and `cachebench run/sweep --solver` end to end on the tiny model. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness/solvers/solver.h"
#include "models/backend.h"
#include "results/record.h"
#include "tests/fixtures.h"

static const char *const WAN_SOLVERS[] = {"unipc", "dpm++"};

/* The smooth nonlinear model of tests/solver_reference.py ('wavy'), in double, rounded to float like a model
 * output. */
static void field_wavy(const float *x, double sigma, float *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const double xi = x[i];
        v[i] = (float)(0.8 * tanh(xi) - 0.3 * xi + 0.5 * sin(2.0 * sigma + xi));
    }
}

/* Data all at C: v = (x - C) / sigma. Every data prediction is C, so a multistep solver follows the exact flow
 * x(sigma) = C + sigma (x_0 - C) / sigma_0 and ends on C. */
static const double POINT = 0.25;
static void field_point(const float *x, double sigma, float *v, size_t n) {
    for (size_t i = 0; i < n; i++) v[i] = (float)(((double)x[i] - POINT) / sigma);
}

/* Runs `kind` through the SolverKind API on CPU VecOps from x0; traj receives x after every step ([steps][n]),
 * sigmas the grid (steps + 1). */
static void run_solver(const SolverKind *kind, int steps, float shift, void (*field)(const float *, double, float *,
                       size_t), const float *x0, size_t n, float *traj, float *sigmas) {
    const VecOps *ops = cpu_vec_ops();
    float *timesteps = malloc((size_t)steps * sizeof(float));
    float *x = ops->alloc(ops->ctx, n), *v = ops->alloc(ops->ctx, n);
    cr_assert(timesteps && x && v);
    kind->schedule(steps, shift, sigmas, timesteps);
    Error err = {{0}};
    Solver *s = kind->create(ops, n, sigmas, steps, &err);
    cr_assert_not_null(s, "%s: %s", kind->name, err.msg);
    memcpy(x, x0, n * sizeof(float));
    for (int i = 0; i < steps; i++) {
        field(x, sigmas[i], v, n);
        kind->step(s, i, x, v);
        memcpy(traj + (size_t)i * n, x, n * sizeof(float));
    }
    kind->destroy(s);
    ops->release(ops->ctx, x);
    ops->release(ops->ctx, v);
    free(timesteps);
}

static int python_has_numpy(void) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import numpy' >/dev/null 2>&1", fixture_python());
    return system(cmd) == 0;
}

/* The reference grid: sigmas (steps + 1) and timesteps (steps) as printed by solver_reference.py grid. */
static void reference_grid(const char *solver, int steps, double shift, float *sigmas, long *timesteps) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' tests/solver_reference.py grid '%s' %d %.17g", fixture_python(), solver, steps,
             shift);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "cannot run %s", cmd);
    char word[32];
    cr_assert_eq(fscanf(p, "%31s", word), 1);
    cr_assert_str_eq(word, "sigmas");
    for (int i = 0; i <= steps; i++) cr_assert_eq(fscanf(p, "%f", &sigmas[i]), 1, "%s: sigma %d", cmd, i);
    cr_assert_eq(fscanf(p, "%31s", word), 1);
    cr_assert_str_eq(word, "timesteps");
    for (int i = 0; i < steps; i++) cr_assert_eq(fscanf(p, "%ld", &timesteps[i]), 1, "%s: timestep %d", cmd, i);
    cr_assert_eq(pclose(p), 0, "%s failed", cmd);
}

Test(solvers, registered_with_summaries) {
    for (size_t k = 0; k < 2; k++) {
        const SolverKind *kind = solver_by_name(WAN_SOLVERS[k]);
        cr_assert_not_null(kind, "%s not registered (have: %s)", WAN_SOLVERS[k], solver_names());
        cr_assert(strstr(solver_names(), WAN_SOLVERS[k]));
    }
}

/* wan.md §8.3's values (checked there against the official scheduler), without Python. */
Test(solvers, unipc_timesteps_as_published) {
    const SolverKind *unipc = solver_by_name("unipc");
    float s[51], t[50];
    unipc->schedule(50, 5.0f, s, t);
    const float head50[] = {999, 995, 991}, tail50[] = {172, 92};
    for (int i = 0; i < 3; i++) cr_assert_eq(t[i], head50[i], "50 steps shift 5: timestep %d = %g", i, t[i]);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(t[48 + i], tail50[i], "50 steps shift 5: timestep %d = %g", 48 + i, t[48 + i]);
    cr_assert_eq(s[50], 0.0f);
    unipc->schedule(20, 3.0f, s, t);
    const float head20[] = {999, 982, 963}, tail20[] = {249, 136};
    for (int i = 0; i < 3; i++) cr_assert_eq(t[i], head20[i], "20 steps shift 3: timestep %d = %g", i, t[i]);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(t[18 + i], tail20[i], "20 steps shift 3: timestep %d = %g", 18 + i, t[18 + i]);
    cr_assert_eq(s[20], 0.0f);
}

Test(solvers, grids_match_reference, .timeout = 60) {
    if (!python_has_numpy()) cr_skip_test("%s cannot import numpy (Debian: python3-numpy)", fixture_python());
    const struct { int steps; double shift; } cases[] = {{50, 5.0}, {20, 3.0}, {1, 5.0}, {7, 8.0}, {100, 1.0}};
    for (size_t k = 0; k < 2; k++) {
        const SolverKind *kind = solver_by_name(WAN_SOLVERS[k]);
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            const int steps = cases[c].steps;
            float sigmas[101], want_sigmas[101], timesteps[100];
            long want_timesteps[100];
            kind->schedule(steps, (float)cases[c].shift, sigmas, timesteps);
            reference_grid(kind->name, steps, cases[c].shift, want_sigmas, want_timesteps);
            for (int i = 0; i < steps; i++)
                cr_assert_eq((long)timesteps[i], want_timesteps[i], "%s %d steps shift %g: timestep %d = %g, want %ld",
                             kind->name, steps, cases[c].shift, i, timesteps[i], want_timesteps[i]);
            /* Both sides round the same float64 value to float32: equal, bit for bit. */
            for (int i = 0; i <= steps; i++)
                cr_assert_eq(sigmas[i], want_sigmas[i], "%s %d steps shift %g: sigma %d = %.9g, want %.9g", kind->name,
                             steps, cases[c].shift, i, sigmas[i], want_sigmas[i]);
        }
    }
}

Test(solvers, point_data_follows_the_exact_flow) {
    enum { N = 257 };
    float x0[N], traj[50 * N], sigmas[51];
    fixture_random(x0, N, 11);
    for (int i = 0; i < N; i++) x0[i] *= 2.0f;
    const int step_counts[] = {1, 2, 3, 5, 50};
    for (size_t k = 0; k < 2; k++) {
        const SolverKind *kind = solver_by_name(WAN_SOLVERS[k]);
        for (size_t c = 0; c < sizeof step_counts / sizeof step_counts[0]; c++) {
            const int steps = step_counts[c];
            run_solver(kind, steps, 5.0f, field_point, x0, N, traj, sigmas);
            for (int i = 0; i < steps; i++)
                for (int j = 0; j < N; j++) {
                    const double want = POINT + (double)sigmas[i + 1] * ((double)x0[j] - POINT) / sigmas[0];
                    const float got = traj[(size_t)i * N + j];
                    cr_assert(fabs(got - want) <= 2e-6 * (1.0 + fabs(want)),
                              "%s %d steps: x[%d][%d] = %.9g, exact %.9g", kind->name, steps, i + 1, j, got, want);
                }
            for (int j = 0; j < N; j++) /* the last step lands on the data prediction, here exactly POINT */
                cr_assert(fabs(traj[(size_t)(steps - 1) * N + j] - POINT) <= 1e-6, "%s %d steps: final %.9g",
                          kind->name, steps, traj[(size_t)(steps - 1) * N + j]);
        }
    }
}

/* Step counts 1, 2 and 3 hit every order rule (first step order 1, last step order 1, the corrector of order 1 and
 * 2); 50 is Wan's default. Tolerance: after every step, the error is at most 1e-6 of the reference in RMS and 4e-6 of
 * its largest value anywhere. Float32 rounding alone (state, model output, each update's coefficients) measured
 * 6e-7 RMS and 1.7e-6 at worst after 50 steps; one coefficient off by 0.1% already fails. */
Test(solvers, trajectories_match_reference, .timeout = 120) {
    if (!python_has_numpy()) cr_skip_test("%s cannot import numpy (Debian: python3-numpy)", fixture_python());
    enum { N = 2048 };
    const struct { int steps; float shift; } cases[] = {{1, 5.0f}, {2, 5.0f}, {3, 5.0f}, {4, 3.0f}, {10, 5.0f},
                                                        {50, 5.0f}};
    char *dir = fixture_tmpdir();
    char in_path[512], out_path[512], cmd[2048];
    snprintf(in_path, sizeof in_path, "%s/x0.f32", dir);
    snprintf(out_path, sizeof out_path, "%s/traj.f64", dir);
    float *x0 = malloc(N * sizeof(float)), *traj = malloc((size_t)50 * N * sizeof(float)), sigmas[51];
    double *want = malloc((size_t)50 * N * sizeof(double));
    cr_assert(x0 && traj && want);
    fixture_random(x0, N, 23);
    for (int i = 0; i < N; i++) x0[i] *= 2.5f;
    FILE *f = fopen(in_path, "wb");
    cr_assert(f && fwrite(x0, sizeof(float), N, f) == N && fclose(f) == 0);
    for (size_t k = 0; k < 2; k++) {
        const SolverKind *kind = solver_by_name(WAN_SOLVERS[k]);
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            const int steps = cases[c].steps;
            run_solver(kind, steps, cases[c].shift, field_wavy, x0, N, traj, sigmas);
            snprintf(cmd, sizeof cmd, "'%s' tests/solver_reference.py trajectory '%s' %d %g wavy '%s' '%s'",
                     fixture_python(), kind->name, steps, cases[c].shift, in_path, out_path);
            cr_assert_eq(system(cmd), 0, "%s failed", cmd);
            f = fopen(out_path, "rb");
            cr_assert(f && fread(want, sizeof(double), (size_t)steps * N, f) == (size_t)steps * N && fclose(f) == 0);
            for (int i = 0; i < steps; i++) {
                double worst = 0, err2 = 0, ref2 = 0, largest = 0;
                int at = 0;
                for (int j = 0; j < N; j++) {
                    const double w = want[(size_t)i * N + j], d = fabs(traj[(size_t)i * N + j] - w);
                    err2 += d * d, ref2 += w * w, largest = fmax(largest, fabs(w));
                    if (d > worst) worst = d, at = j;
                }
                const double rel = sqrt(err2 / ref2);
                cr_assert(rel <= 1e-6 && worst <= 4e-6 * largest,
                          "%s %d steps shift %g: x after step %d is off by %.3g (rms, relative), at most %.3g at %d "
                          "(%.9g vs %.9g)", kind->name, steps, cases[c].shift, i, rel, worst, at,
                          traj[(size_t)i * N + at], want[(size_t)i * N + at]);
            }
        }
    }
    free(x0);
    free(traj);
    free(want);
    fixture_rmdir(dir);
    free(dir);
}

/* ---------------------------------------------------------------------------------------------------------- */
/* The command line */

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert(f && fputs(text, f) >= 0 && fclose(f) == 0, "cannot write %s", path);
}

/* `run --solver` on the tiny model (small grid, 10 steps, EasyCache): the record names the solver and holds its
 * grid step by step; without --solver the tiny model's default, euler. */
Test(solvers, cli_run_records_solver_and_grid, .timeout = 180) {
    char *dir = fixture_tmpdir();
    static char log[16384];
    const char *names[] = {"unipc", "dpm++", NULL};
    for (int k = 0; k < 3; k++) {
        char out[512], path[1024];
        snprintf(out, sizeof out, "%s/%d", dir, k);
        const char *args[32] = {"run", "--prompt", "a red circle moving right on a black background", "--steps",
                                "10", "--frames", "2", "--height", "16", "--width", "16", "--strategy",
                                "easycache:thresh=0.05,warmup=3", "--quiet", "--out", out};
        int argc = 16;
        if (access("models/tiny/tiny.safetensors", R_OK) != 0) args[argc++] = "--weights", args[argc++] = "random:1";
        if (names[k]) args[argc++] = "--solver", args[argc++] = names[k];
        args[argc] = NULL;
        cr_assert_eq(fixture_run_cli(log, sizeof log, args), 0, "%s", log);
        snprintf(path, sizeof path, "%s/tiny__easycache_thresh-0.05_warmup-3__p0__s0.h5", out);
        RunRecord rec;
        Error err = {{0}};
        cr_assert_eq(record_read_header(path, &rec, &err), 0, "%s", err.msg);
        const SolverKind *kind = solver_by_name(names[k] ? names[k] : "euler");
        cr_expect_str_eq(rec.solver, kind->name);
        cr_expect_eq(rec.failed, 0);
        cr_assert_eq(rec.steps, 10);
        float sigmas[11], timesteps[10];
        kind->schedule(10, rec.shift, sigmas, timesteps);
        for (int i = 0; i < 10; i++) {
            cr_expect_eq(rec.step[i].sigma, sigmas[i], "%s step %d: sigma %.9g, grid %.9g", kind->name, i,
                         rec.step[i].sigma, sigmas[i]);
            cr_expect_eq(rec.step[i].timestep, timesteps[i], "%s step %d: timestep %g, grid %g", kind->name, i,
                         rec.step[i].timestep, timesteps[i]);
        }
        if (names[k]) cr_expect_eq(rec.step[0].timestep, strcmp(names[k], "unipc") == 0 ? 999.0f : 1000.0f);
        record_free(&rec);
    }
    fixture_rmdir(dir);
    free(dir);
}

Test(solvers, cli_rejects_unknown_solvers) {
    char *dir = fixture_tmpdir();
    static char log[16384];
    char out[512], ini[512], prompts[512];
    snprintf(out, sizeof out, "%s/out", dir);
    const char *run[] = {"run", "--prompt", "a red circle", "--solver", "heun", "--out", out, NULL};
    cr_expect_eq(fixture_run_cli(log, sizeof log, run), 2, "%s", log);
    cr_expect(strstr(log, "unknown solver 'heun' (valid: euler, unipc, dpm++)"), "%s", log);
    cr_expect_neq(access(out, F_OK), 0, "run wrote %s", out);
    snprintf(prompts, sizeof prompts, "%s/prompts.txt", dir);
    write_text(prompts, "pa\ta red circle moving left on a black background\n");
    const char *sweep[] = {"sweep", "--prompts", prompts, "--weights", "random:1", "--solver", "DPM++", "--out", out,
                           NULL};
    cr_expect_eq(fixture_run_cli(log, sizeof log, sweep), 2, "%s", log);
    cr_expect(strstr(log, "unknown solver 'DPM++'"), "%s", log);
    cr_expect_neq(access(out, F_OK), 0, "sweep wrote %s", out);
    snprintf(ini, sizeof ini, "%s/bad.ini", dir);
    write_text(ini, "[sweep]\nsteps = 2\nsolver = heun\n");
    const char *from_ini[] = {"sweep", "--config", ini, "--prompts", prompts, "--out", out, NULL};
    cr_expect_eq(fixture_run_cli(log, sizeof log, from_ini), 2, "%s", log);
    cr_expect(strstr(log, "bad.ini:3: [sweep] unknown solver 'heun'"), "%s", log);
    const char *calibrate[] = {"calibrate", "--prompts", prompts, "--solver", "heun", NULL};
    cr_expect_eq(fixture_run_cli(log, sizeof log, calibrate), 2, "%s", log);
    cr_expect(strstr(log, "unknown solver 'heun'"), "%s", log);
    fixture_rmdir(dir);
    free(dir);
}

/* A sweep's solver (INI key or flag) is recorded in every run, and a folder holds one solver: resuming it with
 * another is refused, naming both. */
Test(solvers, cli_sweep_records_solver_and_keeps_one_per_folder, .timeout = 120) {
    char *dir = fixture_tmpdir();
    static char log[65536];
    char out[512], ini[512], prompts[512], path[1024];
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(prompts, sizeof prompts, "%s/prompts.txt", dir);
    write_text(prompts, "pa\ta red circle moving left on a black background\n");
    snprintf(ini, sizeof ini, "%s/sweep.ini", dir);
    char text[2048];
    snprintf(text, sizeof text, "[sweep]\nprompts = %s\nsteps = 2\nsolver = dpm++\nweights = random:1\nout = %s\n",
             prompts, out);
    write_text(ini, text);
    const char *dry[] = {"sweep", "--config", ini, "--dry-run", NULL};
    cr_assert_eq(fixture_run_cli(log, sizeof log, dry), 0, "%s", log);
    cr_expect(strstr(log, "2 steps, solver dpm++"), "%s", log);
    const char *first[] = {"sweep", "--config", ini, "--quiet", NULL};
    cr_assert_eq(fixture_run_cli(log, sizeof log, first), 0, "%s", log);
    snprintf(path, sizeof path, "%s/runs/none__pa__s0.h5", out);
    RunRecord rec;
    Error err = {{0}};
    cr_assert_eq(record_read_header(path, &rec, &err), 0, "%s", err.msg);
    cr_expect_str_eq(rec.solver, "dpm++");
    cr_expect_eq(rec.step[0].timestep, 1000.0f);
    record_free(&rec);
    const char *other[] = {"sweep", "--config", ini, "--solver", "unipc", "--quiet", NULL};
    cr_expect_eq(fixture_run_cli(log, sizeof log, other), 1, "%s", log);
    cr_expect(strstr(log, "made with solver dpm++, this sweep has solver unipc"), "%s", log);
    fixture_rmdir(dir);
    free(dir);
}
