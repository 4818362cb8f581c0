/* Regression checks of caching ideas: statistics (results/stats.h), paired comparisons (results/paired.h, against
 * tests/paired_reference.py), baseline files and the gate (results/baseline.h, `cachebench check`), and the golden
 * baseline of every built-in strategy on the tiny model (tests/golden/): the gate of `make test`. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/rng.h"
#include "results/baseline.h"
#include "results/paired.h"
#include "results/stats.h"
#include "results/summary.h"
#include "tests/fixtures.h"

/* ---------------------------------------------------------------------------------------------------------- */
/* Statistics */

Test(stats, interpolation_is_linear_in_log_speedup_and_never_extrapolates) {
    const double s[] = {4, 1, 2, 2}, y[] = {40, 10, 18, 22}; /* unsorted, equal speed-ups averaged (2 -> 20) */
    cr_expect_float_eq(stats_interp_log(s, y, 4, 2), 20, 1e-12);
    cr_expect_float_eq(stats_interp_log(s, y, 4, sqrt(8.0)), 30, 1e-9, "half way between 2 and 4 in log");
    cr_expect_float_eq(stats_interp_log(s, y, 4, sqrt(2.0)), 15, 1e-9);
    cr_expect_float_eq(stats_interp_log(s, y, 4, 1), 10, 1e-12);
    cr_expect(isnan(stats_interp_log(s, y, 4, 0.99)), "below the measured range");
    cr_expect(isnan(stats_interp_log(s, y, 4, 4.01)), "above the measured range");
    cr_expect(isnan(stats_interp_log(s, y, 0, 2)));
    /* Quality falling with speed-up: the highest speed-up still reaching the target. */
    const double q[] = {40, 30, 20};
    const double s3[] = {1, 2, 4};
    cr_expect_float_eq(stats_reach_log(s3, q, 3, 25, 1), sqrt(8.0), 1e-9);
    cr_expect_float_eq(stats_reach_log(s3, q, 3, 20, 1), 4, 1e-12);
    cr_expect(isnan(stats_reach_log(s3, q, 3, 41, 1)), "never reached");
    const double l[] = {0.1, 0.2, 0.4}; /* LPIPS: lower is better */
    cr_expect_float_eq(stats_reach_log(s3, l, 3, 0.15, 0), sqrt(2.0), 1e-9);
}

Test(stats, psnr_and_ratio_statistics) {
    const double p[] = {20, 30, INFINITY};
    double mse = (pow(10, -2.0) + pow(10, -3.0) + 0) / 3;
    cr_expect_float_eq(stats_value(p, 3, STAT_PSNR), 10 * log10(1 / mse), 1e-9);
    const double inf[] = {INFINITY, INFINITY};
    cr_expect(isinf(stats_value(inf, 2, STAT_PSNR)));
    const double r[] = {4, 2, 6, 1}; /* (num, den) pairs: 10 / 3 */
    cr_expect_float_eq(stats_value(r, 2, STAT_RATIO), 10.0 / 3, 1e-12);
}

/* The percentile bootstrap of a mean of n normal values approaches mean ± 1.96·sd/√n: an independent check of the
 * resampling, the percentiles and the seeding. */
Test(stats, bootstrap_interval_matches_the_normal_approximation_and_is_reproducible) {
    enum { N = 400 };
    float z[N];
    double x[N], sum = 0, ss = 0;
    philox_normal(z, N, 77, 3);
    for (int i = 0; i < N; i++) x[i] = 5 + 2 * z[i], sum += x[i];
    double mean = sum / N;
    for (int i = 0; i < N; i++) ss += (x[i] - mean) * (x[i] - mean);
    double se = sqrt(ss / (N - 1) / N), lo, hi, lo2, hi2;
    cr_assert_eq(stats_bootstrap(x, N, STAT_MEAN, STATS_SEED, &lo, &hi), 0);
    cr_expect(lo < mean && mean < hi);
    cr_expect_float_eq(hi - lo, 2 * 1.96 * se, 0.12 * 2 * 1.96 * se, "width %g vs normal %g", hi - lo, 3.92 * se);
    cr_expect_float_eq((lo + hi) / 2, mean, 0.15 * se);
    cr_assert_eq(stats_bootstrap(x, N, STAT_MEAN, STATS_SEED, &lo2, &hi2), 0);
    cr_expect(lo == lo2 && hi == hi2, "same seed, same interval");
    cr_assert_eq(stats_bootstrap(x, N, STAT_MEAN, STATS_SEED + 1, &lo2, &hi2), 0);
    cr_expect(lo != lo2 || hi != hi2, "the seed is used");
    cr_assert_eq(stats_bootstrap(x, 1, STAT_MEAN, STATS_SEED, &lo, &hi), 0);
    cr_expect(lo == x[0] && hi == x[0], "one unit: the interval is the value");
}

