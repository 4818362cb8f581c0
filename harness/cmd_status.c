/* cachebench status DIR: where a sweep run by workers stands (harness/claims.h): runs done, claimed and left, what
 * each worker did and holds, failed runs, and the time left from the measured run times. Reads only. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness/claims.h"
#include "harness/cli.h"
#include "results/record.h"

static void status_usage(FILE *out) {
    fprintf(out,
            "Usage: cachebench status DIR [--stale-after T]\n"
            "Where a sweep run with `cachebench sweep --worker` (or --shard) stands: runs done (failed ones listed),\n"
            "runs claimed by a worker now, runs left; per worker (host-pid) the runs it finished and the group it\n"
            "holds with the age of its heartbeat; and an estimate of the time left: the remaining runs times the\n"
            "mean measured time of their setting (of the baseline while a setting has none: an upper bound),\n"
            "divided by the number of live workers. Reads DIR/claims/plan.tsv, DIR/claims/*.claim,\n"
            "DIR/workers/*.tsv and the run files; changes nothing, safe while workers run.\n\n"
            "  --stale-after T      when a claim counts as dead (default 10m, as for sweep)\n"
            "  --help               this text\n");
}

typedef struct {
    char group[512], run_id[512];
    int spec;
    int state;          /* 0 left, 1 done, 2 failed, 3 left out (baseline failed) */
    double seconds;
} StatusRun;

typedef struct {
    char name[300];     /* host-pid */
    long runs;
    double seconds;
    char holds[512];
    long long heartbeat_age;
} WorkerRow;

static void fmt_duration(char *buf, size_t cap, double s) {
    if (s < 0) snprintf(buf, cap, "unknown");
    else if (s < 60) snprintf(buf, cap, "%.0fs", s);
    else if (s < 3600) snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
}

static WorkerRow *worker_row(WorkerRow **rows, int *n, const char *name) {
    for (int i = 0; i < *n; i++)
        if (strcmp((*rows)[i].name, name) == 0) return &(*rows)[i];
    WorkerRow *p = realloc(*rows, (size_t)(*n + 1) * sizeof *p);
    if (!p) return NULL;
    *rows = p;
    WorkerRow *w = &p[(*n)++];
    memset(w, 0, sizeof *w);
    w->heartbeat_age = -1;
    snprintf(w->name, sizeof w->name, "%s", name);
    return w;
}

