/* Sweep workers sharing one folder (harness/claims.h): parallel workers equal one process, a worker killed with
 * SIGKILL is taken over and nothing is lost or done twice, a silent claim of another machine is taken over only after
 * the stale time, static shards, `cachebench status`, and workers of another sweep refused.
 * Random weights (random:1), 4 steps; the kill test uses the tiny model's own grid (a run takes ~0.5 s), the others
 * a 2x16x16 grid (a run takes a few ms). */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness/claims.h"
#include "tests/fixtures.h"

#define MAX_ARGS 40

/* The grid of every test: none + 2 settings, on prompts pa, pb (and pc with three), seed 0 (and 1 with two). */
static int sweep_args(const char **a, const char *prompts, const char *out, int small, const char *seeds) {
    int n = 0;
    const char *base[] = {"sweep", "--weights", "random:1", "--prompts", prompts, "--steps", "4", "--out", out,
                          "--seeds", seeds, "--strategy", "static:interval=2,warmup=1", "--strategy",
                          "easycache:thresh=5,warmup=1", "--quiet"};
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++) a[n++] = base[i];
    if (small) {
        const char *grid[] = {"--frames", "2", "--height", "16", "--width", "16"};
        for (size_t i = 0; i < 6; i++) a[n++] = grid[i];
    }
    a[n] = NULL;
    return n;
}

static void append_args(const char **a, int n, const char *const *more) {
    while (*more) a[n++] = *more++;
    a[n] = NULL;
}

static pid_t spawn_cli(const char *const *args, const char *log_path) {
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        const char *argv[MAX_ARGS + 2] = {fixture_cli_path()};
        for (int i = 0; args[i] && i < MAX_ARGS; i++) argv[i + 1] = args[i];
        execv(argv[0], (char **)argv);
        _exit(127);
    }
    return pid;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t cap = 0, len = 0, got;
    char chunk[4096];
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (len + got + 1 > cap) buf = realloc(buf, cap = 2 * (len + got + 1));
        memcpy(buf + len, chunk, got);
        len += got;
    }
    fclose(f);
    if (!buf) buf = calloc(1, 1);
    buf[len] = '\0';
    return buf;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

/* summary.tsv with the columns whose name mentions wall-clock time dropped (the only ones that may differ). */
static char *summary_no_wall(const char *out) {
    char path[1024];
    snprintf(path, sizeof path, "%s/summary.tsv", out);
    char *text = slurp(path);
    cr_assert_not_null(text, "%s missing", path);
    int drop[64] = {0}, col = 0;
    for (const char *p = text; *p && *p != '\n'; p++) {
        if (p == text || p[-1] == '\t')
            drop[col < 63 ? col : 63] = strncmp(p, "wall", 4) == 0 || strncmp(p, "speedup_wall", 12) == 0 ||
                                        strncmp(p, "time_s", 6) == 0 || strncmp(p, "cpu_s", 5) == 0 ||
                                        strncmp(p, "load_avg", 8) == 0; /* timings: not part of the result */
        if (*p == '\t') col++;
    }
    char *res = calloc(1, strlen(text) + 2), *w = res;
    col = 0;
    for (const char *p = text; *p; p++) {
        if (*p == '\n') {
            *w++ = '\n';
            col = 0;
            continue;
        }
        if (*p == '\t') col++;
        if (!drop[col < 63 ? col : 63]) *w++ = *p;
    }
    free(text);
    return res;
}

/* The run ids in the worker logs of out (OUT/workers/NAME.tsv), in no particular order. */
static int logged_runs(const char *out, char ids[][128], int cap) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/workers", out);
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!strstr(e->d_name, ".tsv")) continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        char *text = slurp(path);
        for (char *save = NULL, *line = strtok_r(text, "\n", &save); line && n < cap;
             line = strtok_r(NULL, "\n", &save))
            sscanf(line, "%127[^\t]", ids[n++]);
        free(text);
    }
    if (d) closedir(d);
    return n;
}

