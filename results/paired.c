/* Paired comparisons at matched speed-up and matched quality (definitions: paired.h). */
#include "results/paired.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const paired_metric_names[PAIRED_METRICS] = {"psnr", "ssim", "lpips"};

static double row_metric(const SummaryRow *r, int metric) {
    return metric == PAIRED_PSNR ? r->psnr : metric == PAIRED_SSIM ? r->ssim : r->lpips;
}

static int has_strategy(const Summary *s, const char *strategy) {
    for (int i = 0; i < s->count; i++)
        if (strcmp(s->rows[i].strategy, strategy) == 0) return 1;
    return 0;
}

/* The distinct (prompt, seed) pairs of a's runs of strategy_a that b also has runs of strategy_b for, as indices
 * of a's rows (one representative row each). */
static int shared_pairs(const Summary *a, const char *sa, const Summary *b, const char *sb, int *out) {
    int n = 0;
    for (int i = 0; i < a->count; i++) {
        const SummaryRow *r = &a->rows[i];
        if (strcmp(r->strategy, sa)) continue;
        int seen = 0;
        for (int k = 0; k < n && !seen; k++)
            seen = strcmp(a->rows[out[k]].prompt_id, r->prompt_id) == 0 && a->rows[out[k]].seed == r->seed;
        if (seen) continue;
        for (int j = 0; j < b->count; j++) {
            const SummaryRow *q = &b->rows[j];
            if (strcmp(q->strategy, sb) == 0 && strcmp(q->prompt_id, r->prompt_id) == 0 && q->seed == r->seed) {
                out[n++] = i;
                break;
            }
        }
    }
    return n;
}

int paired_check(const Summary *a, const char *strategy_a, const Summary *b, const char *strategy_b, Error *err) {
    if (strcmp(a->model, b->model))
        return error_set(err, "the sweeps ran different models (%s and %s)", a->model, b->model);
    if (strcmp(a->weights_sha256, b->weights_sha256))
        return error_set(err, "the sweeps ran different weights (sha256 %.16s… and %.16s…)", a->weights_sha256,
                         b->weights_sha256);
    if (a->steps != b->steps) return error_set(err, "the sweeps ran different step counts (%d and %d)", a->steps, b->steps);
    if (!has_strategy(a, strategy_a)) return error_set(err, "no runs of strategy '%s'", strategy_a);
    if (!has_strategy(b, strategy_b)) return error_set(err, "no runs of strategy '%s'", strategy_b);
    int *idx = malloc((size_t)(a->count ? a->count : 1) * sizeof *idx);
    if (!idx) return error_set(err, "out of memory");
    int n = shared_pairs(a, strategy_a, b, strategy_b, idx);
    free(idx);
    if (!n)
        return error_set(err, "'%s' and '%s' share no (prompt, seed) pair: nothing to compare pair by pair", strategy_a,
                         strategy_b);
    return 0;
}

/* Speed-ups and one metric of strategy's complete runs of one pair. */
static int pair_points(const Summary *s, const char *strategy, const char *prompt_id, uint64_t seed, int metric,
                       double *sp, double *q) {
    int n = 0;
    for (int i = 0; i < s->count; i++) {
        const SummaryRow *r = &s->rows[i];
        if (r->failed || strcmp(r->strategy, strategy) || strcmp(r->prompt_id, prompt_id) || r->seed != seed) continue;
        sp[n] = r->speedup_flops;
        q[n++] = row_metric(r, metric);
    }
    return n;
}

/* The range of the strategy's per-setting mean FLOP speed-ups (over complete runs; rows are sorted by setting, so a
 * setting's runs are consecutive). Computed here rather than through summary_groups, which also bootstraps. */
static void mean_range(const Summary *s, const char *strategy, double *lo, double *hi) {
    *lo = INFINITY, *hi = -INFINITY;
    for (int i = 0; i < s->count;) {
        int j = i;
        double sum = 0;
        int n = 0;
        while (j < s->count && strcmp(s->rows[j].spec, s->rows[i].spec) == 0) {
            const SummaryRow *r = &s->rows[j++];
            if (!strcmp(r->strategy, strategy) && !r->failed && !isnan(r->speedup_flops)) sum += r->speedup_flops, n++;
        }
        if (n) {
            *lo = fmin(*lo, sum / n);
            *hi = fmax(*hi, sum / n);
        }
        i = j;
    }
}

int paired_default_speedups(const Summary *a, const char *strategy_a, const Summary *b, const char *strategy_b,
                            double *out, int cap) {
    double alo, ahi, blo, bhi;
    mean_range(a, strategy_a, &alo, &ahi);
    mean_range(b, strategy_b, &blo, &bhi);
    double lo = fmax(alo, blo), hi = fmin(ahi, bhi);
    if (!(lo <= hi) || isinf(lo) || cap < 1) return 0;
    if (hi / lo < 1.0001 || cap < 3) {
        out[0] = lo;
        return 1;
    }
    for (int k = 0; k < 3; k++) out[k] = exp(log(lo) + (log(hi) - log(lo)) * (0.1 + 0.4 * k));
    return 3;
}

/* For each shared pair: quality of each side interpolated at speedup (mode 0) or speed-up reached at target
 * quality (mode 1). */
