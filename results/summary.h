/* A sweep folder's summary, report and plots, made from its run files alone (runs/<run_id>.h5), so `cachebench plot DIR`
 * redraws exactly what the sweep drew at its end.
 *
 * summary.tsv: a header line, then one row per run file, sorted by strategy (registry order), setting (numbers
 * compared as numbers), prompt id and seed. Columns:
 *   run_id strategy params prompt_id seed steps calls_computed calls_total hit_rate wall_s speedup_wall
 *   speedup_flops psnr ssim lpips status time_s cpu_s load_avg
 * params: the canonical spec; hit_rate: model calls reused / calls total; wall_s: the measured wall time; time_s: the
 * robust time (above); speedup_wall: robust time of the baseline (strategy none) of the same prompt
 * and seed / this run's; cpu_s: process CPU seconds; load_avg: the machine's 1-minute load average (the higher of
 * start and end of the run); speedup_flops: FLOPs of full inference / FLOPs spent;
 * psnr, ssim, lpips: video-level means against that baseline (psnr "inf" when identical); status: complete|failed.
 * "NA" where a value does not exist: LPIPS when the build has no LPIPS weights, metrics and speed-ups of failed
 * runs, speed-up of a run whose baseline is missing or failed.
 *
 * Aggregates (report table, trade-off plots): per setting, over its complete runs that have a complete baseline:
 *   latency = mean robust time; speed-up = mean baseline robust time / mean robust time (over the same prompts and seeds);
 *   PSNR = 10·log10(1 / mean MSE) over all the runs' pixels (inf only when every run is identical to its baseline;
 *   the mean of per-run PSNRs would be inf as soon as one is); SSIM, LPIPS = means; FLOP speed-up = mean.
 * Best setting of a strategy: the highest-PSNR setting among those with FLOP speed-up >= min_speedup (default 1.5;
 * FLOPs rather than wall time so that the choice does not depend on how busy the machine was); when none reaches
 * it, the setting with the highest FLOP speed-up. Its "best run" is the run on the report prompt: the first
 * prompt and seed (in row order) whose baseline is complete.
 * Uncertainty: every aggregate gets a 95% percentile bootstrap interval over the setting's (prompt, seed) pairs
 * (results/stats.h), in settings.tsv, report.md and the trade-off plots' error bars (plots/ci_<metric>.dat).
 * report.md also lists the worst pairs of each setting (lowest PSNR) and, when a sweep has two or more strategies
 * besides none, the paired comparison (results/paired.h) of the best strategy against each other one. */
#ifndef CACHEBENCH_SUMMARY_H
#define CACHEBENCH_SUMMARY_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "core/error.h"
#include "results/record.h"

/* A setting whose wall-clock speed-up departs from its FLOP speed-up by more than this fraction is flagged in the
 * report: either the strategy spends time that FLOPs do not count (signals, profiling, memory traffic) or the
 * timing was disturbed. */
#define SUMMARY_TIMING_MARGIN 0.25

/* Robust timing. A step's time is min(wall time, process CPU time) on the CPU backend: with one thread the CPU time
 * leaves out the time the process waited for a core while other processes ran; with several threads the CPU time
 * exceeds the wall time and the wall time counts. On other backends (CUDA) it is the wall time: the host's CPU time
 * says nothing about the device's work. Steps of equal work (same FLOPs, same branches computed) form a class, and a step counts
 * the median time of its class, pooled over every complete run of the same setting (the same spec: the baselines
 * are one setting): a slow run, a slow stretch or the first calls of a process move a median of many steps little,
 * where they move a single run's sum a lot. A run's time_s is the sum over its steps. */
typedef struct {
    double flops;
    uint8_t computed[2];
    double seconds;                 /* min(wall, CPU) */
} SummaryStep;

/* The same rule over one record's steps alone. NAN for a failed run. */
double summary_robust_seconds(const RunRecord *r);

typedef struct {
    char run_id[512];
    char file[2800];                /* path of the run file: <sweep>/runs/<run_id>.h5 */
    char strategy[64];
    char spec[256];
    char prompt_id[64];
    char prompt[512];
    uint64_t seed;
    int steps;
    int calls_computed, calls_total;
    double hit_rate;
    double wall_s;                  /* wall-clock seconds of the sampling loop, as measured */
    double time_s;                  /* robust time (above): what speed-ups and latencies use */
    SummaryStep *step_times;        /* owned; n_step_times == 0 for failed runs */
    int n_step_times;
    double cpu_s, load_avg;         /* process CPU seconds; the higher 1-minute load average (start, end); NAN: unknown */
    double speedup_wall, speedup_flops; /* NAN: NA */
    double psnr, ssim, lpips;           /* NAN: NA; psnr +inf when identical */
    int failed, failed_step;
    int baseline;                   /* row of the baseline of the same prompt and seed; -1 when none */
} SummaryRow;

/* One line of <sweep>/plan.tsv (written by the sweep: spec, prompt_id, seed, run_id per planned run). */
typedef struct {
    char spec[256];
    char prompt_id[64];
    uint64_t seed;
} PlannedPair;

