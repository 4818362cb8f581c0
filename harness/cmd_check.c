/* cachebench check: a sweep folder against a golden baseline file, and candidate strategies against a reference
 * one, with an exit status a CI job can act on (results/baseline.h, results/paired.h). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/cli.h"
#include "harness/plugins.h"
#include "results/baseline.h"
#include "results/paired.h"
#include "results/summary.h"

static void check_usage(FILE *out) {
    fprintf(out,
            "Usage: cachebench check DIR --baseline FILE [options]     (the gate)\n"
            "       cachebench check DIR --must-beat NAME [options]\n"
            "       cachebench check DIR --write-baseline FILE          (record DIR as the new baseline)\n"
            "Checks the sweep in DIR and exits 0 when it passes, 1 when it fails or cannot be checked; every failure\n"
            "is one line of the readable diff on stdout.\n\n"
            "  --baseline FILE      compare with a baseline file written by --write-baseline. Refused (exit 1) when it\n"
            "                       is of another model, weights, step count or video size. Fails when a baseline\n"
            "                       setting is missing, or its PSNR/SSIM falls (LPIPS rises) by more than the\n"
            "                       tolerance, or its FLOP speed-up falls by more than --tol-speedup (relative)\n"
            "  --decisions MODE     exact: also fail when any run's per-step compute/reuse decisions differ from the\n"
            "                       baseline's (they are deterministic on the CPU backend); ignore (default)\n"
            "  --tol-psnr DB        default 0.5      --tol-ssim X   default 0.005\n"
            "  --tol-lpips X        default 0.005    --tol-speedup X default 0.01\n"
            "  --must-beat NAME     fail when a candidate strategy is worse than NAME at a matched FLOP speed-up with\n"
            "                       the 95%% bootstrap interval of the paired PSNR difference below zero (see\n"
            "                       `cachebench compare --help` for the definitions). A speed-up that one of the two\n"
            "                       does not reach is skipped (a 'skip' line); when nothing at all could be\n"
            "                       compared, the check fails\n"
            "  --strategy NAME      the candidate(s) for --must-beat, repeatable (default: every strategy in DIR but\n"
            "                       none and NAME)\n"
            "  --speedup LIST       speed-ups for --must-beat (default: 3 points over the range both cover)\n"
            "  --plugin FILE        load a plug-in strategy (as in run and sweep), so its runs sort with the others\n"
            "  --write-baseline FILE  write DIR's baseline (TSV: per setting the aggregates, per run the decision\n"
            "                       string and metrics) and exit; combine with nothing else\n"
            "  --help               this text\n"
            "Exit status: 0 pass, 1 fail or error, 2 bad usage.\n");
}

static int parse_speedups(const char *text, double *out, int cap, int *n) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", text);
    *n = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (*n == cap) return cli_usage_error("check", "too many values for --speedup (at most %d)", cap), -1;
        if (cli_parse_double("check", "--speedup", t, 1e-6, 1e6, &out[(*n)++])) return -1;
    }
    return *n ? 0 : (cli_usage_error("check", "empty list for --speedup"), -1);
}

static int must_beat(const Summary *s, const char *ref, const char *const *cands, int ncand, const double *speedups,
                     int nspeed, Error *err) {
    const char *list[64];
    int n = 0;
    if (ncand) {
        for (int i = 0; i < ncand; i++) list[n++] = cands[i];
    } else {
        for (int i = 0; i < s->count && n < 64; i++) {
            const char *name = s->rows[i].strategy;
            if (!strcmp(name, "none") || !strcmp(name, ref) || (n && !strcmp(list[n - 1], name))) continue;
            list[n++] = name;
        }
    }
    int fails = 0, compared = 0;
    for (int c = 0; c < n; c++) {
        if (paired_check(s, list[c], s, ref, err)) return -1;
        double sp[16];
        int ns = nspeed;
        if (ns) memcpy(sp, speedups, (size_t)ns * sizeof *sp);
        else ns = paired_default_speedups(s, list[c], s, ref, sp, 16);
        if (!ns) {
            printf("skip %s vs %s: their FLOP speed-up ranges do not overlap: no matched speed-up to compare at\n",
                   list[c], ref);
            continue;
        }
        for (int i = 0; i < ns; i++) {
            PairedAtSpeedup r;
            if (paired_at_speedup(s, list[c], s, ref, sp[i], &r, err)) return -1;
            const PairedDiff *d = &r.diff[PAIRED_PSNR];
            if (!d->pairs) {
                printf("skip %s vs %s at %.2fx: no pair where both reach this speed-up\n", list[c], ref, sp[i]);
                continue;
            }
            compared++;
            if (d->hi < 0) {
                printf("FAIL %s vs %s at %.2fx: PSNR %+.2f dB [95%% CI %+.2f, %+.2f] over %d pairs, wins %.0f%%\n",
                       list[c], ref, sp[i], d->mean, d->lo, d->hi, d->pairs, 100 * d->win);
                fails++;
            } else {
                printf("ok   %s vs %s at %.2fx: PSNR %+.2f dB [95%% CI %+.2f, %+.2f] over %d pairs, wins %.0f%%\n",
                       list[c], ref, sp[i], d->mean, d->lo, d->hi, d->pairs, 100 * d->win);
            }
        }
    }
    if (!compared) {
        printf("FAIL must-beat %s: no candidate could be compared with it at any matched speed-up\n", ref);
        fails++;
    }
    return fails;
}

int cmd_check(int argc, char **argv) {
    enum {
        OPT_BASELINE = 1000, OPT_WRITE, OPT_DECISIONS, OPT_TOL_PSNR, OPT_TOL_SSIM, OPT_TOL_LPIPS, OPT_TOL_SPEEDUP,
        OPT_MUST_BEAT, OPT_STRATEGY, OPT_SPEEDUP, OPT_PLUGIN, OPT_HELP
    };
    static const struct option options[] = {{"baseline", required_argument, 0, OPT_BASELINE},
                                            {"write-baseline", required_argument, 0, OPT_WRITE},
                                            {"decisions", required_argument, 0, OPT_DECISIONS},
                                            {"tol-psnr", required_argument, 0, OPT_TOL_PSNR},
                                            {"tol-ssim", required_argument, 0, OPT_TOL_SSIM},
                                            {"tol-lpips", required_argument, 0, OPT_TOL_LPIPS},
                                            {"tol-speedup", required_argument, 0, OPT_TOL_SPEEDUP},
                                            {"must-beat", required_argument, 0, OPT_MUST_BEAT},
                                            {"strategy", required_argument, 0, OPT_STRATEGY},
                                            {"speedup", required_argument, 0, OPT_SPEEDUP},
                                            {"plugin", required_argument, 0, OPT_PLUGIN},
                                            {"help", no_argument, 0, OPT_HELP},
                                            {0, 0, 0, 0}};
    if (plugins_load_from_args("check", argc, argv)) return 1;
    BaselineTolerance tol = {.exact_decisions = 0, .tol_psnr = 0.5, .tol_ssim = 0.005, .tol_lpips = 0.005,
                             .tol_speedup = 0.01};
    const char *golden_path = NULL, *write_path = NULL, *ref = NULL, *cands[64];
    double speedups[16];
    int ncand = 0, nspeed = 0, opt;
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case OPT_BASELINE: golden_path = optarg; break;
        case OPT_WRITE: write_path = optarg; break;
        case OPT_DECISIONS:
            if (strcmp(optarg, "exact") == 0) tol.exact_decisions = 1;
            else if (strcmp(optarg, "ignore") == 0) tol.exact_decisions = 0;
            else return cli_usage_error("check", "invalid value '%s' for --decisions: exact or ignore", optarg);
            break;
        case OPT_TOL_PSNR:
            if (cli_parse_double("check", "--tol-psnr", optarg, 0, 1e3, &tol.tol_psnr)) return 2;
            break;
        case OPT_TOL_SSIM:
            if (cli_parse_double("check", "--tol-ssim", optarg, 0, 1, &tol.tol_ssim)) return 2;
            break;
        case OPT_TOL_LPIPS:
            if (cli_parse_double("check", "--tol-lpips", optarg, 0, 10, &tol.tol_lpips)) return 2;
            break;
        case OPT_TOL_SPEEDUP:
            if (cli_parse_double("check", "--tol-speedup", optarg, 0, 1, &tol.tol_speedup)) return 2;
            break;
        case OPT_MUST_BEAT: ref = optarg; break;
        case OPT_STRATEGY:
            if (ncand == 64) return cli_usage_error("check", "too many --strategy flags (at most 64)");
            cands[ncand++] = optarg;
            break;
        case OPT_SPEEDUP:
            if (parse_speedups(optarg, speedups, 16, &nspeed)) return 2;
            break;
        case OPT_PLUGIN: break; /* loaded above */
        case OPT_HELP: check_usage(stdout); return 0;
        default: return cli_usage_error("check", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 1) return cli_usage_error("check", "expected one sweep folder");
    if (write_path && (golden_path || ref))
        return cli_usage_error("check", "--write-baseline records a baseline; it does not combine with --baseline "
                                        "or --must-beat");
    if (!write_path && !golden_path && !ref)
        return cli_usage_error("check", "nothing to check: give --baseline FILE, --must-beat NAME or "
                                        "--write-baseline FILE");
    if ((ncand || nspeed) && !ref) return cli_usage_error("check", "--strategy and --speedup go with --must-beat");
    const char *dir = argv[optind];
    Error err = {{0}};
    Summary s;
    if (summary_load(dir, &s, &err)) {
        fprintf(stderr, "cachebench check: %s\n", err.msg);
        return 1;
    }
    int rc = 1, fails = 0;
    Baseline now = {0}, golden = {0};
    if (!s.count) {
        fprintf(stderr, "cachebench check: %s: no run files in runs/\n", dir);
        goto done;
    }
    if (write_path || golden_path) {
        if (baseline_from_summary(&s, &now, &err)) {
            fprintf(stderr, "cachebench check: %s\n", err.msg);
            goto done;
        }
    }
    if (write_path) {
        if (baseline_write(&now, write_path, &err)) {
            fprintf(stderr, "cachebench check: %s\n", err.msg);
            goto done;
        }
        printf("wrote %s: %d settings, %d runs of %s\n", write_path, now.n_settings, now.n_runs, dir);
        rc = 0;
        goto done;
    }
    if (golden_path) {
        if (baseline_read(golden_path, &golden, &err)) { /* the message names the file */
            fprintf(stderr, "cachebench check: %s\n", err.msg);
            goto done;
        }
        if (baseline_compatible(&golden, &now, &err)) {
            fprintf(stderr, "cachebench check: %s: refused: %s\n", golden_path, err.msg);
            goto done;
        }
        fails += baseline_check(&golden, &now, &tol, stdout);
    }
    if (ref) {
        int f = must_beat(&s, ref, cands, ncand, speedups, nspeed, &err);
        if (f < 0) {
            fprintf(stderr, "cachebench check: %s: %s\n", dir, err.msg);
            goto done;
        }
        fails += f;
    }
    if (fails) printf("check FAILED: %d failure(s) in %s\n", fails, dir);
    else printf("check passed: %s%s%s%s\n", dir, golden_path ? " matches " : "", golden_path ? golden_path : "",
                ref ? " (must-beat passed)" : "");
    rc = fails ? 1 : 0;
done:
    baseline_free(&golden);
    baseline_free(&now);
    summary_free(&s);
    return rc;
}
