/* Sweep plots: data files and gnuplot runs (what is drawn: plots.h). */
#include "results/plots.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "results/record.h"
#include "strategies/strategy.h"

void plots_templates_dir(const char *given, char *buf, size_t cap) {
    if (given) {
        snprintf(buf, cap, "%s", given);
        return;
    }
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = '\0';
        char dir[PATH_MAX + 32], probe[PATH_MAX + 64];
        /* The repository's build/ folder, then an installed $PREFIX/bin (make install). */
        const char *const rel[] = {"../plots", "../share/cachebench/plots"};
        char *bin = dirname(exe);
        for (int i = 0; i < 2; i++) {
            snprintf(dir, sizeof dir, "%s/%s", bin, rel[i]);
            snprintf(probe, sizeof probe, "%s/tradeoff.gp", dir);
            if (access(probe, R_OK) == 0) {
                snprintf(buf, cap, "%s", dir);
                return;
            }
        }
    }
    snprintf(buf, cap, "plots");
}

void plots_var(char *buf, size_t cap, const char *name, const char *value) {
    size_t used = strlen(buf);
    if (used + 1 >= cap) return;
    int w = snprintf(buf + used, cap - used, "%s%s='", used ? "; " : "", name);
    if (w < 0 || (size_t)w >= cap - used) return;
    used += (size_t)w;
    /* In a single-quoted gnuplot string only the quote is special; it is written twice. */
    for (const char *p = value; *p && used + 3 < cap; p++) {
        if (*p == '\'') buf[used++] = '\'';
        buf[used++] = *p;
    }
    if (used + 1 < cap) buf[used++] = '\'';
    buf[used] = '\0';
}