static int per_pair(const Summary *a, const char *sa, const Summary *b, const char *sb, int metric, int mode,
                    double at, double **va, double **vb, int *npairs, Error *err) {
    int cap = a->count + b->count + 1;
    int *idx = malloc((size_t)cap * sizeof *idx);
    double *sp = malloc((size_t)cap * sizeof *sp), *q = malloc((size_t)cap * sizeof *q);
    *va = calloc((size_t)cap, sizeof **va);
    *vb = calloc((size_t)cap, sizeof **vb);
    if (!idx || !sp || !q || !*va || !*vb) {
        free(idx), free(sp), free(q), free(*va), free(*vb);
        *va = *vb = NULL;
        return error_set(err, "out of memory");
    }
    int n = shared_pairs(a, sa, b, sb, idx);
    const int higher = metric != PAIRED_LPIPS;
    for (int k = 0; k < n; k++) {
        const SummaryRow *r = &a->rows[idx[k]];
        for (int side = 0; side < 2; side++) {
            int m = pair_points(side ? b : a, side ? sb : sa, r->prompt_id, r->seed, metric, sp, q);
            double v = mode == 0 ? stats_interp_log(sp, q, m, at) : stats_reach_log(sp, q, m, at, higher);
            (side ? *vb : *va)[k] = v;
        }
    }
    free(idx), free(sp), free(q);
    *npairs = n;
    return 0;
}

static double mean_where_both(const double *x, const double *other, int n) {
    double s = 0;
    int m = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(x[i]) && !isnan(other[i])) s += isinf(x[i]) ? 100.0 : x[i], m++;
    return m ? s / m : NAN;
}

int paired_at_speedup(const Summary *a, const char *strategy_a, const Summary *b, const char *strategy_b,
                      double speedup, PairedAtSpeedup *out, Error *err) {
    memset(out, 0, sizeof *out);
    out->speedup = speedup;
    for (int m = 0; m < PAIRED_METRICS; m++) {
        double *va, *vb;
        int n;
        if (per_pair(a, strategy_a, b, strategy_b, m, 0, speedup, &va, &vb, &n, err)) return -1;
        out->pairs_total = n;
        int rc = stats_paired(va, vb, n, m != PAIRED_LPIPS, STATS_SEED + (uint64_t)m, &out->diff[m]);
        out->a_mean[m] = mean_where_both(va, vb, n);
        out->b_mean[m] = mean_where_both(vb, va, n);
        free(va), free(vb);
        if (rc) return error_set(err, "out of memory");
    }
    return 0;
}

int paired_at_quality(const Summary *a, const char *strategy_a, const Summary *b, const char *strategy_b, int metric,
                      double target, PairedAtQuality *out, Error *err) {
    memset(out, 0, sizeof *out);
    out->metric = metric;
    out->target = target;
    double *va, *vb;
    int n;
    if (per_pair(a, strategy_a, b, strategy_b, metric, 1, target, &va, &vb, &n, err)) return -1;
    int rc = stats_paired(va, vb, n, 1, STATS_SEED + 7, &out->diff);
    out->a_mean = mean_where_both(va, vb, n);
    out->b_mean = mean_where_both(vb, va, n);
    free(va), free(vb);
    return rc ? error_set(err, "out of memory") : 0;
}

static void fmt_ci(char *buf, size_t cap, const char *fmt, const PairedDiff *d) {
    if (d->pairs == 0 || isnan(d->mean)) {
        snprintf(buf, cap, "–");
        return;
    }
    char m[32], lo[32], hi[32];
    snprintf(m, sizeof m, fmt, d->mean);
    snprintf(lo, sizeof lo, fmt, d->lo);
    snprintf(hi, sizeof hi, fmt, d->hi);
    snprintf(buf, cap, "%s [%s, %s]", m, lo, hi);
}

void paired_write_markdown(FILE *f, const char *strategy_a, const char *strategy_b, const PairedAtSpeedup *r, int n,
                           int header) {
    if (header) {
        fprintf(f, "| A | B | FLOP speed-up | pairs | ΔPSNR (dB) [95%% CI] | A wins | ΔSSIM [95%% CI] | A wins | "
                   "ΔLPIPS [95%% CI] | A wins |\n");
        fprintf(f, "|:--|:--|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    }
    for (int i = 0; i < n; i++) {
        char c[PAIRED_METRICS][128], w[PAIRED_METRICS][16];
        static const char *const fmts[PAIRED_METRICS] = {"%+.2f", "%+.4f", "%+.4f"};
        for (int m = 0; m < PAIRED_METRICS; m++) {
            fmt_ci(c[m], sizeof c[m], fmts[m], &r[i].diff[m]);
            if (r[i].diff[m].pairs) snprintf(w[m], sizeof w[m], "%.0f%%", 100 * r[i].diff[m].win);
            else snprintf(w[m], sizeof w[m], "–");
        }
        fprintf(f, "| %s | %s | %.2f× | %d/%d | %s | %s | %s | %s | %s | %s |\n", strategy_a, strategy_b, r[i].speedup,
                r[i].diff[PAIRED_PSNR].pairs, r[i].pairs_total, c[0], w[0], c[1], w[1], c[2], w[2]);
    }
}
