/* cachebench plot: summary.tsv, plots and report.md of a sweep folder, redrawn from its run files alone. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "harness/cli.h"
#include "results/summary.h"

static void plot_usage(FILE *out) {
    fprintf(out,
            "Usage: cachebench plot SWEEP_DIR [options]\n"
            "Redraws everything a sweep writes at its end from the run files in SWEEP_DIR/runs/ alone (also while\n"
            "the sweep is still running, for a look at partial results):\n"
            "  SWEEP_DIR/summary.tsv     one row per run: run_id strategy params prompt_id seed steps calls_computed\n"
            "                            calls_total hit_rate wall_s speedup_wall speedup_flops psnr ssim lpips status\n"
            "                            time_s cpu_s load_avg\n"
            "                            (NA where a value does not exist, inf for PSNR of identical videos)\n"
            "  SWEEP_DIR/settings.tsv    one row per setting: each aggregate of the report with its 95%% bootstrap\n"
            "                            interval over prompt x seed pairs (strategy params pairs, then X X_lo X_hi)\n"
            "  SWEEP_DIR/report.md       table per setting (Method | Runs | Latency | Speed-up (wall) | Speed-up\n"
            "                            (FLOPs) | PSNR | SSIM | LPIPS, means over prompts and seeds; \"partial\"\n"
            "                            until every planned pair is done), best setting per strategy, frames, plots\n"
            "  SWEEP_DIR/plots/          tradeoff_{psnr,ssim,lpips}.png (Pareto fronts), steps_<strategy>.png,\n"
            "                            timeline_<strategy>.png, strip.png, and the gnuplot data files *.dat\n\n"
            "  --min-speedup X      best-setting rule: the highest-PSNR setting among those with a FLOP speed-up\n"
            "                       >= X (default 1.5); when none reaches X, the fastest\n"
            "  --x flops|wall       x axis of the trade-off plots: FLOP speed-up (default) or wall-clock speed-up\n"
            "  --all                also settings that are not in the sweep's current plan (plan.tsv)\n"
            "  --templates DIR      gnuplot templates (default: the repository's plots/ folder)\n"
            "  --help               this text\n"
            "Needs gnuplot (Debian: gnuplot-nox). Exit status: 0 done, 1 error, 2 bad usage.\n");
}

int cmd_plot(int argc, char **argv) {
    enum { OPT_MIN_SPEEDUP = 1000, OPT_TEMPLATES, OPT_X, OPT_ALL, OPT_HELP };
    static const struct option options[] = {{"min-speedup", required_argument, 0, OPT_MIN_SPEEDUP},
                                            {"x", required_argument, 0, OPT_X},
                                            {"all", no_argument, 0, OPT_ALL},
                                            {"templates", required_argument, 0, OPT_TEMPLATES},
                                            {"help", no_argument, 0, OPT_HELP},
                                            {0, 0, 0, 0}};
    RenderOptions ro = {.min_speedup = 1.5};
    int opt;
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case OPT_MIN_SPEEDUP:
            if (cli_parse_double("plot", "--min-speedup", optarg, 0.0, 1e6, &ro.min_speedup)) return 2;
            break;
        case OPT_TEMPLATES: ro.templates_dir = optarg; break;
        case OPT_X:
            if (strcmp(optarg, "flops") && strcmp(optarg, "wall"))
                return cli_usage_error("plot", "--x takes flops or wall, not '%s'", optarg);
            ro.x_wall = strcmp(optarg, "wall") == 0;
            break;
        case OPT_ALL: ro.all = 1; break;
        case OPT_HELP: plot_usage(stdout); return 0;
        default: return cli_usage_error("plot", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 1) return cli_usage_error("plot", "expected one sweep folder");
    const char *dir = argv[optind];
    Error err = {{0}};
    RenderResult res;
    if (summary_render(dir, &ro, &res, &err)) {
        fprintf(stderr, "cachebench plot: %s\n", err.msg);
        return 1;
    }
    if (res.unreadable)
        fprintf(stderr, "cachebench plot: %d file(s) in %s/runs could not be read and are left out (first: %s)\n",
                res.unreadable, dir, res.unreadable_msg);
    printf("%s: %d runs (%d failed): wrote summary.tsv, report.md and %d images in plots/\n", dir, res.runs,
           res.failed, res.plots);
    return 0;
}
