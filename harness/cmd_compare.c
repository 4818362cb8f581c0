/* cachebench compare: two strategies pair by pair at matched speed-up and matched quality (results/paired.h). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/cli.h"
#include "results/paired.h"
#include "results/summary.h"

static void compare_usage(FILE *out) {
    fprintf(out,
            "Usage: cachebench compare DIR --strategy A --against B [options]\n"
            "Compares strategy A with strategy B over the (prompt, seed) pairs both were run on.\n\n"
            "Matched speed-up: per pair, the quality of each strategy at FLOP speed-up S, interpolated along its\n"
            "settings for that pair (quality linear in log speed-up, only inside the measured range: a pair where a\n"
            "strategy does not reach S is left out and counted). Reported per metric: the mean over pairs of A - B,\n"
            "its 95%% bootstrap interval over pairs (2000 resamples, fixed seed) and the fraction of pairs where A is\n"
            "better (higher PSNR and SSIM, lower LPIPS; ties count half). An interval that excludes 0 means the\n"
            "difference is not explained by the choice of prompts and seeds.\n"
            "Matched quality: per pair, the highest FLOP speed-up at which each strategy still reaches the target\n"
            "quality (same interpolation); the mean paired difference in speed-up, its interval and A's win rate.\n\n"
            "  --strategy A         strategy name (as in summary.tsv: easycache, static, a plug-in's name, ...)\n"
            "  --against B          the strategy to compare with\n"
            "  --against-dir DIR2   take B's runs from another sweep folder (same model, weights and steps; pairs\n"
            "                       matched by prompt id and seed)\n"
            "  --speedup LIST       FLOP speed-ups to compare at, e.g. 2,2.5,3 (default: 3 points spread over the\n"
            "                       range both strategies cover)\n"
            "  --psnr LIST          PSNR targets (dB) for the matched-quality table, e.g. 25,30\n"
            "  --ssim LIST          SSIM targets\n"
            "  --lpips LIST         LPIPS targets (lower is better: the speed-up at which LPIPS stays <= target)\n"
            "  --help               this text\n"
            "Exit status: 0 done, 1 error (no shared pairs, unknown strategy, sweeps of different models), 2 bad "
            "usage.\n");
}

static int parse_list(const char *flag, const char *text, double *out, int cap, int *n) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", text);
    *n = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (*n == cap) return cli_usage_error("compare", "too many values for %s (at most %d)", flag, cap), -1;
        if (cli_parse_double("compare", flag, t, -1e6, 1e6, &out[(*n)++])) return -1;
    }
    if (!*n) return cli_usage_error("compare", "empty list for %s", flag), -1;
    return 0;
}

static void print_ci(const char *fmt, const PairedDiff *d) {
    if (!d->pairs) {
        printf("  %28s", "–");
        return;
    }
    char m[32], lo[32], hi[32], all[160];
    snprintf(m, sizeof m, fmt, d->mean);
    snprintf(lo, sizeof lo, fmt, d->lo);
    snprintf(hi, sizeof hi, fmt, d->hi);
    snprintf(all, sizeof all, "%s [%s, %s] %3.0f%%", m, lo, hi, 100 * d->win);
    printf("  %28s", all);
}

int cmd_compare(int argc, char **argv) {
    enum { OPT_STRATEGY = 1000, OPT_AGAINST, OPT_AGAINST_DIR, OPT_SPEEDUP, OPT_PSNR, OPT_SSIM, OPT_LPIPS, OPT_HELP };
    static const struct option options[] = {{"strategy", required_argument, 0, OPT_STRATEGY},
                                            {"against", required_argument, 0, OPT_AGAINST},
                                            {"against-dir", required_argument, 0, OPT_AGAINST_DIR},
                                            {"speedup", required_argument, 0, OPT_SPEEDUP},
                                            {"psnr", required_argument, 0, OPT_PSNR},
                                            {"ssim", required_argument, 0, OPT_SSIM},
                                            {"lpips", required_argument, 0, OPT_LPIPS},
                                            {"help", no_argument, 0, OPT_HELP},
                                            {0, 0, 0, 0}};
    const char *sa = NULL, *sb = NULL, *dir_b = NULL;
    double speedups[16], targets[PAIRED_METRICS][16];
    int nspeed = 0, ntarget[PAIRED_METRICS] = {0};
    int opt;
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case OPT_STRATEGY: sa = optarg; break;
        case OPT_AGAINST: sb = optarg; break;
        case OPT_AGAINST_DIR: dir_b = optarg; break;
        case OPT_SPEEDUP:
            if (parse_list("--speedup", optarg, speedups, 16, &nspeed)) return 2;
            for (int i = 0; i < nspeed; i++)
                if (!(speedups[i] > 0)) return cli_usage_error("compare", "--speedup values must be positive");
            break;
        case OPT_PSNR:
        case OPT_SSIM:
        case OPT_LPIPS: {
            int m = opt - OPT_PSNR;
            char flag[16];
            snprintf(flag, sizeof flag, "--%s", paired_metric_names[m]);
            if (parse_list(flag, optarg, targets[m], 16, &ntarget[m])) return 2;
            break;
        }
        case OPT_HELP: compare_usage(stdout); return 0;
        default: return cli_usage_error("compare", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 1) return cli_usage_error("compare", "expected one sweep folder");
    if (!sa || !sb) return cli_usage_error("compare", "--strategy and --against are required");
    const char *dir_a = argv[optind];
    if (!dir_b) dir_b = dir_a;
    Summary a, b;
    Error err = {{0}};
    if (summary_load(dir_a, &a, &err)) {
        fprintf(stderr, "cachebench compare: %s\n", err.msg);
        return 1;
    }
    if (dir_b != dir_a && summary_load(dir_b, &b, &err)) {
        fprintf(stderr, "cachebench compare: %s\n", err.msg);
        summary_free(&a);
        return 1;
    }
    const Summary *pb = dir_b != dir_a ? &b : &a;
    int rc = 1;
    if (paired_check(&a, sa, pb, sb, &err)) {
        fprintf(stderr, "cachebench compare: %s vs %s: %s\n", dir_a, dir_b, err.msg);
        goto done;
    }
    if (!nspeed) nspeed = paired_default_speedups(&a, sa, pb, sb, speedups, 16);
    printf("%s (A) vs %s (B), pairs matched by prompt and seed%s%s\n", sa, sb, dir_b != dir_a ? "; B from " : "",
           dir_b != dir_a ? dir_b : "");
    if (!nspeed) printf("The two strategies' FLOP speed-up ranges do not overlap: no matched speed-up to compare at.\n");
    else
        printf("\nAt matched FLOP speed-up: mean of A - B over pairs [95%% bootstrap CI], %% of pairs A wins\n"
               "%9s %7s  %28s  %28s  %28s\n",
               "speed-up", "pairs", "ΔPSNR (dB)", "ΔSSIM", "ΔLPIPS");
    for (int i = 0; i < nspeed; i++) {
        PairedAtSpeedup r;
        if (paired_at_speedup(&a, sa, pb, sb, speedups[i], &r, &err)) {
            fprintf(stderr, "cachebench compare: %s\n", err.msg);
            goto done;
        }
        printf("%8.2fx %3d/%-3d", r.speedup, r.diff[PAIRED_PSNR].pairs, r.pairs_total);
        print_ci("%+.2f", &r.diff[PAIRED_PSNR]);
        print_ci("%+.4f", &r.diff[PAIRED_SSIM]);
        print_ci("%+.4f", &r.diff[PAIRED_LPIPS]);
        printf("\n");
    }
    int header = 0;
    for (int m = 0; m < PAIRED_METRICS; m++)
        for (int i = 0; i < ntarget[m]; i++) {
            if (!header++)
                printf("\nAt matched quality: FLOP speed-up each reaches (means over pairs where both do), A - B "
                       "[95%% CI], %% of pairs A wins\n%-14s %7s %9s %9s  %28s\n",
                       "target", "pairs", "A", "B", "Δspeed-up");
            PairedAtQuality q;
            if (paired_at_quality(&a, sa, pb, sb, m, targets[m][i], &q, &err)) {
                fprintf(stderr, "cachebench compare: %s\n", err.msg);
                goto done;
            }
            char t[32];
            snprintf(t, sizeof t, "%s %s %g", paired_metric_names[m], m == PAIRED_LPIPS ? "<=" : ">=", q.target);
            printf("%-14s %7d %8.2fx %8.2fx", t, q.diff.pairs, q.a_mean, q.b_mean);
            print_ci("%+.2f", &q.diff);
            printf("\n");
        }
    rc = 0;
done:
    summary_free(&a);
    if (dir_b != dir_a) summary_free(&b);
    return rc;
}