typedef struct {
    SummaryRow *rows;
    int count;
    PlannedPair *plan;              /* the sweep's current plan; NULL (plan_count 0) when the folder has no plan.tsv */
    int plan_count;
    /* From the first run file: a sweep folder holds one model, weights, step count and backend. */
    char model[64], weights_path[1024], weights_sha256[65], backend[16], device[128], version[64];
    int steps, frames, height, width;
    int lpips_available;            /* some run carries LPIPS values */
    int unreadable;                 /* run files record_read rejected; left out */
    char unreadable_msg[1200];      /* the first one's error */
} Summary;

/* The sweep folder's path must be shorter than 2048 characters. Reads every runs/<name>.h5 of the sweep folder (not the .tmp files). A folder without runs/ is an error. */
int summary_load(const char *sweep_dir, Summary *s, Error *err);
void summary_free(Summary *s);
/* Sets every complete row's time_s from the step times pooled over its setting (rows sorted, settings contiguous);
 * summary_load calls it. */
int summary_pool_times(Summary *s, Error *err);
/* Writes summary.tsv at path (atomically). */
int summary_write_tsv(const Summary *s, const char *path, Error *err);

typedef struct {
    char strategy[64];
    char spec[256];
    int first, count;               /* rows [first, first + count) */
    int used;                       /* complete runs with a complete baseline: what the means are over */
    int failed;
    double latency, base_latency, speedup_wall, speedup_flops, psnr, ssim, lpips; /* NAN when used == 0 */
    /* 95% percentile bootstrap intervals over the (prompt, seed) pairs of the used runs (results/stats.h: 2000
     * resamples, fixed seed): the statistic above recomputed on each resample. NAN when there is no value. */
    double ci_latency[2], ci_speedup_wall[2], ci_speedup_flops[2], ci_psnr[2], ci_ssim[2], ci_lpips[2];
    int timing_flag;                /* |speedup_wall / speedup_flops - 1| > SUMMARY_TIMING_MARGIN */
    int planned;                    /* (prompt, seed) pairs the plan asks of this setting; 0: not in the plan/no plan */
    int in_plan;                    /* 1 when the folder has no plan or the plan has this setting */
    int partial;                    /* some required pair has no finished run: every aggregate above is NAN */
} SummaryGroup;

/* One group per setting, in row order, with its intervals. *groups is malloc'd. The (prompt, seed) pairs a setting
 * must cover: its planned pairs (plan.tsv), else the pairs of the baseline runs. A pair is covered by a finished run (complete or
 * failed) of the setting, or by a failed baseline (the sweep skips the pair). A setting that misses one is partial:
 * its means would be over a different subset than the other rows', so they are left NAN (the report says
 * "partial"; plots and the best-setting rule leave it out). */
int summary_groups(const Summary *s, SummaryGroup **groups, int *count, Error *err);

typedef struct {
    char strategy[64];
    int best_group;                 /* -1 when no setting has metrics */
    int best_row;                   /* the best setting's run on the report prompt; -1 when none */
} StrategyBest;

/* The strategies present (none excluded), in row order, with their best setting (rule above). report_row is set
 * to the baseline row of the report prompt (-1 when no baseline is complete). *best is malloc'd. */
int summary_best(const Summary *s, const SummaryGroup *g, int ng, double min_speedup, StrategyBest **best, int *count,
                 int *report_row, Error *err);

typedef struct {
    double min_speedup;             /* <= 0: 1.5 */
    const char *templates_dir;      /* NULL: plots/ beside the executable's ../, else ./plots */
    int x_wall;                     /* trade-off plots against the wall-clock speed-up (default: FLOP speed-up) */
    int all;                        /* report and plot settings that are not in the current plan.tsv too */
} RenderOptions;

typedef struct {
    int runs, failed;
    int unreadable;
    char unreadable_msg[1200];
    int plots;                      /* PNG files drawn */
} RenderResult;

/* Everything: summary.tsv, plots/<name>.dat and .png (results/plots.h), plots/strip.png and report.md. A plotting
 * failure (gnuplot missing, a template error) is returned after summary.tsv and report.md are written. */
int summary_render(const char *sweep_dir, const RenderOptions *opt, RenderResult *res, Error *err);

/* settings.tsv: one row per setting with each aggregate of report.md and its 95% bootstrap interval:
 *   strategy params pairs latency latency_lo latency_hi speedup_wall speedup_wall_lo speedup_wall_hi ... for
 *   speedup_flops, psnr, ssim, lpips (NA where a value does not exist). Written atomically. */
int summary_write_settings_tsv(const SummaryGroup *g, int ng, const char *path, Error *err);

/* Atomic text files (summary.tsv, report.md, baselines): write to "<path>.<pid>.tmp", then close_tmp renames it into
 * place; on any failure nothing is left at path or at the temporary name. */
FILE *summary_open_tmp(const char *path, char *tmp, size_t cap, Error *err);
int summary_close_tmp(FILE *f, const char *tmp, const char *path, Error *err);

/* Text of a value as in summary.tsv: "NA" for NAN, "inf" for +inf, else printf with fmt. */
void summary_format(char *buf, size_t cap, const char *fmt, double v);

#endif