int cmd_status(int argc, char **argv) {
    static const struct option options[] = {{"stale-after", required_argument, 0, 's'},
                                            {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    double stale_after = 600;
    int opt;
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        if (opt == 'h') {
            status_usage(stdout);
            return 0;
        }
        if (opt == 's') {
            if (claims_parse_duration(optarg, &stale_after))
                return cli_usage_error("status", "invalid value '%s' for --stale-after", optarg);
            continue;
        }
        return cli_usage_error("status", "unknown or incomplete option '%s'", argv[optind - 1]);
    }
    if (optind != argc - 1) return cli_usage_error("status", "give one sweep folder");
    const char *dir = argv[optind];

    char path[8192];
    snprintf(path, sizeof path, "%s/claims/plan.tsv", dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cachebench status: %s: %s (status reads sweeps run with --worker or --shard)\n", path,
                strerror(errno));
        return 1;
    }
    StatusRun *runs = NULL;
    int n = 0, cap = 0, n_specs = 0, rc = 1;
    WorkerRow *rows = NULL;
    int n_rows = 0;
    char line[2048], backend[64] = "?", model[128] = "?";
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "backend\t", 8) == 0) snprintf(backend, sizeof backend, "%.63s", line + 8);
        if (strncmp(line, "model\t", 6) == 0) snprintf(model, sizeof model, "%.127s", line + 6);
        if (strncmp(line, "run\t", 4) != 0) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            StatusRun *p = realloc(runs, (size_t)cap * sizeof *p);
            if (!p) {
                fprintf(stderr, "cachebench status: out of memory\n");
                goto done;
            }
            runs = p;
        }
        StatusRun *r = &runs[n];
        memset(r, 0, sizeof *r);
        if (sscanf(line + 4, "%511[^\t]\t%d\t%511s", r->group, &r->spec, r->run_id) != 3) {
            fprintf(stderr, "cachebench status: %s: bad line \"%.80s\"\n", path, line);
            goto done;
        }
        if (r->spec + 1 > n_specs) n_specs = r->spec + 1;
        n++;
    }
    fclose(f);
    f = NULL;
    if (!n) {
        fprintf(stderr, "cachebench status: %s lists no runs\n", path);
        goto done;
    }

    /* Runs: done (or failed) by their files. */
    long done = 0, failed = 0, left_out = 0, claimed = 0;
    double *sum = calloc((size_t)n_specs, sizeof *sum);
    int *cnt = calloc((size_t)n_specs, sizeof *cnt);
    if (!sum || !cnt) {
        free(sum), free(cnt);
        fprintf(stderr, "cachebench status: out of memory\n");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        StatusRun *r = &runs[i];
        snprintf(path, sizeof path, "%s/runs/%s.h5", dir, r->run_id);
        if (access(path, F_OK) != 0) continue;
        RunRecord h = {0};
        Error e = {{0}};
        if (record_read_header(path, &h, &e) == 0 && (h.failed || h.metrics.frames)) {
            r->state = h.failed ? 2 : 1;
            r->seconds = h.wall_seconds;
            sum[r->spec] += h.wall_seconds;
            cnt[r->spec]++;
        }
        record_free(&h);
    }
    for (int i = 0; i < n; i++) /* a failed baseline leaves its group's other runs out */
        if (runs[i].spec > 0 && runs[i].state == 0 && runs[i - runs[i].spec].state == 2) runs[i].state = 3;
    for (int i = 0; i < n; i++) {
        done += runs[i].state == 1 || runs[i].state == 2;
        failed += runs[i].state == 2;
        left_out += runs[i].state == 3;
    }

    /* Workers: their logs, then their claims. */
    snprintf(path, sizeof path, "%s/workers", dir);
    DIR *d = opendir(path);
    struct dirent *ent;
    while (d && (ent = readdir(d))) {
        size_t len = strlen(ent->d_name);
        if (len < 5 || strcmp(ent->d_name + len - 4, ".tsv")) continue;
        char name[300];
        snprintf(name, sizeof name, "%.*s", (int)(len - 4), ent->d_name);
        WorkerRow *w = worker_row(&rows, &n_rows, name);
        snprintf(path, sizeof path, "%s/workers/%s", dir, ent->d_name);
        FILE *wf = w ? fopen(path, "r") : NULL;
        while (wf && fgets(line, sizeof line, wf)) {
            char id[512], st[32];
            double s;
            if (sscanf(line, "%511[^\t]\t%31[^\t]\t%lf", id, st, &s) == 3) w->runs++, w->seconds += s;
        }
        if (wf) fclose(wf);
    }
    if (d) closedir(d);
    int live = 0;
    long long now = (long long)time(NULL);
    snprintf(path, sizeof path, "%s/claims", dir);
    char claims_dir[8192];
    snprintf(claims_dir, sizeof claims_dir, "%s", path);
    d = opendir(claims_dir);
    while (d && (ent = readdir(d))) {
        size_t len = strlen(ent->d_name);
        if (len < 7 || strcmp(ent->d_name + len - 6, ".claim")) continue;
        char group[512];
        snprintf(group, sizeof group, "%.*s", (int)(len - 6), ent->d_name);
        ClaimInfo ci;
        if (claims_read(claims_dir, group, &ci) != 1) continue;
        char name[300];
        snprintf(name, sizeof name, "%s-%ld", ci.host, ci.pid);
        WorkerRow *w = worker_row(&rows, &n_rows, name);
        if (!w) continue;
        snprintf(w->holds, sizeof w->holds, "%s", group);
        w->heartbeat_age = now - ci.heartbeat;
        if ((double)w->heartbeat_age <= stale_after) live++;
        for (int i = 0; i < n; i++)
            if (strcmp(runs[i].group, group) == 0 && runs[i].state == 0) runs[i].state = 4, claimed++;
    }
    if (d) closedir(d);

    /* Time left: remaining runs at their setting's mean time (the baseline's as an upper bound). */
    double eta = 0;
    int upper = 0;
    for (int i = 0; i < n && eta >= 0; i++) {
        if (runs[i].state != 0 && runs[i].state != 4) continue;
        int s = runs[i].spec;
        if (cnt[s]) eta += sum[s] / cnt[s];
        else if (cnt[0]) eta += sum[0] / cnt[0], upper = 1;
        else eta = -1;
    }
    if (eta > 0) eta /= live > 0 ? live : 1;
    free(sum), free(cnt);

    long left = n - done - left_out - claimed;
    printf("sweep %s: %d runs (%d settings x %d prompt-seed groups), model %s, backend %s\n", dir, n, n_specs,
           n / n_specs, model, backend);
    printf("done %ld (%ld failed), claimed %ld, left %ld", done, failed, claimed, left);
    if (left_out) printf(", left out %ld (their baseline failed)", left_out);
    printf("\n");
    printf("workers (%d live):\n", live);
    for (int i = 0; i < n_rows; i++) {
        WorkerRow *w = &rows[i];
        printf("  %-28s %5ld runs, %8.1f s", w->name, w->runs, w->seconds);
        if (!w->holds[0]) printf("   idle or gone\n");
        else if ((double)w->heartbeat_age > stale_after)
            printf("   holds %s, SILENT for %llds: taken over by the next worker that reaches it\n", w->holds,
                   w->heartbeat_age);
        else printf("   running %s (heartbeat %llds ago)\n", w->holds, w->heartbeat_age);
    }
    if (failed) {
        printf("failed runs:\n");
        for (int i = 0; i < n; i++)
            if (runs[i].state == 2) printf("  %s\n", runs[i].run_id);
    }
    char eta_s[32];
    fmt_duration(eta_s, sizeof eta_s, eta);
    if (left + claimed == 0)
        printf("all runs finished: `cachebench plot %s` (or the last worker) writes the summary\n", dir);
    else printf("time left: %s%s with %d live worker%s (measured run times)\n", upper ? "at most " : "", eta_s,
                live > 0 ? live : 1, live == 1 ? "" : "s");
    rc = 0;
done:
    if (f) fclose(f);
    free(runs);
    free(rows);
    return rc;
}