static int count_h5(const char *out) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/runs", out);
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t len = strlen(e->d_name);
        n += len > 3 && strcmp(e->d_name + len - 3, ".h5") == 0;
    }
    if (d) closedir(d);
    return n;
}

/* No run was written twice: every run id the workers logged appears once; they logged want runs (a worker killed
 * between writing a run file and logging it logs one less: slack). */
static void expect_each_run_once(const char *out, int want, int slack) {
    static char ids[256][128];
    int n = logged_runs(out, ids, 256);
    cr_expect(n <= want && n >= want - slack, "%d runs logged by workers, want %d", n, want);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) cr_expect_str_neq(ids[i], ids[j], "%s was run twice", ids[i]);
}

static void sleep_ms(int ms) {
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* A test's folder: the prompts, the reference sweep by one process (one/) and the folder the workers fill (many/). */
typedef struct {
    char *dir;
    char prompts[512], one[600], many[600];
} Sweeps;

static char log[65536]; /* each test's CLI output; tests run in their own processes */

static void start(Sweeps *x, int three, int small, const char *seeds) {
    x->dir = fixture_tmpdir();
    snprintf(x->prompts, sizeof x->prompts, "%s/prompts.txt", x->dir);
    write_text(x->prompts, three ? "pa\ta red circle\npb\ta blue square\npc\ta green triangle\n"
                                 : "pa\ta red circle\npb\ta blue square\n");
    snprintf(x->one, sizeof x->one, "%s/one", x->dir);
    snprintf(x->many, sizeof x->many, "%s/many", x->dir);
    const char *a[MAX_ARGS];
    sweep_args(a, x->prompts, x->one, small, seeds);
    cr_assert_eq(fixture_run_cli(log, sizeof log, a), 0, "%s", log);
}

/* The workers' folder equals the reference: same summary (run ids, decisions, metrics); no run done twice. */
static void expect_same_as_one_process(const Sweeps *x, int runs, int slack) {
    char *sa = summary_no_wall(x->one), *sb = summary_no_wall(x->many);
    cr_expect_str_eq(sa, sb);
    free(sa), free(sb);
    cr_expect_eq(count_h5(x->many), runs);
    expect_each_run_once(x->many, runs, slack);
}

static void finish(Sweeps *x) {
    fixture_rmdir(x->dir);
    free(x->dir);
}

Test(workers, parallel_workers_equal_one_process, .timeout = 60) {
    Sweeps x;
    start(&x, 1, 1, "0,1");
    char logs[2][700];
    const char *a[MAX_ARGS];

    pid_t pids[2];
    for (int w = 0; w < 2; w++) {
        snprintf(logs[w], sizeof logs[w], "%s/worker%d.log", x.dir, w);
        int n = sweep_args(a, x.prompts, x.many, 1, "0,1");
        append_args(a, n, (const char *[]){"--worker", NULL});
        pids[w] = spawn_cli(a, logs[w]);
    }
    for (int w = 0; w < 2; w++) {
        int status;
        waitpid(pids[w], &status, 0);
        char *text = slurp(logs[w]);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "worker %d: %s", w, text);
        free(text);
    }
    expect_same_as_one_process(&x, 18, 0);

    /* status: everything done, both workers listed with their runs. */
    const char *st[] = {"status", x.many, NULL};
    cr_assert_eq(fixture_run_cli(log, sizeof log, st), 0, "%s", log);
    cr_expect(strstr(log, "done 18 (0 failed), claimed 0, left 0"), "%s", log);
    cr_expect(strstr(log, "all runs finished"), "%s", log);

    /* A worker of another sweep (other weights) is refused, naming what differs. */
    int n = sweep_args(a, x.prompts, x.many, 1, "0,1");
    a[2] = "random:2";
    append_args(a, n, (const char *[]){"--worker", NULL});
    cr_expect_eq(fixture_run_cli(log, sizeof log, a), 1, "%s", log);
    cr_expect(strstr(log, "weights"), "%s", log);
    /* ... and one of another plan (other seeds) too: plan.tsv. */
    n = sweep_args(a, x.prompts, x.many, 1, "0,1,2");
    append_args(a, n, (const char *[]){"--worker", NULL});
    cr_expect_eq(fixture_run_cli(log, sizeof log, a), 1, "%s", log);
    cr_expect(strstr(log, "plan.tsv") && strstr(log, "differs"), "%s", log);
    finish(&x);
}

