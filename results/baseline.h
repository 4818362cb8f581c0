/* Golden baselines of a sweep for regression gates (`cachebench check`, README "Regression gates").
 *
 * A baseline file (TSV) holds what identifies the sweep (model, weights sha256, steps, video size), then per setting
 * its aggregates (runs, FLOP speed-up, PSNR, SSIM, LPIPS as in report.md), then per run its decision string and
 * metrics:
 *   # cachebench baseline 1
 *   model	tiny
 *   weights_sha256	<64 hex>
 *   steps	6
 *   video	<frames>x<height>x<width>
 *   setting	<spec>	<runs>	<speedup_flops>	<psnr>	<ssim>	<lpips>
 *   run	<spec>	<prompt_id>	<seed>	<decisions>	<speedup_flops>	<psnr>	<ssim>	<lpips>
 * Numbers as %.6f, "inf" for identical videos, "NA" where a value does not exist. The decision string has one
 * character per step for the cond branch, '/', then one per step for the uncond branch: C computed, R reused (the
 * model output or the block stack); a failed run is "failed".
 *
 * A check fails when (each a line of the readable diff):
 *   - a baseline setting or (with exact decisions) run is missing from the sweep,
 *   - decisions == exact and a run's decision string differs (the first differing step is named),
 *   - a setting's PSNR falls below the baseline's by more than tol_psnr dB (inf counts as 100 dB), its SSIM by more
 *     than tol_ssim, its LPIPS rises by more than tol_lpips, or its FLOP speed-up falls by more than tol_speedup
 *     (relative).
 * Settings of the sweep that the baseline lacks are listed, not failed.
 *
 * JSON (a path ending in .json on writing; a file starting with '{' on reading) holds the same: {"format":
 * "cachebench baseline 1", "model", "weights_sha256", "steps", "video": [frames, height, width], "settings": [{"spec",
 * "runs", "speedup_flops", "psnr", "ssim", "lpips"}], "runs": [{"spec", "prompt_id", "seed" (a string: uint64),
 * "decisions", "speedup_flops", "psnr", "ssim", "lpips"}]}, NA as null, inf as the string "inf". */
#ifndef CACHEBENCH_BASELINE_H
#define CACHEBENCH_BASELINE_H

#include <stdint.h>
#include <stdio.h>

#include "core/error.h"
#include "results/summary.h"

typedef struct {
    char spec[256];
    char prompt_id[64];
    uint64_t seed;
    int runs;                       /* setting lines: runs averaged; run lines: 1 */
    char *decisions;                /* run lines: owned; NULL for setting lines */
    double speedup_flops, psnr, ssim, lpips;
} BaselineEntry;

typedef struct {
    char model[64], weights_sha256[65];
    int steps, frames, height, width;
    BaselineEntry *settings, *runs;
    int n_settings, n_runs;
} Baseline;

typedef struct {
    int exact_decisions;
    double tol_psnr, tol_ssim, tol_lpips, tol_speedup;
} BaselineTolerance;

/* The baseline of a loaded sweep (reads each run's decisions from its run file). */
int baseline_from_summary(const Summary *s, Baseline *b, Error *err);
/* Writes atomically (path.tmp, rename): nothing is left at path on failure. */
int baseline_write(const Baseline *b, const char *path, Error *err);
/* Reads and validates; errors name the file and line. */
int baseline_read(const char *path, Baseline *b, Error *err);
void baseline_free(Baseline *b);

/* Refuses a baseline of another model, weights, step count or video size (the error names the difference). */
int baseline_compatible(const Baseline *golden, const Baseline *now, Error *err);

/* Writes the readable diff to out and returns the number of failures (0: pass). */
int baseline_check(const Baseline *golden, const Baseline *now, const BaselineTolerance *tol, FILE *out);

#endif
