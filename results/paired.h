/* Paired comparison of two strategies over the (prompt, seed) pairs they share (README "Comparing strategies").
 *
 * Matched speed-up: for each pair and each strategy, the quality at FLOP speed-up S is interpolated along that
 * strategy's settings for that pair (quality linear in log speed-up, between the two settings around S; NAN outside
 * the measured range, never extrapolated). Per metric: the mean over pairs of (A - B), its 95% bootstrap interval
 * over pairs, and the fraction of pairs where A is better (higher PSNR/SSIM, lower LPIPS; ties count half). Pairs
 * where either strategy does not reach S are left out and counted.
 * Matched quality: for each pair, the highest FLOP speed-up at which each strategy's interpolated curve still
 * reaches the target quality; the mean paired difference of those speed-ups, its interval and the win fraction.
 *
 * The two sides may come from two sweep folders (same model, weights and steps; matched by prompt id and seed). */
#ifndef CACHEBENCH_PAIRED_H
#define CACHEBENCH_PAIRED_H

#include <stdio.h>

#include "core/error.h"
#include "results/stats.h"
#include "results/summary.h"

enum { PAIRED_PSNR, PAIRED_SSIM, PAIRED_LPIPS, PAIRED_METRICS };

typedef struct {
    double speedup;
    int pairs_total;                /* pairs the two sides share */
    PairedDiff diff[PAIRED_METRICS]; /* A - B at this speed-up */
    double a_mean[PAIRED_METRICS], b_mean[PAIRED_METRICS]; /* means over the same pairs */
} PairedAtSpeedup;

typedef struct {
    int metric;                     /* PAIRED_* */
    double target;
    PairedDiff diff;                /* speed-up of A - speed-up of B */
    double a_mean, b_mean;
} PairedAtQuality;

/* Checks that the two sweeps can be compared (same model, weights and steps) and share at least one pair with
 * runs of both strategies; the error names the difference. */
int paired_check(const Summary *a, const char *strategy_a, const Summary *b, const char *strategy_b, Error *err);

/* Default speed-ups: 3 points spaced evenly in log between the largest of the two strategies' lowest mean FLOP
 * speed-ups and the smallest of their highest ones (1 point when the ranges touch, 0 when they do not overlap). */
int paired_default_speedups(const Summary *a, const char *strategy_a, const Summary *b, const char *strategy_b,
                            double *out, int cap);

int paired_at_speedup(const Summary *a, const char *strategy_a, const Summary *b, const char *strategy_b,
                      double speedup, PairedAtSpeedup *out, Error *err);
int paired_at_quality(const Summary *a, const char *strategy_a, const Summary *b, const char *strategy_b, int metric,
                      double target, PairedAtQuality *out, Error *err);

/* Markdown rows "| S | n | ΔPSNR [lo, hi] | win | ΔSSIM ... |" (header included when header != 0). */
void paired_write_markdown(FILE *f, const char *strategy_a, const char *strategy_b, const PairedAtSpeedup *r, int n,
                           int header);

extern const char *const paired_metric_names[PAIRED_METRICS];

#endif