Test(workers, killed_worker_is_taken_over_nothing_lost_or_doubled, .timeout = 90) {
    Sweeps x;
    start(&x, 0, 0, "0");
    char path[1024];
    const char *a[MAX_ARGS];

    /* SIGKILL once the first baseline is written: the worker dies in the middle of its group. */
    int n = sweep_args(a, x.prompts, x.many, 0, "0");
    append_args(a, n, (const char *[]){"--worker", "--stale-after", "60", NULL});
    snprintf(path, sizeof path, "%s/killed.log", x.dir);
    pid_t pid = spawn_cli(a, path);
    for (int i = 0; i < 60000 && count_h5(x.many) < 1; i++) sleep_ms(1);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFSIGNALED(status), "the worker finished before the kill");
    int before = count_h5(x.many);
    cr_assert(before >= 1 && before < 3, "%d run files at the kill", before);
    snprintf(path, sizeof path, "%s/claims/none__pa__s0.claim", x.many);
    cr_assert_eq(access(path, F_OK), 0, "the dead worker's claim is left");

    const char *st[] = {"status", x.many, NULL};
    cr_assert_eq(fixture_run_cli(log, sizeof log, st), 0, "%s", log);
    char want[128];
    snprintf(want, sizeof want, "done %d (0 failed), claimed %d, left 3", before, 3 - before);
    cr_expect(strstr(log, want), "want \"%s\":\n%s", want, log);
    cr_expect(strstr(log, "none__pa__s0"), "the claim is shown:\n%s", log);

    /* A new worker takes the claim over (its process is gone on this host) and runs only what is missing. */
    n = sweep_args(a, x.prompts, x.many, 0, "0");
    append_args(a, n, (const char *[]){"--worker", "--stale-after", "60", NULL});
    cr_assert_eq(fixture_run_cli(log, sizeof log, a), 0, "%s", log);
    cr_expect(strstr(log, "took over none__pa__s0"), "%s", log);
    cr_expect_eq(access(path, F_OK), -1, "no claim left");
    expect_same_as_one_process(&x, 6, 1);
    finish(&x);
}

Test(workers, silent_claim_is_taken_over_only_after_the_stale_time, .timeout = 60) {
    Sweeps x;
    start(&x, 0, 1, "0");
    char path[1024];
    const char *a[MAX_ARGS];

    /* A claim of another machine, with a heartbeat of now: a live worker there, until it stays silent 2 s. */
    snprintf(path, sizeof path, "%s/claims", x.many);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", path);
    cr_assert_eq(system(cmd), 0);
    snprintf(path, sizeof path, "%s/claims/none__pb__s0.claim", x.many);
    char text[256];
    long long now = (long long)time(NULL);
    snprintf(text, sizeof text, "host=elsewhere-node\npid=4242\ntoken=elsewhere-node:4242:1\nstarted=%lld\n"
                                "heartbeat=%lld\n", now, now);
    write_text(path, text);
    const double t0 = now_s();
    int n = sweep_args(a, x.prompts, x.many, 1, "0");
    append_args(a, n, (const char *[]){"--worker", "--stale-after", "2", NULL});
    cr_assert_eq(fixture_run_cli(log, sizeof log, a), 0, "%s", log);
    const double took = now_s() - t0;
    cr_expect(took >= 1.5, "took the claim over after %.2f s, before the stale time", took);
    cr_expect(strstr(log, "took over none__pb__s0 (prompt pb seed 0) from elsewhere-node pid 4242"), "%s", log);
    expect_same_as_one_process(&x, 6, 0);
    finish(&x);
}