int plots_gnuplot(const char *templates_dir, const char *template_name, const char *vars, const char *png, Error *err) {
    char script[PATH_MAX], tmp[PATH_MAX], all[16384];
    snprintf(script, sizeof script, "%s/%s", templates_dir, template_name);
    if (access(script, R_OK) != 0)
        return error_set(err, "%s: plot template not found (templates are in the repository's plots/ folder)", script);
    /* A per-process temporary name: `cachebench plot` may redraw while a sweep finishes in the same folder. */
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", png, (long)getpid());
    snprintf(all, sizeof all, "%s", vars);
    plots_var(all, sizeof all, "out", tmp);

    int pipefd[2];
    if (pipe(pipefd)) return error_set(err, "pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        close(pipefd[0]);
        close(pipefd[1]);
        return error_set(err, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        /* gnuplot talks on stderr (warnings about empty ranges and the like): collected, shown only on failure. */
        dup2(pipefd[1], 2);
        dup2(pipefd[1], 1);
        close(pipefd[0]);
        close(pipefd[1]);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, 0);
        execlp("gnuplot", "gnuplot", "-e", all, script, (char *)NULL);
        _exit(127);
    }
    close(pipefd[1]);
    char msg[4096];
    size_t len = 0;
    ssize_t got;
    char sink[1024];
    while ((got = read(pipefd[0], len + 1 < sizeof msg ? msg + len : sink,
                       len + 1 < sizeof msg ? sizeof msg - 1 - len : sizeof sink)) > 0)
        if (len + 1 < sizeof msg) len += (size_t)got;
    msg[len] = '\0';
    close(pipefd[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return error_set(err, "waitpid: %s", strerror(errno));
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (code == 127)
        return error_set(err, "gnuplot not found: install it (Debian: apt-get install gnuplot-nox) and run "
                              "`cachebench plot DIR`");
    if (code != 0 || access(tmp, F_OK) != 0) {
        unlink(tmp);
        return error_set(err, "gnuplot %s failed (exit %d) drawing %s: %s", script, code, png, msg);
    }
    if (rename(tmp, png)) {
        int e = errno;
        unlink(tmp);
        return error_set(err, "%s: cannot rename into place: %s", png, strerror(e));
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------------------------
 * Data files */

static void put_num(FILE *f, double v) {
    if (isnan(v) || isinf(v)) fputs(" NaN", f);
    else fprintf(f, " %.9g", v);
}

/* The parameters of a spec ("thresh=0.05,warmup=10"), or the spec when it has none. */
static const char *spec_params(const char *spec) {
    const char *c = strchr(spec, ':');
    return c ? c + 1 : spec;
}

/* A short label for setting i: only the parameters that differ between the settings of its strategy
 * ("thresh=0.1" rather than "thresh=0.1,variant=e,warmup=1,cutoff=1,coeffs=models/tiny/..."). */
static void setting_label(const SummaryGroup *g, int ng, int i, char *buf, size_t cap) {
    StrategyParams p, q;
    buf[0] = '\0';
    if (strategy_parse_spec(g[i].spec, &p, NULL)) {
        snprintf(buf, cap, "%s", spec_params(g[i].spec));
        return;
    }
    for (int k = 0; k < p.count; k++) {
        int varies = 0;
        for (int j = 0; j < ng && !varies; j++) {
            if (j == i || strcmp(g[j].strategy, g[i].strategy) || strategy_parse_spec(g[j].spec, &q, NULL)) continue;
            const char *v = strategy_param_text(&q, p.keys[k]);
            varies = !v || strcmp(v, p.values[k]) != 0;
        }
        if (!varies) continue;
        size_t used = strlen(buf);
        snprintf(buf + used, cap - used, "%s%s=%s", used ? "," : "", p.keys[k], p.values[k]);
    }
    if (!buf[0]) snprintf(buf, cap, "%s", spec_params(g[i].spec));
}

typedef struct {
    double x, y;
    int group;
} Point;

static int cmp_point_x(const void *a, const void *b) {
    const Point *p = a, *q = b;
    return p->x < q->x ? -1 : p->x > q->x ? 1 : (p->y > q->y ? -1 : p->y < q->y);
}

static double metric_of(const SummaryGroup *g, int m) { return m == 0 ? g->psnr : m == 1 ? g->ssim : g->lpips; }

static double speedup_of(const SummaryGroup *g, int x_wall) { return x_wall ? g->speedup_wall : g->speedup_flops; }

/* The warm-up of setting i ("" when its spec has none). */
static void warmup_of(const SummaryGroup *g, char *buf, size_t cap) {
    StrategyParams p;
    const char *v = strategy_parse_spec(g->spec, &p, NULL) ? NULL : strategy_param_text(&p, "warmup");
    snprintf(buf, cap, "%s", v ? v : "");
}

/* Does strategy s run with more than one warm-up among the settings? Then each warm-up is a series of its own. */
static int warmups_vary(const SummaryGroup *g, int ng, const char *s) {
    char first[128] = "", w[128];
    int seen = 0;
    for (int i = 0; i < ng; i++) {
        if (strcmp(g[i].strategy, s)) continue;
        warmup_of(&g[i], w, sizeof w);
        if (!seen++) snprintf(first, sizeof first, "%s", w);
        else if (strcmp(w, first)) return 1;
    }
    return 0;
}

/* One block of the trade-off files: the settings of `strategy` (of one warm-up value when warmup is not NULL), their
 * error bars, and the block's line: the Pareto front (no faster setting is better), or, for one warm-up value,
 * every setting by speed-up (a threshold sweep at that warm-up). Nothing is written when no setting has a value. */
static int write_series(FILE *fa, FILE *ff, FILE *fc, const SummaryGroup *g, int ng, int m, int x_wall,
                        const char *strategy, const char *warmup, Point *pts, int *blocks, const char *x_name,
                        const char *metric_name, Error *err) {
    const int lower_better = m == 2;
    char w[128];
    int n = 0;
    for (int i = 0; i < ng; i++) {
        double y = metric_of(&g[i], m);
        double x = speedup_of(&g[i], x_wall);
        if (strcmp(g[i].strategy, strategy) || !isfinite(y) || !isfinite(x)) continue;
        if (warmup && (warmup_of(&g[i], w, sizeof w), strcmp(w, warmup))) continue;
        pts[n++] = (Point){x, lower_better ? -y : y, i};
    }
    if (!n) return 0;
    char title[256];
    if (warmup) snprintf(title, sizeof title, "%s/warmup=%s", strategy, warmup);
    else snprintf(title, sizeof title, "%s", strategy);
    const char *sep = *blocks ? "\n\n" : "";
    fprintf(fa, "%s%s %s %s setting\n", sep, title, x_name, metric_name);
    fprintf(ff, "%s%s %s %s\n", sep, title, x_name, metric_name);
    fprintf(fc, "%s%s %s %s speedup_lo speedup_hi %s_lo %s_hi\n", sep, title, x_name, metric_name, metric_name,
            metric_name);
    for (int i = 0; i < n; i++) {
        char label[256];
        setting_label(g, ng, pts[i].group, label, sizeof label);
        fprintf(fa, "%.9g %.9g %s\n", pts[i].x, lower_better ? -pts[i].y : pts[i].y, label);
        const SummaryGroup *G = &g[pts[i].group];
        const double *ci = m == 0 ? G->ci_psnr : m == 1 ? G->ci_ssim : G->ci_lpips;
        /* An interval reaching inf (a resample of identical videos) is drawn up to the point. */
        double y = lower_better ? -pts[i].y : pts[i].y, lo = isfinite(ci[0]) ? ci[0] : y,
               hi = isfinite(ci[1]) ? ci[1] : y;
        const double *xci = x_wall ? G->ci_speedup_wall : G->ci_speedup_flops;
        double xlo = isfinite(xci[0]) ? xci[0] : pts[i].x, xhi = isfinite(xci[1]) ? xci[1] : pts[i].x;
        fprintf(fc, "%.9g %.9g %.9g %.9g %.9g %.9g\n", pts[i].x, y, xlo, xhi, lo, hi);
    }
    /* Front: walk from the fastest setting down, keeping each that beats every faster one. */
    qsort(pts, (size_t)n, sizeof *pts, cmp_point_x);
    int *on = calloc((size_t)n, sizeof *on);
    if (!on) return error_set(err, "out of memory");
    double top = -INFINITY;
    for (int i = n - 1; i >= 0; i--)
        if (warmup || pts[i].y > top) on[i] = 1, top = fmax(top, pts[i].y);
    for (int i = 0; i < n; i++)
        if (on[i]) fprintf(ff, "%.9g %.9g\n", pts[i].x, lower_better ? -pts[i].y : pts[i].y);
    free(on);
    (*blocks)++;
    return 0;
}

static int write_tradeoff(const char plots_dir[2100], const char *metric_name, int m, const SummaryGroup *g, int ng,
                          const StrategyBest *best, int nbest, int x_wall, Error *err) {
    char path_all[PATH_MAX], path_front[PATH_MAX], path_ci[PATH_MAX];
    snprintf(path_all, sizeof path_all, "%s/tradeoff_%s.dat", plots_dir, metric_name);
    snprintf(path_front, sizeof path_front, "%s/front_%s.dat", plots_dir, metric_name);
    snprintf(path_ci, sizeof path_ci, "%s/ci_%s.dat", plots_dir, metric_name);
    FILE *fa = fopen(path_all, "w"), *ff = fopen(path_front, "w"), *fc = fopen(path_ci, "w");
    Point *pts = malloc((size_t)(ng ? ng : 1) * sizeof *pts);
    int blocks = 0, rc = 0;
    if (!fa || !ff || !fc || !pts) {
        rc = error_set(err, "%s: cannot write: %s", !fa ? path_all : !ff ? path_front : path_ci, strerror(errno));
        goto done;
    }
    fprintf(fc, "# 95%% bootstrap intervals of tradeoff_%s.dat (same blocks and rows): speed-up %s lo hi of each\n",
            metric_name, metric_name);
    const char *x_name = x_wall ? "speedup_wall" : "speedup_flops";
    fprintf(fa, "# %s vs %s per setting, means over prompts and seeds; one block per strategy (per warm-up value of a "
                "strategy swept over several)\n", x_name, metric_name);
    fprintf(ff, "# line of each block: its Pareto front by speed-up, or, for one warm-up value of a strategy swept "
                "over several, all its settings by speed-up\n");
    /* Series: one per strategy, or one per (strategy, warm-up) when a threshold x warm-up grid varies the warm-up. */
    for (int b = 0; b < nbest; b++) {
        const int by_warmup = warmups_vary(g, ng, best[b].strategy);
        for (int first = 0; first < ng; first++) {
            char warmup[128] = "", w[128];
            if (strcmp(g[first].strategy, best[b].strategy)) continue;
            if (by_warmup) { /* a series starts at the first setting of each warm-up value */
                warmup_of(&g[first], warmup, sizeof warmup);
                int earlier = 0;
                for (int j = 0; j < first && !earlier; j++)
                    if (!strcmp(g[j].strategy, best[b].strategy))
                        warmup_of(&g[j], w, sizeof w), earlier = !strcmp(w, warmup);
                if (earlier) continue;
            }
            if ((rc = write_series(fa, ff, fc, g, ng, m, x_wall, best[b].strategy, by_warmup ? warmup : NULL, pts,
                                   &blocks, x_name, metric_name, err)))
                goto done;
            if (!by_warmup) break; /* the whole strategy was one series */
        }
    }
done:
    if (fa && fclose(fa) && !rc) rc = error_set(err, "%s: write error", path_all);
    if (ff && fclose(ff) && !rc) rc = error_set(err, "%s: write error", path_front);
    if (fc && fclose(fc) && !rc) rc = error_set(err, "%s: write error", path_ci);
    free(pts);
    return rc ? -1 : blocks;
}

/* steps_<strategy>.dat: the per-step trace of one run. */
static int write_steps(const char *path, const RunRecord *r, Error *err) {
    FILE *f = fopen(path, "w");
    if (!f) return error_set(err, "%s: cannot write: %s", path, strerror(errno));
    fprintf(f, "# %s, prompt %s seed %llu: %s\n", r->strategy_spec, r->prompt_id, (unsigned long long)r->seed,
            r->failed ? "failed" : "complete");
    fprintf(f, "# step sigma computed_cond computed_uncond signal_cond accumulator_cond threshold_cond k_cond "
               "signal_uncond accumulator_uncond threshold_uncond k_uncond\n");
    int n = r->failed ? r->failed_step + 1 : r->steps;
    for (int i = 0; i < n && i < r->steps; i++) {
        const StepRecord *s = &r->step[i];
        fprintf(f, "%d %.6g %d %d", i, s->sigma, s->computed[0], s->computed[1]);
        for (int b = 0; b < 2; b++) {
            put_num(f, s->signal[b]);
            put_num(f, s->accumulator[b]);
            put_num(f, s->threshold[b]);
            put_num(f, s->k[b]);
        }
        fputc('\n', f);
    }
    if (fclose(f)) return error_set(err, "%s: write error", path);
    return 0;
}

int plots_draw(const char *sweep_dir, const Summary *s, const SummaryGroup *g, int ng, const StrategyBest *best,
               int nbest, int report_row, const char *templates_dir, int x_wall, int *drawn, Error *err) {
    char plots_dir[2100], dat[PATH_MAX], dat2[PATH_MAX], png[PATH_MAX], vars[8192];
    snprintf(plots_dir, sizeof plots_dir, "%s/plots", sweep_dir);
    *drawn = 0;
    int rc = 0;

    static const char *const metric_names[3] = {"psnr", "ssim", "lpips"};
    static const char *const metric_labels[3] = {"PSNR vs baseline (dB)", "SSIM vs baseline",
                                                 "LPIPS vs baseline (lower is better)"};
    for (int m = 0; m < 3 && !rc; m++) {
        if (m == 2 && !s->lpips_available) continue;
        int blocks = write_tradeoff(plots_dir, metric_names[m], m, g, ng, best, nbest, x_wall, err);
        if (blocks < 0) return -1;
        if (blocks == 0) continue; /* nothing but the baseline: no trade-off to draw */
        snprintf(dat, sizeof dat, "%s/tradeoff_%s.dat", plots_dir, metric_names[m]);
        snprintf(dat2, sizeof dat2, "%s/front_%s.dat", plots_dir, metric_names[m]);
        snprintf(png, sizeof png, "%s/tradeoff_%s.png", plots_dir, metric_names[m]);
        vars[0] = '\0';
        plots_var(vars, sizeof vars, "data", dat);
        plots_var(vars, sizeof vars, "front", dat2);
        snprintf(dat2, sizeof dat2, "%s/ci_%s.dat", plots_dir, metric_names[m]);
        plots_var(vars, sizeof vars, "ci", dat2);
        plots_var(vars, sizeof vars, "ylabel", metric_labels[m]);
        if (m == 1) snprintf(vars + strlen(vars), sizeof vars - strlen(vars), "; ymax=1"); /* SSIM <= 1 */
        plots_var(vars, sizeof vars, "xlabel",
                  x_wall ? "speed-up, wall clock (robust time; full inference = 1)"
                         : "speed-up, FLOPs (full inference FLOPs / FLOPs spent)");
        if (plots_gnuplot(templates_dir, "tradeoff.gp", vars, png, err)) return -1;
        (*drawn)++;
    }

    for (int b = 0; b < nbest; b++) {
        const char *name = best[b].strategy;
        /* Per-step trace of the best run. */
        if (best[b].best_row >= 0) {
            const SummaryRow *row = &s->rows[best[b].best_row];
            RunRecord r;
            if (record_read(row->file, &r, err)) return -1;
            snprintf(dat, sizeof dat, "%s/steps_%s.dat", plots_dir, name);
            snprintf(png, sizeof png, "%s/steps_%s.png", plots_dir, name);
            char title[1024], steps[32];
            snprintf(title, sizeof title, "%s   prompt %s, seed %llu%s", r.strategy_spec, r.prompt_id,
                     (unsigned long long)r.seed, r.failed ? " (FAILED)" : "");
            snprintf(steps, sizeof steps, "%d", r.steps);
            int has_signal = 0, has_acc = 0, has_k = 0; /* no empty panels: static has no signal, none nothing */
            for (int t = 0; t < r.steps; t++)
                for (int br = 0; br < 2; br++) {
                    has_signal |= isfinite(r.step[t].signal[br]) || isfinite(r.step[t].k[br]);
                    has_k |= isfinite(r.step[t].k[br]);
                    has_acc |= isfinite(r.step[t].accumulator[br]) || isfinite(r.step[t].threshold[br]);
                }
            rc = write_steps(dat, &r, err);
            record_free(&r);
            if (rc) return -1;
            vars[0] = '\0';
            plots_var(vars, sizeof vars, "data", dat);
            plots_var(vars, sizeof vars, "title", title);
            snprintf(vars + strlen(vars), sizeof vars - strlen(vars), "; steps=%s; has_signal=%d; has_acc=%d; has_k=%d",
                     steps, has_signal, has_acc, has_k);
            if (plots_gnuplot(templates_dir, "steps.gp", vars, png, err)) return -1;
            (*drawn)++;
        }
        /* Timeline: every setting of the strategy on the report prompt. */
        if (report_row < 0) continue;
        const SummaryRow *rep = &s->rows[report_row];
        snprintf(dat, sizeof dat, "%s/timeline_%s.dat", plots_dir, name);
        FILE *f = fopen(dat, "w");
        if (!f) return error_set(err, "%s: cannot write: %s", dat, strerror(errno));
        fprintf(f, "# %s on prompt %s seed %llu: step, row, state (2 both branches computed, 1 one, 0 none), "
                   "setting\n",
                name, rep->prompt_id, (unsigned long long)rep->seed);
        int nrows = 0, steps = 0;
        for (int i = 0; i < ng && !rc; i++) {
            if (strcmp(g[i].strategy, name)) continue;
            for (int j = g[i].first; j < g[i].first + g[i].count; j++) {
                const SummaryRow *row = &s->rows[j];
                if (strcmp(row->prompt_id, rep->prompt_id) || row->seed != rep->seed) continue;
                RunRecord r;
                if (record_read(row->file, &r, err)) {
                    rc = -1;
                    break;
                }
                int n = r.failed ? r.failed_step + 1 : r.steps;
                char label[256];
                setting_label(g, ng, i, label, sizeof label);
                for (int t = 0; t < n && t < r.steps; t++)
                    fprintf(f, "%d %d %d %s%s\n", t, nrows, r.step[t].computed[0] + r.step[t].computed[1], label,
                            r.failed ? "(failed)" : "");
                if (r.steps > steps) steps = r.steps;
                record_free(&r);
                nrows++;
                break;
            }
        }
        if (fclose(f) && !rc) rc = error_set(err, "%s: write error", dat);
        if (rc) return -1;
        if (!nrows) continue;
        snprintf(png, sizeof png, "%s/timeline_%s.png", plots_dir, name);
        char title[512];
        snprintf(title, sizeof title, "%s: computed / reused per step (prompt %s, seed %llu)", name, rep->prompt_id,
                 (unsigned long long)rep->seed);
        vars[0] = '\0';
        plots_var(vars, sizeof vars, "data", dat);
        plots_var(vars, sizeof vars, "title", title);
        snprintf(vars + strlen(vars), sizeof vars - strlen(vars), "; nrows=%d; steps=%d", nrows, steps);
        if (plots_gnuplot(templates_dir, "timeline.gp", vars, png, err)) return -1;
        (*drawn)++;
    }
    return 0;
}
