/* Statistics over prompt × seed pairs: percentile bootstrap intervals, interpolation along a strategy's settings,
 * and paired comparisons of two strategies at matched speed-up or matched quality.
 *
 * The unit of resampling is a (prompt, seed) pair: a sweep's runs of one pair share their noise and text, so they
 * are not independent of each other, while different pairs are. Intervals are percentile bootstrap intervals
 * (STATS_RESAMPLES resamples of the pairs with replacement, the 2.5th and 97.5th percentiles of the statistic),
 * drawn from Philox with a fixed seed, so the same runs always give the same interval. */
#ifndef CACHEBENCH_STATS_H
#define CACHEBENCH_STATS_H

#include <stdint.h>

#define STATS_RESAMPLES 2000
#define STATS_SEED 20240601u

typedef enum {
    STAT_MEAN,      /* mean of the values */
    STAT_PSNR,      /* values are PSNRs in dB (inf allowed): 10·log10(1 / mean MSE), as the report's PSNR */
    STAT_RATIO,     /* values are pairs (num, den) interleaved: sum num / sum den (the wall-clock speed-up) */
} StatKind;

/* The statistic of n values (2n doubles for STAT_RATIO). NAN when n == 0. */
double stats_value(const double *x, int n, StatKind kind);

/* 95% percentile bootstrap interval of the statistic over n units (n >= 1; with n == 1 the interval is the value
 * itself). lo/hi may be ±inf for PSNR. Returns -1 (out of memory) or 0. */
int stats_bootstrap(const double *x, int n, StatKind kind, uint64_t seed, double *lo, double *hi);

/* Linear interpolation of y along log(s) at s = at, over n points (s_i > 0, any order; equal s values averaged).
 * NAN outside [min s, max s]: no extrapolation. inf y values make the result inf only when the nearest points are. */
double stats_interp_log(const double *s, const double *y, int n, double at);

/* The largest s in [min s, max s] at which the piecewise-linear (in log s) curve through the points reaches
 * y >= target (higher_better) or y <= target (otherwise); NAN when it never does. */
double stats_reach_log(const double *s, const double *y, int n, double target, int higher_better);

typedef struct {
    int pairs;              /* pairs where both values exist */
    double mean, lo, hi;    /* mean of (a - b) and its 95% bootstrap interval; NAN when pairs == 0 */
    double win;             /* fraction of those pairs where a is better (ties count half) */
} PairedDiff;

/* Paired difference of a and b over n pairs; pairs where either is NAN are left out. higher_better decides what a
 * win is. inf values are clamped to 100 dB first (identical videos; a difference of infinities has no meaning). */
int stats_paired(const double *a, const double *b, int n, int higher_better, uint64_t seed, PairedDiff *out);

#endif
