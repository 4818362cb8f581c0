/* Bootstrap intervals, log-speed-up interpolation and paired differences (definitions: stats.h). */
#include "results/stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"

double stats_value(const double *x, int n, StatKind kind) {
    if (n <= 0) return NAN;
    double a = 0, b = 0;
    switch (kind) {
    case STAT_MEAN:
        for (int i = 0; i < n; i++) a += x[i];
        return a / n;
    case STAT_PSNR:
        /* PSNR = 10·log10(1/MSE), so MSE = 10^(-PSNR/10): exact for the video-level PSNR of each unit. */
        for (int i = 0; i < n; i++) a += isinf(x[i]) ? 0.0 : pow(10.0, -x[i] / 10.0);
        return a > 0 ? 10.0 * log10(n / a) : INFINITY;
    case STAT_RATIO:
        for (int i = 0; i < n; i++) a += x[2 * i], b += x[2 * i + 1];
        return b > 0 ? a / b : NAN;
    }
    return NAN;
}

static int compare_doubles(const void *p, const void *q) {
    double a = *(const double *)p, b = *(const double *)q;
    return a < b ? -1 : a > b;
}

/* Percentile with linear interpolation between order statistics (numpy's default). */
static double percentile(const double *sorted, int n, double q) {
    double pos = q * (n - 1);
    int i = (int)floor(pos);
    if (i >= n - 1) return sorted[n - 1];
    double f = pos - i;
    if (f == 0 || isinf(sorted[i]) || isinf(sorted[i + 1])) return f < 0.5 ? sorted[i] : sorted[i + 1];
    return sorted[i] + f * (sorted[i + 1] - sorted[i]);
}

int stats_bootstrap(const double *x, int n, StatKind kind, uint64_t seed, double *lo, double *hi) {
    *lo = *hi = NAN;
    if (n <= 0) return 0;
    const int width = kind == STAT_RATIO ? 2 : 1;
    double *stat = malloc(STATS_RESAMPLES * sizeof *stat);
    double *sample = malloc((size_t)n * width * sizeof *sample);
    float *u = malloc((size_t)n * sizeof *u);
    if (!stat || !sample || !u) {
        free(stat), free(sample), free(u);
        return -1;
    }
    for (int b = 0; b < STATS_RESAMPLES; b++) {
        philox_uniform(u, (size_t)n, seed, (uint64_t)b);
        for (int i = 0; i < n; i++) {
            int j = (int)(u[i] * n);
            if (j >= n) j = n - 1;
            memcpy(sample + (size_t)i * width, x + (size_t)j * width, (size_t)width * sizeof *x);
        }
        stat[b] = stats_value(sample, n, kind);
    }
    qsort(stat, STATS_RESAMPLES, sizeof *stat, compare_doubles);
    *lo = percentile(stat, STATS_RESAMPLES, 0.025);
    *hi = percentile(stat, STATS_RESAMPLES, 0.975);
    free(stat), free(sample), free(u);
    return 0;
}

/* Points sorted by s with equal s merged (y averaged); returns the count. Writes into ls (log s) and ys. */
static int sorted_points(const double *s, const double *y, int n, double *ls, double *ys) {
    int *idx = malloc((size_t)(n ? n : 1) * sizeof *idx);
    if (!idx) return 0;
    int m = 0;
    for (int i = 0; i < n; i++)
        if (s[i] > 0 && !isnan(s[i]) && !isnan(y[i])) idx[m++] = i;
    for (int i = 1; i < m; i++) /* insertion sort: a strategy has a handful of settings */
        for (int j = i; j > 0 && s[idx[j - 1]] > s[idx[j]]; j--) {
            int t = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = t;
        }
    int k = 0;
    for (int i = 0; i < m;) {
        int j = i;
        double sum = 0;
        while (j < m && s[idx[j]] == s[idx[i]]) sum += y[idx[j++]];
        ls[k] = log(s[idx[i]]);
        ys[k++] = sum / (j - i);
        i = j;
    }
    free(idx);
    return k;
}

double stats_interp_log(const double *s, const double *y, int n, double at) {
    if (n <= 0 || !(at > 0)) return NAN;
    double *ls = malloc((size_t)n * sizeof *ls), *ys = malloc((size_t)n * sizeof *ys);
    double r = NAN;
    if (ls && ys) {
        int k = sorted_points(s, y, n, ls, ys);
        double la = log(at);
        const double eps = 1e-12;
        for (int i = 0; i < k; i++) {
            if (fabs(la - ls[i]) <= eps) {
                r = ys[i];
                break;
            }
            if (i + 1 < k && la > ls[i] && la < ls[i + 1]) {
                double f = (la - ls[i]) / (ls[i + 1] - ls[i]);
                if (isinf(ys[i]) || isinf(ys[i + 1])) r = f < 0.5 ? ys[i] : ys[i + 1];
                else r = ys[i] + f * (ys[i + 1] - ys[i]);
                break;
            }
        }
    }
    free(ls), free(ys);
    return r;
}

double stats_reach_log(const double *s, const double *y, int n, double target, int higher_better) {
    if (n <= 0 || isnan(target)) return NAN;
    double *ls = malloc((size_t)n * sizeof *ls), *ys = malloc((size_t)n * sizeof *ys);
    double r = NAN;
    if (ls && ys) {
        int k = sorted_points(s, y, n, ls, ys);
        double sign = higher_better ? 1.0 : -1.0;
        /* From the fastest point down: the first point that reaches the target, or the crossing on the segment
         * just above it. */
        for (int i = k - 1; i >= 0; i--) {
            double yi = sign * ys[i], t = sign * target;
            if (yi < t) continue;
            if (i + 1 < k && !isinf(ys[i]) && !isinf(ys[i + 1])) {
                double yj = sign * ys[i + 1]; /* < t: the next point misses it */
                double f = (yi - t) / (yi - yj);
                r = exp(ls[i] + f * (ls[i + 1] - ls[i]));
            } else {
                r = exp(ls[i]);
            }
            break;
        }
    }
    free(ls), free(ys);
    return r;
}

int stats_paired(const double *a, const double *b, int n, int higher_better, uint64_t seed, PairedDiff *out) {
    memset(out, 0, sizeof *out);
    out->mean = out->lo = out->hi = out->win = NAN;
    double *d = malloc((size_t)(n ? n : 1) * sizeof *d);
    if (!d) return -1;
    int m = 0;
    double wins = 0;
    for (int i = 0; i < n; i++) {
        if (isnan(a[i]) || isnan(b[i])) continue;
        double x = isinf(a[i]) ? 100.0 : a[i], y = isinf(b[i]) ? 100.0 : b[i];
        d[m++] = x - y;
        wins += x == y ? 0.5 : ((x > y) == (higher_better != 0));
    }
    out->pairs = m;
    int rc = 0;
    if (m) {
        out->mean = stats_value(d, m, STAT_MEAN);
        out->win = wins / m;
        rc = stats_bootstrap(d, m, STAT_MEAN, seed, &out->lo, &out->hi);
    }
    free(d);
    return rc;
}