Test(stats, paired_difference_counts_wins_and_skips_missing_pairs) {
    const double a[] = {31, 29, 30, NAN, 25}, b[] = {30, 30, 30, 20, INFINITY};
    PairedDiff d;
    cr_assert_eq(stats_paired(a, b, 5, 1, STATS_SEED, &d), 0);
    cr_expect_eq(d.pairs, 4);
    cr_expect_float_eq(d.mean, (1 - 1 + 0 + (25 - 100)) / 4.0, 1e-12, "inf clamped to 100 dB");
    cr_expect_float_eq(d.win, 1.5 / 4, 1e-12, "one win, one tie");
    cr_expect(d.lo <= d.mean && d.mean <= d.hi);
    cr_assert_eq(stats_paired(a, b, 5, 0, STATS_SEED, &d), 0);
    cr_expect_float_eq(d.win, 2.5 / 4, 1e-12, "lower is better");
}

Test(stats, sweeps_without_shared_pairs_are_refused) {
    SummaryRow rows[2];
    memset(rows, 0, sizeof rows);
    snprintf(rows[0].strategy, sizeof rows[0].strategy, "easycache");
    snprintf(rows[0].prompt_id, sizeof rows[0].prompt_id, "s00");
    snprintf(rows[1].strategy, sizeof rows[1].strategy, "static");
    snprintf(rows[1].prompt_id, sizeof rows[1].prompt_id, "s01");
    Summary s = {.rows = rows, .count = 2, .steps = 6};
    Error err = {{0}};
    cr_expect_eq(paired_check(&s, "easycache", &s, "static", &err), -1);
    cr_expect(strstr(err.msg, "share no (prompt, seed) pair") != NULL, "%s", err.msg);
    cr_expect_eq(paired_check(&s, "easycache", &s, "teacache", &err), -1);
    cr_expect(strstr(err.msg, "no runs of strategy 'teacache'") != NULL, "%s", err.msg);
    Summary t = s;
    snprintf(t.weights_sha256, sizeof t.weights_sha256, "ab");
    cr_expect_eq(paired_check(&s, "easycache", &t, "static", &err), -1);
    cr_expect(strstr(err.msg, "different weights") != NULL, "%s", err.msg);
}

/* ---------------------------------------------------------------------------------------------------------- */
/* The golden gate */

