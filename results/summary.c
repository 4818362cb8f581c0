/* summary.tsv, report.md and the frame strip of a sweep folder, from its run files (definitions: summary.h). */
#include "results/summary.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "metrics/image.h"
#include "metrics/metrics.h"
#include "results/paired.h"
#include "results/plots.h"
#include "results/record.h"
#include "results/stats.h"
#include "results/strip.h"
#include "strategies/strategy.h"

void summary_format(char *buf, size_t cap, const char *fmt, double v) {
    if (isnan(v)) snprintf(buf, cap, "NA");
    else if (isinf(v)) snprintf(buf, cap, v > 0 ? "inf" : "-inf");
    else snprintf(buf, cap, fmt, v);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Robust run time */

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median of v[0..n) (reorders v); NAN when n == 0. */
static double median(double *v, int n) {
    if (n <= 0) return NAN;
    qsort(v, (size_t)n, sizeof *v, compare_doubles);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* A step's time: min(wall, CPU) on the CPU backend, the wall time on others, where the host thread's CPU time says
 * nothing about the device's work (rule: summary.h). */
static double step_time(const RunRecord *r, const StepRecord *st) {
    if (strcmp(r->backend, "cpu") != 0 || isnan(st->cpu_seconds) || st->cpu_seconds > st->wall_seconds)
        return st->wall_seconds;
    return st->cpu_seconds;
}

static int same_work(const SummaryStep *a, const SummaryStep *b) {
    return a->flops == b->flops && a->computed[0] == b->computed[0] && a->computed[1] == b->computed[1];
}

/* Classes of equal work over steps[0..n): each step's class median is written to med[i]. scratch: n doubles. */
static void class_medians(const SummaryStep *steps, int n, double *med, double *scratch, char *done) {
    memset(done, 0, (size_t)n);
    for (int i = 0; i < n; i++) {
        if (done[i]) continue;
        int k = 0;
        for (int j = i; j < n; j++)
            if (!done[j] && same_work(&steps[i], &steps[j])) scratch[k++] = steps[j].seconds;
        double m = median(scratch, k);
        for (int j = i; j < n; j++)
            if (!done[j] && same_work(&steps[i], &steps[j])) med[j] = m, done[j] = 1;
    }
}

/* Pools the steps of rows[0..count) (complete runs only) and sets each complete row's time_s. */
static int pool_times(SummaryRow *rows, int count, Error *err) {
    int n = 0;
    for (int r = 0; r < count; r++)
        if (!rows[r].failed) n += rows[r].n_step_times;
    SummaryStep *all = malloc((size_t)(n ? n : 1) * sizeof *all);
    double *med = malloc((size_t)(n ? n : 1) * sizeof *med), *scratch = malloc((size_t)(n ? n : 1) * sizeof *scratch);
    char *done = malloc((size_t)(n ? n : 1));
    if (!all || !med || !scratch || !done) {
        free(all), free(med), free(scratch), free(done);
        return error_set(err, "out of memory");
    }
    n = 0;
    for (int r = 0; r < count; r++)
        if (!rows[r].failed) memcpy(all + n, rows[r].step_times, (size_t)rows[r].n_step_times * sizeof *all), n += rows[r].n_step_times;
    class_medians(all, n, med, scratch, done);
    n = 0;
    for (int r = 0; r < count; r++) {
        if (rows[r].failed) continue;
        double t = 0;
        for (int i = 0; i < rows[r].n_step_times; i++) t += med[n + i];
        rows[r].time_s = rows[r].n_step_times ? t : NAN;
        n += rows[r].n_step_times;
    }
    free(all), free(med), free(scratch), free(done);
    return 0;
}

int summary_pool_times(Summary *s, Error *err) {
    for (int i = 0; i < s->count;) {
        int j = i;
        while (j < s->count && strcmp(s->rows[j].spec, s->rows[i].spec) == 0) j++;
        if (pool_times(s->rows + i, j - i, err)) return -1;
        i = j;
    }
    return 0;
}

double summary_robust_seconds(const RunRecord *r) {
    if (r->failed || r->steps <= 0 || !r->step) return NAN;
    SummaryRow row = {.n_step_times = r->steps};
    row.step_times = malloc((size_t)r->steps * sizeof *row.step_times);
    if (!row.step_times) return NAN;
    for (int i = 0; i < r->steps; i++)
        row.step_times[i] = (SummaryStep){r->step[i].flops, {r->step[i].computed[0], r->step[i].computed[1]},
                                     step_time(r, &r->step[i])};
    Error err = {{0}};
    double t = pool_times(&row, 1, &err) ? NAN : row.time_s;
    free(row.step_times);
    return t;
}

/* ---------------------------------------------------------------------------------------------------------------
 * Loading */

static int strategy_rank(const char *name) {
    for (int i = 0; i < strategy_count(); i++)
        if (strcmp(strategy_at(i)->name, name) == 0) return i;
    return strategy_count();
}

/* Orders canonical specs by their parameters, numbers as numbers (thresh=0.1 after thresh=0.05). */
static int compare_specs(const char *a, const char *b) {
    StrategyParams pa, pb;
    if (strategy_parse_spec(a, &pa, NULL) || strategy_parse_spec(b, &pb, NULL)) return strcmp(a, b);
    int c = strcmp(pa.name, pb.name);
    if (c) return c;
    for (int i = 0; i < pa.count && i < pb.count; i++) {
        if ((c = strcmp(pa.keys[i], pb.keys[i]))) return c;
        char *ea, *eb;
        double va = strtod(pa.values[i], &ea), vb = strtod(pb.values[i], &eb);
        if (!*ea && !*eb && ea != pa.values[i] && eb != pb.values[i]) {
            if (va != vb) return va < vb ? -1 : 1;
        } else if ((c = strcmp(pa.values[i], pb.values[i]))) {
            return c;
        }
    }
    return pa.count - pb.count;
}

static int compare_rows(const void *x, const void *y) {
    const SummaryRow *a = x, *b = y;
    int c = strategy_rank(a->strategy) - strategy_rank(b->strategy);
    if (c) return c;
    if ((c = strcmp(a->strategy, b->strategy))) return c;
    if ((c = compare_specs(a->spec, b->spec))) return c;
    if ((c = strcmp(a->prompt_id, b->prompt_id))) return c;
    return a->seed < b->seed ? -1 : a->seed > b->seed;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int add_row(Summary *s, const char *path, const char *name, const RunRecord *r, Error *err) {
    if (s->count % 64 == 0) {
        SummaryRow *p = realloc(s->rows, (size_t)(s->count + 64) * sizeof *p);
        if (!p) return error_set(err, "out of memory");
        s->rows = p;
    }
    SummaryRow *row = &s->rows[s->count++];
    memset(row, 0, sizeof *row);
    snprintf(row->run_id, sizeof row->run_id, "%.*s", (int)(strlen(name) - 3), name);
    snprintf(row->file, sizeof row->file, "%s", path);
    snprintf(row->strategy, sizeof row->strategy, "%s", r->strategy);
    snprintf(row->spec, sizeof row->spec, "%s", r->strategy_spec);
    snprintf(row->prompt_id, sizeof row->prompt_id, "%s", r->prompt_id);
    snprintf(row->prompt, sizeof row->prompt, "%s", r->prompt);
    row->seed = r->seed;
    row->steps = r->steps;
    row->calls_computed = r->calls_computed;
    row->calls_total = r->calls_total;
    row->hit_rate = r->calls_total ? (double)r->calls_skipped / r->calls_total : NAN;
    row->wall_s = r->wall_seconds;
    row->time_s = NAN; /* summary_pool_times, once every run of the setting is loaded */
    if (!r->failed && r->steps > 0) {
        row->step_times = malloc((size_t)r->steps * sizeof *row->step_times);
        if (!row->step_times) return error_set(err, "out of memory");
        row->n_step_times = r->steps;
        for (int i = 0; i < r->steps; i++)
            row->step_times[i] = (SummaryStep){r->step[i].flops, {r->step[i].computed[0], r->step[i].computed[1]},
                                          step_time(r, &r->step[i])};
    }
    row->cpu_s = r->cpu_seconds;
    row->load_avg = isnan(r->load_average_end) || r->load_average_start > r->load_average_end ? r->load_average_start
                                                                                               : r->load_average_end;
    row->failed = r->failed;
    row->failed_step = r->failed_step;
    row->speedup_wall = NAN;
    row->speedup_flops = !r->failed && r->flops_spent > 0 ? r->flops_full / r->flops_spent : NAN;
    row->psnr = row->ssim = row->lpips = NAN;
    row->baseline = -1;
    if (!r->failed && r->metrics.frames > 0) {
        row->psnr = r->metrics.psnr_mean;
        row->ssim = r->metrics.ssim_mean;
        if (r->metrics.lpips_available) {
            row->lpips = r->metrics.lpips_mean;
            s->lpips_available = 1;
        }
    }
    if (s->count == 1) {
        snprintf(s->model, sizeof s->model, "%s", r->model);
        snprintf(s->weights_path, sizeof s->weights_path, "%s", r->weights_path);
        snprintf(s->weights_sha256, sizeof s->weights_sha256, "%s", r->weights_sha256);
        snprintf(s->backend, sizeof s->backend, "%s", r->backend);
        snprintf(s->device, sizeof s->device, "%s", r->device);
        snprintf(s->version, sizeof s->version, "%s", r->version);
        s->steps = r->steps;
        s->frames = r->frames, s->height = r->height, s->width = r->width;
    }
    return 0;
}

/* Reads <sweep>/plan.tsv when present (a folder made before plans were written has none). */
static int read_plan(const char *sweep_dir, Summary *s, Error *err) {
    char path[2100], line[1024];
    snprintf(path, sizeof path, "%s/plan.tsv", sweep_dir);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int cap = 0, lineno = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        if (++lineno == 1) continue; /* header */
        line[strcspn(line, "\n")] = '\0';
        char *spec = strtok(line, "\t"), *pid = strtok(NULL, "\t"), *seed = strtok(NULL, "\t"), *end = NULL;
        unsigned long long sv = seed ? strtoull(seed, &end, 10) : 0;
        if (!spec || !pid || !seed || *end || strlen(spec) >= sizeof s->plan[0].spec ||
            strlen(pid) >= sizeof s->plan[0].prompt_id) {
            rc = error_set(err, "%s:%d: expected spec, prompt_id, seed and run_id separated by tabs", path, lineno);
            break;
        }
        if (s->plan_count == cap) {
            cap = cap ? 2 * cap : 64;
            PlannedPair *p = realloc(s->plan, (size_t)cap * sizeof *p);
            if (!p) {
                rc = error_set(err, "out of memory");
                break;
            }
            s->plan = p;
        }
        PlannedPair *p = &s->plan[s->plan_count++];
        snprintf(p->spec, sizeof p->spec, "%s", spec);
        snprintf(p->prompt_id, sizeof p->prompt_id, "%s", pid);
        p->seed = sv;
    }
    fclose(f);
    return rc;
}

int summary_load(const char *sweep_dir, Summary *s, Error *err) {
    memset(s, 0, sizeof *s);
    char runs_dir[2100];
    if (strlen(sweep_dir) >= 2048) return error_set(err, "sweep folder path too long: %.60s...", sweep_dir);
    snprintf(runs_dir, sizeof runs_dir, "%s/runs", sweep_dir);
    DIR *d = opendir(runs_dir);
    if (!d) return error_set(err, "%s: not a sweep folder (cannot open runs/: %s)", sweep_dir, strerror(errno));
    /* Sorted names, so that which file gives the sweep-wide attributes does not depend on readdir. */
    char **names = NULL;
    int n = 0, cap = 0, rc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!ends_with(e->d_name, ".h5") || e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **p = realloc(names, (size_t)cap * sizeof *names);
            if (!p) {
                rc = error_set(err, "out of memory");
                break;
            }
            names = p;
        }
        if (!(names[n] = strdup(e->d_name))) {
            rc = error_set(err, "out of memory");
            break;
        }
        n++;
    }
    closedir(d);
    if (n) qsort(names, (size_t)n, sizeof *names, compare_names);
    for (int i = 0; i < n && !rc; i++) {
        char path[sizeof s->rows[0].file];
        snprintf(path, sizeof path, "%s/%s", runs_dir, names[i]);
        RunRecord r;
        Error rerr = {{0}};
        if (record_read(path, &r, &rerr)) {
            /* A foreign or damaged file must not hide the rest of an overnight sweep: counted and left out. */
            if (!s->unreadable++) snprintf(s->unreadable_msg, sizeof s->unreadable_msg, "%s", rerr.msg);
            continue;
        }
        rc = add_row(s, path, names[i], &r, err);
        record_free(&r);
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    if (rc) {
        summary_free(s);
        return -1;
    }
    if (read_plan(sweep_dir, s, err)) {
        summary_free(s);
        return -1;
    }
    if (s->count) qsort(s->rows, (size_t)s->count, sizeof *s->rows, compare_rows);
    if (summary_pool_times(s, err)) {
        summary_free(s);
        return -1;
    }
    /* Baselines: the complete "none" run of the same prompt and seed. */
    for (int i = 0; i < s->count; i++) {
        SummaryRow *row = &s->rows[i];
        for (int j = 0; j < s->count; j++) {
            const SummaryRow *b = &s->rows[j];
            if (strcmp(b->strategy, "none") || strcmp(b->prompt_id, row->prompt_id) || b->seed != row->seed) continue;
            row->baseline = j;
            if (!row->failed && !b->failed && row->time_s > 0) row->speedup_wall = b->time_s / row->time_s;
            break;
        }
    }
    return 0;
}

void summary_free(Summary *s) {
    for (int i = 0; i < s->count; i++) free(s->rows[i].step_times);
    free(s->rows);
    free(s->plan);
    memset(s, 0, sizeof *s);
}

/* Writes via "<path>.<pid>.tmp" and rename: `plot` may run while a sweep finishes in the same folder. */
static FILE *open_tmp(const char *path, char *tmp, size_t cap, Error *err) {
    snprintf(tmp, cap, "%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) error_set(err, "%s: cannot write: %s", tmp, strerror(errno));
    return f;
}

static int close_tmp(FILE *f, const char *tmp, const char *path, Error *err) {
    int bad = ferror(f);
    if (fclose(f) || bad) {
        unlink(tmp);
        return error_set(err, "%s: write error", path);
    }
    if (rename(tmp, path)) {
        int e = errno;
        unlink(tmp);
        return error_set(err, "%s: cannot rename into place: %s", path, strerror(e));
    }
    return 0;
}

FILE *summary_open_tmp(const char *path, char *tmp, size_t cap, Error *err) { return open_tmp(path, tmp, cap, err); }

int summary_close_tmp(FILE *f, const char *tmp, const char *path, Error *err) { return close_tmp(f, tmp, path, err); }

int summary_write_tsv(const Summary *s, const char *path, Error *err) {
    char tmp[PATH_MAX + 32];
    FILE *f = open_tmp(path, tmp, sizeof tmp, err);
    if (!f) return -1;
    fputs("run_id\tstrategy\tparams\tprompt_id\tseed\tsteps\tcalls_computed\tcalls_total\thit_rate\twall_s\t"
          "speedup_wall\tspeedup_flops\tpsnr\tssim\tlpips\tstatus\ttime_s\tcpu_s\tload_avg\n",
          f);
    for (int i = 0; i < s->count; i++) {
        const SummaryRow *r = &s->rows[i];
        char hit[32], wall[32], sw[32], sf[32], psnr[32], ssim[32], lpips[32], time[32], cpu[32], load[32];
        summary_format(time, sizeof time, "%.3f", r->time_s);
        summary_format(cpu, sizeof cpu, "%.3f", r->cpu_s);
        summary_format(load, sizeof load, "%.2f", r->load_avg);
        summary_format(hit, sizeof hit, "%.4f", r->hit_rate);
        summary_format(wall, sizeof wall, "%.3f", r->wall_s);
        summary_format(sw, sizeof sw, "%.3f", r->speedup_wall);
        summary_format(sf, sizeof sf, "%.4f", r->speedup_flops);
        summary_format(psnr, sizeof psnr, "%.4f", r->psnr);
        summary_format(ssim, sizeof ssim, "%.6f", r->ssim);
        summary_format(lpips, sizeof lpips, "%.6f", r->lpips);
        fprintf(f, "%s\t%s\t%s\t%s\t%llu\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r->run_id,
                r->strategy, r->spec, r->prompt_id, (unsigned long long)r->seed, r->steps, r->calls_computed,
                r->calls_total, hit, wall, sw, sf, psnr, ssim, lpips, r->failed ? "failed" : "complete", time, cpu,
                load);
    }
    return close_tmp(f, tmp, path, err);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Aggregates */

/* The bootstrap intervals of one group's aggregates, over the pairs of its used runs (one run per pair). */
static int group_intervals(const Summary *s, SummaryGroup *G) {
    double *v = malloc((size_t)2 * (G->count ? G->count : 1) * sizeof *v);
    if (!v) return -1;
    double *const out[6] = {G->ci_speedup_wall, G->ci_speedup_flops, G->ci_psnr, G->ci_ssim, G->ci_lpips,
                            G->ci_latency};
    static const StatKind kinds[6] = {STAT_RATIO, STAT_MEAN, STAT_PSNR, STAT_MEAN, STAT_MEAN, STAT_MEAN};
    int rc = 0;
    for (int k = 0; k < 6 && !rc; k++) {
        int n = 0;
        for (int j = G->first; j < G->first + G->count; j++) {
            const SummaryRow *r = &s->rows[j];
            if (r->failed || r->baseline < 0 || s->rows[r->baseline].failed) continue;
            if (k == 0) {
                if (!(r->time_s > 0)) continue; /* the robust times the aggregates use */
                v[2 * n] = s->rows[r->baseline].time_s, v[2 * n + 1] = r->time_s, n++;
                continue;
            }
            double x = k == 1 ? r->speedup_flops : k == 2 ? r->psnr : k == 3 ? r->ssim : k == 4 ? r->lpips : r->time_s;
            if (!isnan(x)) v[n++] = x;
        }
        rc = stats_bootstrap(v, n, kinds[k], STATS_SEED + (uint64_t)k, &out[k][0], &out[k][1]);
    }
    free(v);
    return rc;
}

/* Is (prompt_id, seed) covered for G: a finished run of G, or a failed baseline (the sweep skips the pair)? */
static int pair_covered(const Summary *s, const SummaryGroup *G, const char *prompt_id, uint64_t seed) {
    for (int j = G->first; j < G->first + G->count; j++)
        if (s->rows[j].seed == seed && strcmp(s->rows[j].prompt_id, prompt_id) == 0) return 1;
    for (int j = 0; j < s->count; j++)
        if (s->rows[j].failed && s->rows[j].seed == seed && strcmp(s->rows[j].strategy, "none") == 0 &&
            strcmp(s->rows[j].prompt_id, prompt_id) == 0)
            return 1;
    return 0;
}

/* planned, in_plan and partial (rule: summary.h); a partial setting's aggregates become NAN. */
static void mark_partial(const Summary *s, SummaryGroup *G) {
    int missing = 0;
    G->planned = 0;
    for (int k = 0; k < s->plan_count; k++) {
        if (strcmp(s->plan[k].spec, G->spec)) continue;
        G->planned++;
        missing += !pair_covered(s, G, s->plan[k].prompt_id, s->plan[k].seed);
    }
    G->in_plan = s->plan_count == 0 || G->planned > 0;
    if (!G->planned) /* no plan, or a setting of an earlier plan: the baselines' pairs */
        for (int j = 0; j < s->count; j++)
            if (strcmp(s->rows[j].strategy, "none") == 0)
                missing += !pair_covered(s, G, s->rows[j].prompt_id, s->rows[j].seed);
    G->partial = missing > 0;
    if (G->partial)
        G->latency = G->base_latency = G->speedup_wall = G->speedup_flops = G->psnr = G->ssim = G->lpips = NAN;
}

int summary_groups(const Summary *s, SummaryGroup **groups, int *count, Error *err) {
    *groups = NULL;
    *count = 0;
    SummaryGroup *g = calloc((size_t)(s->count ? s->count : 1), sizeof *g);
    if (!g) return error_set(err, "out of memory");
    int n = 0;
    for (int i = 0; i < s->count;) {
        SummaryGroup *G = &g[n++];
        snprintf(G->strategy, sizeof G->strategy, "%s", s->rows[i].strategy);
        snprintf(G->spec, sizeof G->spec, "%s", s->rows[i].spec);
        G->first = i;
        while (i < s->count && strcmp(s->rows[i].spec, G->spec) == 0) i++;
        G->count = i - G->first;
        double wall = 0, base = 0, mse = 0, flops = 0, ssim = 0, lpips = 0;
        int n_mse = 0, n_ssim = 0, n_lpips = 0;
        for (int j = G->first; j < i; j++) {
            const SummaryRow *r = &s->rows[j];
            G->failed += r->failed;
            if (r->failed || r->baseline < 0 || s->rows[r->baseline].failed) continue;
            G->used++;
            wall += r->time_s;
            base += s->rows[r->baseline].time_s;
            flops += r->speedup_flops;
            /* PSNR = 10·log10(1/MSE), so MSE = 10^(-PSNR/10): exact for the video-level PSNR of each run. */
            if (!isnan(r->psnr)) mse += isinf(r->psnr) ? 0.0 : pow(10.0, -r->psnr / 10.0), n_mse++;
            if (!isnan(r->ssim)) ssim += r->ssim, n_ssim++;
            if (!isnan(r->lpips)) lpips += r->lpips, n_lpips++;
        }
        G->latency = G->used ? wall / G->used : NAN;
        G->base_latency = G->used ? base / G->used : NAN;
        G->speedup_wall = G->used && wall > 0 ? base / wall : NAN;
        G->speedup_flops = G->used ? flops / G->used : NAN;
        G->psnr = n_mse ? (mse > 0 ? 10.0 * log10(n_mse / mse) : INFINITY) : NAN;
        G->ssim = n_ssim ? ssim / n_ssim : NAN;
        G->lpips = n_lpips ? lpips / n_lpips : NAN;
        mark_partial(s, G);
        G->timing_flag = !G->partial && strcmp(G->strategy, "none") && !isnan(G->speedup_wall) &&
                         !isnan(G->speedup_flops) && fabs(G->speedup_wall / G->speedup_flops - 1.0) > SUMMARY_TIMING_MARGIN;
        if (G->partial) { /* no interval over a subset either */
            double *const ci[6] = {G->ci_latency, G->ci_speedup_wall, G->ci_speedup_flops, G->ci_psnr, G->ci_ssim,
                                   G->ci_lpips};
            for (int k = 0; k < 6; k++) ci[k][0] = ci[k][1] = NAN;
        } else if (group_intervals(s, G)) {
            free(g);
            return error_set(err, "out of memory");
        }
    }
    *groups = g;
    *count = n;
    return 0;
}

int summary_best(const Summary *s, const SummaryGroup *g, int ng, double min_speedup, StrategyBest **best, int *count,
                 int *report_row, Error *err) {
    *best = NULL;
    *count = 0;
    *report_row = -1;
    for (int i = 0; i < s->count && *report_row < 0; i++)
        if (strcmp(s->rows[i].strategy, "none") == 0 && !s->rows[i].failed) *report_row = i;
    StrategyBest *b = calloc((size_t)(ng ? ng : 1), sizeof *b);
    if (!b) return error_set(err, "out of memory");
    int n = 0;
    for (int i = 0; i < ng; i++) {
        if (strcmp(g[i].strategy, "none") == 0) continue;
        if (n == 0 || strcmp(b[n - 1].strategy, g[i].strategy)) {
            snprintf(b[n].strategy, sizeof b[n].strategy, "%s", g[i].strategy);
            b[n].best_group = b[n].best_row = -1;
            n++;
        }
    }
    for (int k = 0; k < n; k++) {
        int pick = -1, fast = -1;
        for (int i = 0; i < ng; i++) {
            if (strcmp(g[i].strategy, b[k].strategy) || isnan(g[i].psnr) || isnan(g[i].speedup_flops)) continue;
            if (g[i].speedup_flops >= min_speedup &&
                (pick < 0 || g[i].psnr > g[pick].psnr ||
                 (g[i].psnr == g[pick].psnr && g[i].speedup_flops > g[pick].speedup_flops)))
                pick = i;
            if (fast < 0 || g[i].speedup_flops > g[fast].speedup_flops ||
                (g[i].speedup_flops == g[fast].speedup_flops && g[i].psnr > g[fast].psnr))
                fast = i;
        }
        b[k].best_group = pick >= 0 ? pick : fast;
        if (b[k].best_group < 0) continue;
        const SummaryGroup *G = &g[b[k].best_group];
        for (int j = G->first; j < G->first + G->count; j++) {
            const SummaryRow *r = &s->rows[j];
            if (*report_row >= 0 && strcmp(r->prompt_id, s->rows[*report_row].prompt_id) == 0 &&
                r->seed == s->rows[*report_row].seed) {
                b[k].best_row = j;
                break;
            }
            if (b[k].best_row < 0 && !r->failed) b[k].best_row = j;
        }
    }
    *best = b;
    *count = n;
    return 0;
}

int summary_write_settings_tsv(const SummaryGroup *g, int ng, const char *path, Error *err) {
    char tmp[PATH_MAX + 32];
    FILE *f = open_tmp(path, tmp, sizeof tmp, err);
    if (!f) return -1;
    fputs("strategy\tparams\tpairs\tlatency\tlatency_lo\tlatency_hi\tspeedup_wall\tspeedup_wall_lo\tspeedup_wall_hi\t"
          "speedup_flops\tspeedup_flops_lo\tspeedup_flops_hi\tpsnr\tpsnr_lo\tpsnr_hi\tssim\tssim_lo\tssim_hi\tlpips\t"
          "lpips_lo\tlpips_hi\n",
          f);
    for (int i = 0; i < ng; i++) {
        const SummaryGroup *G = &g[i];
        const double v[18] = {G->latency, G->ci_latency[0], G->ci_latency[1], G->speedup_wall, G->ci_speedup_wall[0], G->ci_speedup_wall[1], G->speedup_flops,
                              G->ci_speedup_flops[0], G->ci_speedup_flops[1], G->psnr, G->ci_psnr[0], G->ci_psnr[1],
                              G->ssim, G->ci_ssim[0], G->ci_ssim[1], G->lpips, G->ci_lpips[0], G->ci_lpips[1]};
        fprintf(f, "%s\t%s\t%d", G->strategy, G->spec, G->used);
        for (int k = 0; k < 18; k++) {
            char buf[32];
            summary_format(buf, sizeof buf, k < 9 ? "%.4f" : "%.6f", v[k]);
            fprintf(f, "\t%s", buf);
        }
        fputc('\n', f);
    }
    return close_tmp(f, tmp, path, err);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Frame strip and report */

/* plots/strip.png: the report prompt's baseline (top row) and each strategy's best run below it. */
static int write_strip(const char *sweep_dir, const Summary *s, const StrategyBest *b, int nb, int report_row,
                       const char *templates_dir, int *rows_drawn, Error *err) {
    *rows_drawn = 0;
    if (report_row < 0) return 0;
    RunRecord *recs = calloc((size_t)nb + 1, sizeof *recs);
    const uint8_t **videos = calloc((size_t)nb + 1, sizeof *videos);
    int n = 0, rc = 0;
    if (!recs || !videos) {
        rc = error_set(err, "out of memory");
        goto done;
    }
    for (int k = -1; k < nb && !rc; k++) {
        int row = k < 0 ? report_row : b[k].best_row;
        if (row < 0) continue;
        if (record_read(s->rows[row].file, &recs[n], err)) {
            rc = -1;
            break;
        }
        if (recs[n].frames != recs[0].frames || recs[n].height != recs[0].height || recs[n].width != recs[0].width) {
            rc = error_set(err, "%s: video size differs from the baseline's", s->rows[row].file);
            n++;
            break;
        }
        videos[n] = recs[n].video;
        n++;
    }
    if (!rc && n) {
        Image img = {0};
        int scale = recs[0].height < 128 ? 2 : 1; /* 64-pixel frames are hard to judge at their own size */
        char path[PATH_MAX], frames_path[PATH_MAX];
        snprintf(path, sizeof path, "%s/plots/strip.png", sweep_dir);
        snprintf(frames_path, sizeof frames_path, "%s/plots/strip_frames.png", sweep_dir);
        rc = strip_compose(videos, n, recs[0].frames, recs[0].height, recs[0].width, scale, 4, &img, err);
        if (!rc) rc = image_write_png(frames_path, img.rgb, img.height, img.width, err);
        if (!rc) {
            /* Row labels by gnuplot; without it (or when it fails) the unlabelled frames are the strip. */
            char labels[4096] = "(", vars[8192] = "", num[96];
            size_t longest = 0;
            for (int k = -1, row = 0; k < nb; k++) {
                int r = k < 0 ? report_row : b[k].best_row;
                if (r < 0) continue;
                size_t used = strlen(labels);
                double centre = (row + 0.5) * (scale * recs[0].height + 4) - 2;
                char name[256];
                snprintf(name, sizeof name, "%s", k < 0 ? "full inference" : s->rows[r].spec);
                char *c = strstr(name, ",coeffs="); /* a file path: long, and in the report's caption anyway */
                if (c) {
                    char *next = strchr(c + 1, ',');
                    memmove(c, next ? next : c + strlen(c), strlen(next ? next : c + strlen(c)) + 1);
                }
                snprintf(labels + used, sizeof labels - used, "%s\"%s\" %.1f", row ? ", " : "", name, centre);
                if (strlen(name) > longest) longest = strlen(name);
                row++;
            }
            strncat(labels, ")", sizeof labels - strlen(labels) - 1);
            plots_var(vars, sizeof vars, "img", frames_path);
            plots_var(vars, sizeof vars, "labels", labels);
            snprintf(num, sizeof num, "; w=%d; h=%d; rows=%d; left=%d", img.width, img.height, n,
                     30 + 9 * (int)longest); /* about 8 pixels a character at 11 points, and room */
            strncat(vars, num, sizeof vars - strlen(vars) - 1);
            Error gp_err = {{0}};
            if (plots_gnuplot(templates_dir, "strip.gp", vars, path, &gp_err)) rc = image_write_png(path, img.rgb,
                                                                                                   img.height,
                                                                                                   img.width, err);
        }
        if (img.rgb) image_free(&img);
        if (!rc) *rows_drawn = n;
    }
done:
    if (recs)
        for (int i = 0; i < n; i++) record_free(&recs[i]);
    free(recs);
    free(videos);
    return rc;
}

static void md_num(char *buf, size_t cap, const char *fmt, double v) {
    if (isnan(v)) snprintf(buf, cap, "–");
    else if (isinf(v)) snprintf(buf, cap, "∞");
    else snprintf(buf, cap, fmt, v);
}

static int plot_exists(const char *sweep_dir, const char *name) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/plots/%s", sweep_dir, name);
    return access(path, F_OK) == 0;
}

static void md_ci(char *buf, size_t cap, const char *fmt, double v, const double ci[2]) {
    char a[32], lo[32], hi[32];
    md_num(a, sizeof a, fmt, v);
    if (isnan(v) || isnan(ci[0])) {
        snprintf(buf, cap, "%s", a);
        return;
    }
    md_num(lo, sizeof lo, fmt, ci[0]);
    md_num(hi, sizeof hi, fmt, ci[1]);
    snprintf(buf, cap, "%s [%s, %s]", a, lo, hi);
}

/* Uncertainty, worst pairs and the paired comparison of the best strategy (summary.h). */
static void write_report_statistics(FILE *f, const Summary *s, const SummaryGroup *g, int ng, const StrategyBest *b,
                                    int nb) {
    fprintf(f, "## Uncertainty\n\n");
    fprintf(f, "95%% bootstrap intervals over the prompt × seed pairs of each setting (percentile, %d resamples, "
               "fixed seed: the same runs give the same intervals). Per setting as `settings.tsv`.\n\n",
            STATS_RESAMPLES);
    fprintf(f, "| Setting | Pairs | Latency (s) | Speed-up (wall) | Speed-up (FLOPs) | PSNR ↑ | SSIM ↑ | LPIPS ↓ |\n");
    fprintf(f, "|:--|--:|--:|--:|--:|--:|--:|--:|\n");
    for (int i = 0; i < ng; i++) {
        const SummaryGroup *G = &g[i];
        if (strcmp(G->strategy, "none") == 0) continue;
        char lat[128], sw[128], sf[128], p[128], ss[128], l[128];
        md_ci(lat, sizeof lat, "%.2f", G->latency, G->ci_latency);
        md_ci(sw, sizeof sw, "%.2f", G->speedup_wall, G->ci_speedup_wall);
        md_ci(sf, sizeof sf, "%.2f", G->speedup_flops, G->ci_speedup_flops);
        md_ci(p, sizeof p, "%.2f", G->psnr, G->ci_psnr);
        md_ci(ss, sizeof ss, "%.4f", G->ssim, G->ci_ssim);
        md_ci(l, sizeof l, "%.4f", G->lpips, G->ci_lpips);
        fprintf(f, "| `%s` | %d | %s | %s | %s | %s | %s | %s |\n", G->spec, G->used, lat, sw, sf, p, ss, l);
    }
    fprintf(f, "\n## Worst prompts\n\nPer setting, the (prompt, seed) pairs of lowest PSNR (at most 3).\n\n");
    fprintf(f, "| Setting | Worst pairs: prompt/seed PSNR, SSIM, LPIPS |\n|:--|:--|\n");
    int *idx = malloc((size_t)(s->count ? s->count : 1) * sizeof *idx);
    for (int i = 0; idx && i < ng; i++) {
        const SummaryGroup *G = &g[i];
        if (strcmp(G->strategy, "none") == 0) continue;
        int n = 0;
        for (int j = G->first; j < G->first + G->count; j++)
            if (!isnan(s->rows[j].psnr)) idx[n++] = j;
        for (int a = 1; a < n; a++) /* by PSNR, lowest first: a setting has one run per pair */
            for (int c = a; c > 0 && s->rows[idx[c - 1]].psnr > s->rows[idx[c]].psnr; c--) {
                int t = idx[c];
                idx[c] = idx[c - 1];
                idx[c - 1] = t;
            }
        fprintf(f, "| `%s` |", G->spec);
        for (int k = 0; k < n && k < 3; k++) {
            const SummaryRow *r = &s->rows[idx[k]];
            char p[32], ss[32], l[32];
            md_num(p, sizeof p, "%.2f", r->psnr);
            md_num(ss, sizeof ss, "%.4f", r->ssim);
            md_num(l, sizeof l, "%.4f", r->lpips);
            fprintf(f, "%s `%s`/%llu %s dB, %s, %s", k ? ";" : "", r->prompt_id, (unsigned long long)r->seed, p, ss, l);
        }
        fprintf(f, "%s |\n", n ? "" : " –");
    }
    free(idx);
    fprintf(f, "\n");
    /* The best strategy: the one whose best setting has the highest PSNR (ties: higher FLOP speed-up). */
    int best = -1;
    for (int k = 0; k < nb; k++) {
        if (b[k].best_group < 0) continue;
        const SummaryGroup *G = &g[b[k].best_group], *B = best >= 0 ? &g[b[best].best_group] : NULL;
        if (!B || G->psnr > B->psnr || (G->psnr == B->psnr && G->speedup_flops > B->speedup_flops)) best = k;
    }
    if (best < 0 || nb < 2) return;
    fprintf(f, "## Paired comparison\n\n");
    fprintf(f, "The best strategy (`%s`: its best setting has the highest PSNR) against each other one, pair by pair "
               "at matched FLOP speed-up (`cachebench compare --help`): per pair each strategy's quality is "
               "interpolated along its settings (linear in log speed-up, only inside the measured range); Δ = mean "
               "of A − B over the pairs where both reach the speed-up, with its 95%% bootstrap interval; A wins: "
               "share of pairs where A is better (ties half).\n\n",
            b[best].strategy);
    int header = 1;
    for (int k = 0; k < nb; k++) {
        if (k == best || b[k].best_group < 0) continue;
        double sp[16];
        int ns = paired_default_speedups(s, b[best].strategy, s, b[k].strategy, sp, 16);
        if (!ns) {
            fprintf(f, "%s`%s` vs `%s`: their FLOP speed-up ranges do not overlap.\n", header ? "" : "\n",
                    b[best].strategy, b[k].strategy);
            header = 1;
            continue;
        }
        for (int i = 0; i < ns; i++) {
            PairedAtSpeedup r;
            if (paired_at_speedup(s, b[best].strategy, s, b[k].strategy, sp[i], &r, NULL)) continue;
            if (header) fprintf(f, "\n");
            paired_write_markdown(f, b[best].strategy, b[k].strategy, &r, 1, header);
            header = 0;
        }
    }
    fprintf(f, "\n");
}

static int write_report(const char *sweep_dir, const Summary *s, const SummaryGroup *g, int ng,
                        const StrategyBest *b, int nb, int report_row, int strip_rows, double min_speedup,
                        int opt_x_wall, Error *err) {
    char path[PATH_MAX], tmp[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/report.md", sweep_dir);
    FILE *f = open_tmp(path, tmp, sizeof tmp, err);
    if (!f) return -1;
    int failed = 0, prompts = 0;
    for (int i = 0; i < s->count; i++) {
        failed += s->rows[i].failed;
        if (strcmp(s->rows[i].strategy, "none") == 0) prompts++; /* baselines = prompt × seed pairs */
    }
    fprintf(f, "# Sweep report\n\n");
    char sha[48] = "";
    if (strlen(s->weights_sha256) == 64) snprintf(sha, sizeof sha, " (sha256 %.16s…)", s->weights_sha256);
    fprintf(f, "%d run%s (%d failed) in `runs/`, %d (prompt, seed) pair%s. Model `%s`, weights `%s`%s, %d steps, "
               "%d frames of %d×%d, backend %s on %s; cachebench %s.\n\n",
            s->count, s->count == 1 ? "" : "s", failed, prompts, prompts == 1 ? "" : "s", s->model, s->weights_path,
            sha, s->steps, s->frames, s->height, s->width, s->backend, s->device, s->version);
    if (s->unreadable)
        fprintf(f, "**%d run file(s) could not be read and are left out** (first: %s).\n\n", s->unreadable,
                s->unreadable_msg);
    fprintf(f, "## Results\n\n");
    fprintf(f, "| Method | Runs | Latency (s) | Speed-up (wall) | Speed-up (FLOPs) | PSNR ↑ | SSIM ↑ | LPIPS ↓ |\n");
    fprintf(f, "|:--|--:|--:|--:|--:|--:|--:|--:|\n");
    int flagged = 0, partial = 0;
    for (int i = 0; i < ng; i++) {
        const SummaryGroup *G = &g[i];
        char lat[32], sp[40], sf[32], psnr[32], ssim[32], lpips[32], runs[48];
        md_num(lat, sizeof lat, "%.2f", G->latency);
        md_num(sp, sizeof sp, "%.2f×", G->speedup_wall);
        md_num(sf, sizeof sf, "%.2f×", G->speedup_flops);
        md_num(psnr, sizeof psnr, "%.2f", G->psnr);
        md_num(ssim, sizeof ssim, "%.4f", G->ssim);
        md_num(lpips, sizeof lpips, "%.4f", G->lpips);
        if (G->timing_flag) {
            strncat(sp, " ⚠", sizeof sp - strlen(sp) - 1);
            flagged++;
        }
        if (G->planned > 0) snprintf(runs, sizeof runs, "%d/%d", G->count, G->planned);
        else snprintf(runs, sizeof runs, "%d", G->count);
        if (G->partial) {
            partial++;
            snprintf(lat, sizeof lat, "partial");
            snprintf(sp, sizeof sp, "partial");
            snprintf(sf, sizeof sf, "partial");
            snprintf(psnr, sizeof psnr, "partial");
            snprintf(ssim, sizeof ssim, "partial");
            snprintf(lpips, sizeof lpips, "partial");
        }
        char name[300];
        if (strcmp(G->strategy, "none") == 0) snprintf(name, sizeof name, "none (full inference)");
        else snprintf(name, sizeof name, "%s", G->spec);
        fprintf(f, "| %s%s | %s | %s | %s | %s | %s | %s | %s |\n", name, G->failed ? " (some runs failed)" : "", runs,
                lat, sp, sf, psnr, ssim, lpips);
    }
    char margin[32];
    strategy_format_double(100.0 * SUMMARY_TIMING_MARGIN, margin, sizeof margin);
    fprintf(f, "\nOne row per setting, averaged over the (prompt, seed) pairs of its complete runs. Runs: finished / "
               "planned (planned from the sweep's plan, `plan.tsv`; without one, the baselines' pairs). A setting "
               "that has not finished every planned pair shows \"partial\": means over a subset would not compare "
               "with the other rows. Latency: robust seconds of one sampling run: each step counts the median time "
               "(min of wall and CPU time) of the steps of equal work (same FLOPs, same branches computed) over all "
               "runs of the setting, so that a slow run, a busy stretch of the machine or the first calls of a "
               "process do not move it (raw wall times, CPU times and load averages are in `summary.tsv`). "
               "Speed-up (wall): mean baseline latency / mean latency over the same pairs. Speed-up (FLOPs): full "
               "inference FLOPs / FLOPs spent, the figure that does not depend on the machine. ⚠: the two speed-ups "
               "differ by more than %s%% (time the FLOP count does not see, such as signals or profiling, or "
               "disturbed timing). PSNR: 10·log10(1/MSE) with the MSE over all pixels of all those videos against "
               "their baselines (∞: identical to full inference). SSIM, LPIPS: means of the per-video values.",
            margin);
    if (!s->lpips_available)
        fprintf(f, " LPIPS: unavailable (a build without the LPIPS weights, or frames smaller than 31×31), shown as "
                   "–.");
    fprintf(f, "\n\n");
    if (flagged) fprintf(f, "%d setting%s flagged ⚠.\n\n", flagged, flagged == 1 ? "" : "s");
    if (partial)
        fprintf(f, "%d setting%s partial: the sweep has not finished %s.\n\n", partial, partial == 1 ? " is" : "s are",
                partial == 1 ? "it" : "them");
    double load_lo = NAN, load_hi = NAN;
    for (int i = 0; i < s->count; i++) {
        double l = s->rows[i].load_avg;
        if (isnan(l)) continue;
        if (isnan(load_lo) || l < load_lo) load_lo = l;
        if (isnan(load_hi) || l > load_hi) load_hi = l;
    }
    if (!isnan(load_lo))
        fprintf(f, "Machine load (1-minute load average) during the runs: %.2f to %.2f.\n\n", load_lo, load_hi);

    fprintf(f, "## Best setting per strategy\n\n");
    char ms[32];
    strategy_format_double(min_speedup, ms, sizeof ms);
    fprintf(f, "Rule: the highest-PSNR setting among those with a FLOP speed-up ≥ %s (FLOPs, not wall time, so that "
               "the choice does not depend on the load of the machine); when none reaches %s, the setting with the "
               "highest FLOP speed-up.\n\n",
            ms, ms);
    fprintf(f, "| Strategy | Best setting | Speed-up (wall) | Speed-up (FLOPs) | PSNR ↑ | SSIM ↑ | LPIPS ↓ |\n");
    fprintf(f, "|:--|:--|--:|--:|--:|--:|--:|\n");
    for (int k = 0; k < nb; k++) {
        if (b[k].best_group < 0) {
            fprintf(f, "| %s | (no setting with metrics) | – | – | – | – | – |\n", b[k].strategy);
            continue;
        }
        const SummaryGroup *G = &g[b[k].best_group];
        char sw[32], sf[32], psnr[32], ssim[32], lpips[32];
        md_num(sw, sizeof sw, "%.2f×", G->speedup_wall);
        md_num(sf, sizeof sf, "%.2f×", G->speedup_flops);
        md_num(psnr, sizeof psnr, "%.2f", G->psnr);
        md_num(ssim, sizeof ssim, "%.4f", G->ssim);
        md_num(lpips, sizeof lpips, "%.4f", G->lpips);
        fprintf(f, "| %s | `%s` | %s | %s | %s | %s | %s |\n", b[k].strategy, G->spec, sw, sf, psnr, ssim, lpips);
    }
    fprintf(f, "\n");

    write_report_statistics(f, s, g, ng, b, nb);

    if (strip_rows > 0) {
        const SummaryRow *rep = &s->rows[report_row];
        fprintf(f, "## Frames\n\n![frames](plots/strip.png)\n\n");
        fprintf(f, "Prompt `%s` \"%s\", seed %llu; frames left to right, rows top to bottom: full inference", rep->prompt_id,
                rep->prompt, (unsigned long long)rep->seed);
        for (int k = 0; k < nb; k++)
            if (b[k].best_row >= 0) fprintf(f, ", `%s`", s->rows[b[k].best_row].spec);
        fprintf(f, ".\n\n");
    }

    fprintf(f, "## Plots\n\n");
    static const char *const metrics[3][2] = {{"psnr", "PSNR"}, {"ssim", "SSIM"}, {"lpips", "LPIPS"}};
    int any = 0;
    for (int m = 0; m < 3; m++) {
        char name[64];
        snprintf(name, sizeof name, "tradeoff_%s.png", metrics[m][0]);
        if (!plot_exists(sweep_dir, name)) continue;
        fprintf(f, "![speed-up vs %s](plots/%s)\n\n", metrics[m][1], name);
        any = 1;
    }
    if (any)
        fprintf(f, "Each point is one setting (means as in the table) at its %s speed-up; lines join each strategy's "
                   "Pareto front. Infinite PSNR (identical output) is left off.\n\n",
                opt_x_wall ? "wall-clock" : "FLOP");
    for (int k = 0; k < nb; k++) {
        char name[128];
        snprintf(name, sizeof name, "steps_%s.png", b[k].strategy);
        if (plot_exists(sweep_dir, name))
            fprintf(f, "![%s, best run step by step](plots/%s)\n\n", b[k].strategy, name);
        snprintf(name, sizeof name, "timeline_%s.png", b[k].strategy);
        if (plot_exists(sweep_dir, name)) fprintf(f, "![%s, computed and reused steps](plots/%s)\n\n", b[k].strategy, name);
    }
    if (failed) {
        fprintf(f, "## Failed runs\n\nNon-finite model output; kept in `runs/` with status failed, left out of the "
                   "means.\n\n");
        for (int i = 0; i < s->count; i++)
            if (s->rows[i].failed)
                fprintf(f, "- `%s`: failed at step %d\n", s->rows[i].run_id, s->rows[i].failed_step);
        fprintf(f, "\n");
    }
    fprintf(f, "Made from the run files alone; redraw with `cachebench plot %s`.\n", sweep_dir);
    return close_tmp(f, tmp, path, err);
}

int summary_render(const char *sweep_dir, const RenderOptions *opt, RenderResult *res, Error *err) {
    memset(res, 0, sizeof *res);
    const double min_speedup = opt && opt->min_speedup > 0 ? opt->min_speedup : 1.5;
    char templates[PATH_MAX], path[PATH_MAX];
    plots_templates_dir(opt ? opt->templates_dir : NULL, templates, sizeof templates);
    Summary s;
    SummaryGroup *g = NULL;
    StrategyBest *b = NULL;
    int ng = 0, nb = 0, report_row = -1, strip_rows = 0, rc = -1;
    if (summary_load(sweep_dir, &s, err)) return -1;
    res->runs = s.count;
    res->unreadable = s.unreadable;
    snprintf(res->unreadable_msg, sizeof res->unreadable_msg, "%s", s.unreadable_msg);
    for (int i = 0; i < s.count; i++) res->failed += s.rows[i].failed;
    snprintf(path, sizeof path, "%s/plots", sweep_dir);
    if (mkdir(path, 0777) && errno != EEXIST) {
        error_set(err, "%s: cannot create folder: %s", path, strerror(errno));
        goto done;
    }
    snprintf(path, sizeof path, "%s/summary.tsv", sweep_dir);
    if (summary_write_tsv(&s, path, err)) goto done;
    if (summary_groups(&s, &g, &ng, err)) goto done;
    if (!(opt && opt->all)) { /* settings of an earlier plan stay in summary.tsv but leave the report and plots */
        int kept = 0;
        for (int i = 0; i < ng; i++)
            if (g[i].in_plan) g[kept++] = g[i];
        ng = kept;
    }
    if (summary_best(&s, g, ng, min_speedup, &b, &nb, &report_row, err)) goto done;
    snprintf(path, sizeof path, "%s/settings.tsv", sweep_dir);
    if (summary_write_settings_tsv(g, ng, path, err)) goto done;
    if (write_strip(sweep_dir, &s, b, nb, report_row, templates, &strip_rows, err)) goto done;
    res->plots += strip_rows > 0;
    /* The report is written even when gnuplot fails, then the plotting error is returned. */
    Error plot_err = {{0}};
    int drawn = 0;
    int prc = plots_draw(sweep_dir, &s, g, ng, b, nb, report_row, templates, opt && opt->x_wall, &drawn, &plot_err);
    res->plots += drawn;
    if (write_report(sweep_dir, &s, g, ng, b, nb, report_row, strip_rows, min_speedup, opt && opt->x_wall, err))
        goto done;
    if (prc) {
        *err = plot_err;
        goto done;
    }
    rc = 0;
done:
    free(g);
    free(b);
    summary_free(&s);
    return rc;
}
