/* Shared computation in sweeps (README "Shared computation (fork trees)"): the demo sweep (datasets/demo_sweep.ini:
 * none and every strategy at two or three settings on the 4 short prompts, seed 0, 50 steps) and a 10-setting EasyCache
 * threshold sweep (thresh 0.01..0.1, warm-up 10, same prompts and steps), each made without and with sharing into
 * fresh temporary folders by this one process, side by side: the sweep's wall time (runs, metrics and files), the
 * process CPU time (with one thread: the work, whatever else the machine runs), the model calls the engine made and
 * the FLOPs it spent. The records are the same either way (tests/test_share.c).
 * Run from the repository root: make bench, or build/bench_share [STEPS] (default 50). The tiny model's weights
 * (models/tiny) are used when present, random weights otherwise (then without TeaCache, which needs coefficients
 * fitted to the weights). Threads: OMP_NUM_THREADS (measure with 1); the load average is printed: the machine may be
 * shared. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "harness/experiment.h"
#include "harness/sweep.h"

static void note(void *user, const char *msg) {
    (void)user;
    fprintf(stderr, "  note: %s\n", msg);
}

static void remove_tree(const char *dir) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

/* Process CPU time (user + system), all threads: with OMP_NUM_THREADS=1 the work done, whatever else the machine
 * runs. */
static double cpu_now(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + 1e-6 * (double)u.ru_utime.tv_usec + (double)u.ru_stime.tv_sec +
           1e-6 * (double)u.ru_stime.tv_usec;
}

static double load1(void) {
    double a[1];
    return getloadavg(a, 1) == 1 ? a[0] : -1.0;
}

/* One sweep of c into a fresh folder; fills st and *cpu (CPU seconds of the sweep). */
static int one(const SweepConfig *base, int no_share, SweepStatus *st, double *cpu) {
    SweepConfig *c = malloc(sizeof *c);
    SweepPlan plan;
    Error err = {{0}};
    *c = *base;
    char tmpl[] = "/tmp/cachebench_bench_share_XXXXXX";
    if (!c || !mkdtemp(tmpl)) return fprintf(stderr, "no temporary folder\n"), -1;
    snprintf(c->out, sizeof c->out, "%s/out", tmpl);
    memset(&plan, 0, sizeof plan);
    int rc = sweep_plan_build(&plan, c, &err);
    SweepOptions opt = {.no_share = no_share};
    SweepCallbacks cb = {.note = note};
    const double cpu0 = cpu_now();
    if (rc == 0) rc = sweep_run(c, &plan, &opt, &cb, st, &err);
    *cpu = cpu_now() - cpu0;
    if (rc) fprintf(stderr, "sweep: %s\n", err.msg);
    sweep_plan_free(&plan);
    remove_tree(tmpl);
    free(c);
    return rc;
}

static int compare(const char *name, const SweepConfig *c) {
    SweepStatus alone, shared;
    double cpu_alone, cpu_shared;
    const double load_before = load1();
    if (one(c, 1, &alone, &cpu_alone) || one(c, 0, &shared, &cpu_shared)) return -1;
    printf("%-34s %5s %9s %9s %12s %12s\n", name, "runs", "wall s", "CPU s", "model calls", "FLOPs");
    printf("  %-32s %5ld %9.1f %9.1f %12ld %12.4g\n", "alone (--no-share)", alone.done - alone.skipped,
           alone.wall_seconds, cpu_alone, alone.calls_run, alone.flops_run);
    printf("  %-32s %5ld %9.1f %9.1f %12ld %12.4g\n", "shared (fork trees)", shared.done - shared.skipped,
           shared.wall_seconds, cpu_shared, shared.calls_run, shared.flops_run);
    printf("  shared / alone: wall %.2fx, CPU %.2fx, model calls %.2fx, FLOPs %.2fx (%ld forks, %ld calls replayed); "
           "load average %.1f before, %.1f after\n\n",
           shared.wall_seconds / alone.wall_seconds, cpu_shared / cpu_alone,
           (double)shared.calls_run / (double)alone.calls_run, shared.flops_run / alone.flops_run, shared.forks,
           shared.replays, load_before, load1());
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* each table as soon as it is measured, also into a file */
    const int steps = argc > 1 ? atoi(argv[1]) : 50;
    if (steps < 1) return fprintf(stderr, "usage: bench_share [STEPS]\n"), 2;
    char weights[4096];
    experiment_default_weights(weights, sizeof weights);
    const int trained = access(weights, R_OK) == 0;
    printf("shared computation, tiny model (%s), %d steps, OMP_NUM_THREADS=%s\n\n",
           trained ? weights : "random weights, no TeaCache", steps,
           getenv("OMP_NUM_THREADS") ? getenv("OMP_NUM_THREADS") : "unset");

    SweepConfig *c = malloc(sizeof *c);
    Error err = {{0}};
    if (!c) return 1;
    sweep_config_init(c);
    if (sweep_config_read_ini(c, "datasets/demo_sweep.ini", &err)) {
        fprintf(stderr, "%s (run from the repository root)\n", err.msg);
        return 1;
    }
    c->steps = steps;
    if (!trained) {
        snprintf(c->weights, sizeof c->weights, "random:1");
        c->n_templates = 0;
        if (sweep_config_add_template(c, "static:interval=2|3|4,warmup=5", &err) ||
            sweep_config_add_template(c, "easycache:thresh=0.025|0.05|0.1,warmup=10", &err))
            return fprintf(stderr, "%s\n", err.msg), 1;
    }
    int rc = compare("demo sweep (datasets/demo_sweep.ini)", c);

    c->n_templates = 0;
    if (!rc && sweep_config_add_template(c, "easycache:thresh=0.01..0.1/0.01,warmup=10", &err))
        return fprintf(stderr, "%s\n", err.msg), 1;
    if (!rc) rc = compare("easycache thresh 0.01..0.1 (10)", c);
    free(c);
    return rc ? 1 : 0;
}