Test(workers, shards_partition_the_groups, .timeout = 60) {
    Sweeps x;
    start(&x, 1, 1, "0");
    const char *a[MAX_ARGS];

    /* Groups in plan order: pa, pb, pc. Shard 1/2 runs pa and pc, shard 2/2 pb. */
    int n = sweep_args(a, x.prompts, x.many, 1, "0");
    append_args(a, n, (const char *[]){"--shard", "1/2", NULL});
    cr_assert_eq(fixture_run_cli(log, sizeof log, a), 0, "%s", log);
    cr_expect(strstr(log, "shard 1/2 done"), "%s", log);
    char path[1024];
    snprintf(path, sizeof path, "%s/runs/none__pb__s0.h5", x.many);
    cr_expect_eq(access(path, F_OK), -1, "shard 1/2 ran a group of shard 2/2");
    cr_expect_eq(count_h5(x.many), 6);
    n = sweep_args(a, x.prompts, x.many, 1, "0");
    append_args(a, n, (const char *[]){"--shard", "2/2", NULL});
    cr_assert_eq(fixture_run_cli(log, sizeof log, a), 0, "%s", log);
    cr_expect_eq(count_h5(x.many), 9);
    const char *plot[] = {"plot", x.many, NULL};
    cr_assert_eq(fixture_run_cli(log, sizeof log, plot), 0, "%s", log);
    expect_same_as_one_process(&x, 9, 0);

    const char *bad[] = {"sweep", "--shard", "3/2", NULL};
    cr_expect_eq(fixture_run_cli(log, sizeof log, bad), 2, "%s", log);
    cr_expect(strstr(log, "--shard"), "%s", log);
    finish(&x);
}

/* Processes racing for one claim, fresh or stale: exactly one gets it (claims_try in forked children). */
static int race_for_claim(const char *out, int racers) {
    int pipefd[2];
    cr_assert_eq(pipe(pipefd), 0);
    pid_t pids[16];
    for (int i = 0; i < racers; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            Claims c;
            Error err = {{0}};
            char won = '0';
            if (claims_open(&c, out, 60, &err) == 0 && claims_try(&c, "none__pa__s0", NULL, &err) == 1) won = '1';
            ssize_t w = write(pipefd[1], &won, 1);
            _exit(w == 1 ? 0 : 1); /* the claim stays: the winner must not release it before the others try */
        }
    }
    close(pipefd[1]);
    int winners = 0;
    char ch;
    for (int i = 0; i < racers && read(pipefd[0], &ch, 1) == 1; i++) winners += ch == '1';
    close(pipefd[0]);
    for (int i = 0; i < racers; i++) waitpid(pids[i], NULL, 0);
    return winners;
}

Test(workers, one_winner_among_racing_claims) {
    char *dir = fixture_tmpdir(), path[1024], cmd[1200];
    cr_expect_eq(race_for_claim(dir, 8), 1, "a fresh claim");
    /* A stale claim of another machine: one taker, and no takeover file left behind. */
    snprintf(path, sizeof path, "%s/claims/none__pa__s0.claim", dir);
    write_text(path, "host=elsewhere-node\npid=4242\ntoken=elsewhere-node:4242:1\nstarted=1\nheartbeat=1\n");
    cr_expect_eq(race_for_claim(dir, 8), 1, "a stale claim");
    snprintf(cmd, sizeof cmd, "ls %s/claims | grep -c -v '\\.claim$' || true", dir);
    FILE *p = popen(cmd, "r");
    int others = -1;
    cr_assert(p && fscanf(p, "%d", &others) == 1);
    pclose(p);
    cr_expect_eq(others, 0, "files other than the claim left in claims/");
    fixture_rmdir(dir);
    free(dir);
}