static void spit(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

/* Replaces the first occurrence of from with to (same file, new copy written to path). */
static void write_edited(const char *path, const char *text, const char *from, const char *to) {
    const char *at = strstr(text, from);
    cr_assert_not_null(at, "'%s' not in the baseline", from);
    char *out = malloc(strlen(text) + strlen(to) + 1);
    size_t head = (size_t)(at - text);
    memcpy(out, text, head);
    strcpy(out + head, to);
    strcat(out, at + strlen(from));
    spit(path, out);
    free(out);
}

Test(gate, golden_baselines_of_every_builtin_strategy_hold, .timeout = 120) {
    char *dir = fixture_tmpdir();
    char out[512], path[600], log[65536];
    snprintf(out, sizeof out, "%s/golden", dir);
    const char *sweep[] = {"sweep", "--config", "tests/golden/tiny.ini", "--out", out, "--quiet", NULL};
    cr_assert_eq(fixture_run_cli(log, sizeof log, sweep), 0, "%s", log);

    /* The gate itself: decisions exact, metrics within the default tolerances. */
    const char *gate[] = {"check", out, "--baseline", "tests/golden/tiny.tsv", "--decisions", "exact", NULL};
    int rc = fixture_run_cli(log, sizeof log, gate);
    cr_assert_eq(rc, 0,
                 "a strategy's decisions or quality changed against tests/golden/tiny.tsv. If the change is "
                 "deliberate, rewrite the baseline (tests/golden/tiny.ini says how). Diff:\n%s",
                 log);
    cr_expect(strstr(log, "check passed") != NULL, "%s", log);

    /* The sweep's report has intervals, worst pairs and the paired comparison; settings.tsv holds each aggregate
     * inside its interval; the trade-off plots get their error bars' data. */
    snprintf(path, sizeof path, "%s/report.md", out);
    char *report = fixture_read_file(path);
    cr_assert_not_null(report);
    cr_expect(strstr(report, "## Uncertainty") && strstr(report, "## Worst prompts") &&
                  strstr(report, "## Paired comparison") && strstr(report, "| A | B | FLOP speed-up | pairs |"),
              "%s", report);
    free(report);
    snprintf(path, sizeof path, "%s/settings.tsv", out);
    char *settings = fixture_read_file(path);
    cr_assert_not_null(settings);
    int nset = 0;
    char *save = NULL;
    for (char *l = strtok_r(strchr(settings, '\n') + 1, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        char *f[21];
        int n = 0;
        for (char *s2 = NULL, *t = strtok_r(l, "\t", &s2); t && n < 21; t = strtok_r(NULL, "\t", &s2)) f[n++] = t;
        cr_assert_eq(n, 21, "settings.tsv row %d has %d fields", nset, n);
        for (int k = 3; k < 21; k += 3) {
            if (strcmp(f[k], "NA") == 0) continue;
            double v = strtod(f[k], NULL), lo = strtod(f[k + 1], NULL), hi = strtod(f[k + 2], NULL);
            cr_expect(lo <= v + 1e-6 && v <= hi + 1e-6, "%s column %d: %g not in [%g, %g]", f[1], k, v, lo, hi);
        }
        nset++;
    }
    cr_expect_eq(nset, 18);
    free(settings);
    snprintf(path, sizeof path, "%s/plots/ci_psnr.dat", out);
    cr_expect(access(path, R_OK) == 0, "%s missing", path);

    /* Every built-in strategy is in the baseline. */
    char *golden = fixture_read_file("tests/golden/tiny.tsv");
    cr_assert_not_null(golden);
    const char *names[] = {"none",        "static:",     "teacache:", "easycache:", "svg:",  "easycache+svg:",
                           "teacache+svg:", "magcache:", "taylorseer:", "fbcache:", "dbcache:", "pab:", "dicache:"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char key[64];
        snprintf(key, sizeof key, "\nsetting\t%s", names[i]);
        cr_expect(strstr(golden, key) != NULL, "no %s setting in tests/golden/tiny.tsv", names[i]);
    }

    /* A re-written baseline reads back and passes with exact decisions and zero tolerances. */
    snprintf(path, sizeof path, "%s/again.tsv", dir);
    const char *write[] = {"check", out, "--write-baseline", path, NULL};
    cr_assert_eq(fixture_run_cli(log, sizeof log, write), 0, "%s", log);
    const char *strict[] = {"check", out, "--baseline", path, "--decisions", "exact", "--tol-psnr", "0",
                            "--tol-ssim", "0", "--tol-lpips", "0", "--tol-speedup", "0", NULL};
    cr_expect_eq(fixture_run_cli(log, sizeof log, strict), 0, "%s", log);

    /* The same as JSON. */
    snprintf(path, sizeof path, "%s/again.json", dir);
    const char *write_json[] = {"check", out, "--write-baseline", path, NULL};
    cr_assert_eq(fixture_run_cli(log, sizeof log, write_json), 0, "%s", log);
    strict[3] = path;
    cr_expect_eq(fixture_run_cli(log, sizeof log, strict), 0, "JSON baseline: %s", log);
    char *json = fixture_read_file(path);
    cr_assert_not_null(json);
    char *steps_at = strstr(json, "\"steps\":\t6");
    cr_assert_not_null(steps_at, "%s", json);
    steps_at[9] = '7';
    spit(path, json);
    cr_expect_eq(fixture_run_cli(log, sizeof log, strict), 1, "%s", log);
    cr_expect(strstr(log, "refused: the baseline has 7 steps, the sweep 6") != NULL, "%s", log);
    spit(path, "{\"format\": \"something else\"}");
    cr_expect_eq(fixture_run_cli(log, sizeof log, strict), 1, "%s", log);
    cr_expect(strstr(log, "not a cachebench baseline") != NULL, "%s", log);
    free(json);
    snprintf(path, sizeof path, "%s/again.tsv", dir);

    /* A quality drop beyond the tolerance fails, naming the setting and both values. */
    char *again = fixture_read_file(path);
    cr_assert_not_null(again);
    char *line = strstr(again, "\nsetting\tstatic:interval=2,warmup=1\t");
    cr_assert_not_null(line);
    char orig[256], psnr_field[64];
    sscanf(line + 1, "%255[^\n]", orig);
    /* fields: setting spec runs speedup psnr ...: raise the recorded PSNR by 1 dB */
    char *f4 = orig;
    for (int k = 0; k < 4; k++) f4 = strchr(f4, '\t') + 1;
    sscanf(f4, "%63[^\t]", psnr_field);
    char raised[256];
    snprintf(raised, sizeof raised, "%.*s%.6f%s", (int)(f4 - orig), orig, strtod(psnr_field, NULL) + 1.0,
             f4 + strlen(psnr_field));
    snprintf(path, sizeof path, "%s/better.tsv", dir);
    write_edited(path, again, orig, raised);
    const char *worse[] = {"check", out, "--baseline", path, NULL};
    cr_expect_eq(fixture_run_cli(log, sizeof log, worse), 1, "%s", log);
    cr_expect(strstr(log, "FAIL static:interval=2,warmup=1: PSNR") != NULL, "%s", log);
    cr_expect(strstr(log, "check FAILED: 1 failure(s)") != NULL, "%s", log);
    const char *loose[] = {"check", out, "--baseline", path, "--tol-psnr", "1.5", NULL};
    cr_expect_eq(fixture_run_cli(log, sizeof log, loose), 0, "within a 1.5 dB tolerance: %s", log);

    /* Changed decisions fail with --decisions exact, naming the step and branch; not without it. */
    snprintf(path, sizeof path, "%s/decisions.tsv", dir);
    write_edited(path, again, "\tCCRCRC/CCRCRC\t", "\tCCCCRC/CCRCRC\t");
    const char *exact[] = {"check", out, "--baseline", path, "--decisions", "exact", NULL};
    cr_expect_eq(fixture_run_cli(log, sizeof log, exact), 1, "%s", log);
    cr_expect(strstr(log, "decisions changed from step 2, cond branch") != NULL, "%s", log);
    const char *ignore[] = {"check", out, "--baseline", path, NULL};
    cr_expect_eq(fixture_run_cli(log, sizeof log, ignore), 0, "%s", log);

    /* A missing setting fails. */
    snprintf(path, sizeof path, "%s/extra.tsv", dir);
    char extra[400];
    snprintf(extra, sizeof extra, "%s\nsetting\tstatic:interval=9,warmup=1\t1\t9.0\t30.0\t0.9\t0.1", orig);
    write_edited(path, again, orig, extra);
    cr_expect_eq(fixture_run_cli(log, sizeof log, worse), 1, "%s", log);
    cr_expect(strstr(log, "FAIL static:interval=9,warmup=1: setting missing from the sweep") != NULL, "%s", log);

    /* A baseline of other weights, another step count, or not a baseline at all: refused, naming the difference. */
    snprintf(path, sizeof path, "%s/other.tsv", dir);
    char *sha = strstr(again, "weights_sha256\t");
    cr_assert_not_null(sha);
    char shaline[100];
    sscanf(sha, "%99[^\n]", shaline);
    write_edited(path, again, shaline, "weights_sha256\t0000000000000000000000000000000000000000000000000000000000000000");
    cr_expect_eq(fixture_run_cli(log, sizeof log, worse), 1, "%s", log);
    cr_expect(strstr(log, "other weights") != NULL, "%s", log);
    write_edited(path, again, "\nsteps\t6\n", "\nsteps\t50\n");
    cr_expect_eq(fixture_run_cli(log, sizeof log, worse), 1, "%s", log);
    cr_expect(strstr(log, "the baseline has 50 steps, the sweep 6") != NULL, "%s", log);
    spit(path, "run_id\tstrategy\n");
    cr_expect_eq(fixture_run_cli(log, sizeof log, worse), 1, "%s", log);
    cr_expect(strstr(log, "not a cachebench baseline") != NULL, "%s", log);
    spit(path, "# cachebench baseline 1\nmodel\ttiny\nsetting\tnone\tx\n");
    cr_expect_eq(fixture_run_cli(log, sizeof log, worse), 1, "%s", log);
    cr_expect(strstr(log, ":3: not a baseline line") != NULL, "%s", log);

    /* --must-beat: static at 1.5x is ~3 dB below easycache interpolated to 1.5x on this pair: dominated. */
    const char *beat[] = {"check", out, "--must-beat", "easycache", "--strategy", "static", "--speedup", "1.5", NULL};
    cr_expect_eq(fixture_run_cli(log, sizeof log, beat), 1, "%s", log);
    cr_expect(strstr(log, "FAIL static vs easycache at 1.50x: PSNR -") != NULL, "%s", log);
    const char *beat2[] = {"check", out, "--must-beat", "static", "--strategy", "easycache", "--speedup", "1.5", NULL};
    cr_expect_eq(fixture_run_cli(log, sizeof log, beat2), 0, "%s", log);
    const char *beyond[] = {"check", out, "--must-beat", "static", "--strategy", "easycache", "--speedup", "9", NULL};
    cr_expect_eq(fixture_run_cli(log, sizeof log, beyond), 1, "nothing compared: %s", log);
    cr_expect(strstr(log, "skip easycache vs static at 9.00x") != NULL, "%s", log);

    /* Paired comparison against the numpy oracle. */
    Summary s;
    Error err = {{0}};
    cr_assert_eq(summary_load(out, &s, &err), 0, "%s", err.msg);
    const double at[] = {1.2, 1.5, 1.9};
    char cmd[1024], sum_path[600];
    snprintf(sum_path, sizeof sum_path, "%s/summary.tsv", out);
    snprintf(cmd, sizeof cmd, "'%s' tests/paired_reference.py '%s' easycache static 1.2 1.5 1.9 2>&1",
             fixture_python(), sum_path);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    for (int i = 0; i < 3; i++) {
        double sp, mean;
        int pairs;
        if (fscanf(p, "%lf %lf %d", &sp, &mean, &pairs) != 3) {
            pclose(p);
            cr_skip_test("paired_reference.py did not run (numpy missing?)");
        }
        PairedAtSpeedup r;
        cr_assert_eq(paired_at_speedup(&s, "easycache", &s, "static", at[i], &r, &err), 0, "%s", err.msg);
        cr_expect_eq(r.diff[PAIRED_PSNR].pairs, pairs, "at %g", at[i]);
        if (pairs) cr_expect_float_eq(r.diff[PAIRED_PSNR].mean, mean, 2e-3, /* summary.tsv rounds */ "at %g: %g vs %g", at[i], r.diff[0].mean, mean);
    }
    pclose(p);
    summary_free(&s);
    const char *across[] = {"compare", out,          "--strategy", "easycache", "--against", "static",
                            "--against-dir", out, "--speedup", "1.5",       "--psnr",    "30",     NULL};
    cr_expect_eq(fixture_run_cli(log, sizeof log, across), 0, "%s", log);
    cr_expect(strstr(log, "B from") && strstr(log, "1.50x   1/1") && strstr(log, "psnr >= 30"), "%s", log);
    const char *cmp[] = {"compare", out, "--strategy", "easycache", "--against", "nosuch", NULL};
    cr_expect_eq(fixture_run_cli(log, sizeof log, cmp), 1, "%s", log);
    cr_expect(strstr(log, "no runs of strategy 'nosuch'") != NULL, "%s", log);

    free(again);
    free(golden);
    fixture_rmdir(dir);
    free(dir);
}
