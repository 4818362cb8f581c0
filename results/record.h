/* Run records in HDF5 (DESIGN §5). One file per run, written as "<path>.tmp" and renamed when complete.
 *
 * Layout (every dataset dimension has an attached dimension scale, so h5py and
 * xarray.open_dataset(path, group=G, engine="h5netcdf") open each group without special flags):
 *   /                 attributes: strategy, strategy_spec, model, weights_path, weights_sha256, prompt_id, prompt,
 *                     negative_prompt, seed, steps, solver, shift, guidance, backend, device, version, start_time,
 *                     status ("complete" | "failed"), failed_step, failure, frames, height, width,
 *                     conditioning (how the text was encoded: "vocabulary" | "contexts" | "random-stand-in"),
 *                     contexts_path, contexts_sha256, contexts_negative_id ("" unless conditioning is "contexts"),
 *                     strategy_source_sha256 (sha256 of the strategy's source file in the build that ran it),
 *                     video_space ("pixel": /video holds pixels, of a pixel-space model such as tiny or decoded
 *                     by a VAE; "latent": a preview of the first three latent channels of a latent model run
 *                     without a VAE, whose metrics then compare latents), vae_path, vae_sha256 ("" without a VAE).
 *                     latent_frames, latent_height, latent_width (the grid the model ran on, whatever /video holds).
 *                     The last eleven are optional on reading (older records read them as "" or 0).
 *   /steps            dims step[steps], branch[2] (the coordinate holds the names "cond", "uncond", so that
 *                     xarray's sel(branch="cond") works; attribute "names" = "cond,uncond" as before)
 *                     timestep(step), sigma(step), wall_seconds(step), cpu_seconds(step) (optional on reading:
 *                     NAN when absent), flops(step),
 *                     computed(step,branch) uint8, shared(step,branch) uint8 (optional on reading: 0), signal, accumulator, threshold, k, call_seconds (step,branch) float
 *                     optional SVG trace (runs of attention-planning strategies: svg, easycache+svg), with dims
 *                     layer[layers], head[heads]: svg_spatial_heads, svg_temporal_heads (step,branch,layer) int32,
 *                     svg_density (step,branch,layer,head) float, attn_flops, attn_flops_dense (step) double
 *   /video            dims frame, height, width, rgb; frames(frame,height,width,rgb) uint8
 *   /latents          optional: dims step, channel, lframe, lheight, lwidth; latents(step,...) float32 chunked per
 *                     step, deflate + shuffle
 *   /totals           attributes: wall_seconds, model_seconds, calls_total, calls_computed, calls_skipped, hit_rate,
 *                     calls_shared (optional on reading: 0),
 *                     flops_spent, flops_full, speedup_flops, peak_rss_kb, cpu_seconds (process CPU time of the
 *                     sampling loop, all threads), load_average_start, load_average_end (1-minute load average of
 *                     the machine before and after it; the last three optional on reading: NAN when absent)
 *   /metrics          optional (added against a baseline): dims frame; psnr(frame), ssim(frame), lpips(frame);
 *                     attributes psnr_mean, ssim_mean, lpips_mean (NAN when unavailable), lpips_available,
 *                     baseline (path of the baseline run). PSNR of identical frames is +inf.
 */
#ifndef CACHEBENCH_RECORD_H
#define CACHEBENCH_RECORD_H

#include <stdint.h>
#include <stdio.h>

#include "core/error.h"
#include "metrics/metrics.h" /* RunMetrics */

typedef struct {
    float timestep, sigma;
    double wall_seconds;            /* whole step, both branches and the sampler update */
    double cpu_seconds;             /* process CPU time of the step, all threads (NAN in older records) */
    double flops;                   /* model FLOPs spent in this step */
    uint8_t computed[2];
    float signal[2], accumulator[2], threshold[2], k[2];
    double call_seconds[2];
    int32_t layers_run[2];          /* block layers run by each call (0: reused before the stack; -1: no call, or an
                                     * older record) */
    double strategy_bytes;          /* bytes the strategy held after the step (NAN in older records) */
    uint8_t shared[2];              /* 1: the call was computed once for this run and other settings of a sweep
                                     * (harness/runner.h, fork trees); 0 alone (and in older records) */
} StepRecord;

typedef struct {
    /* attributes */
    char strategy[64];
    char strategy_spec[256];
    char model[64];
    char weights_path[1024];
    char weights_sha256[65];
    char prompt_id[64];
    char prompt[512];
    char negative_prompt[512];
    char conditioning[32];          /* "vocabulary" | "contexts" | "random-stand-in" ("" in older records) */
    char contexts_path[1024];       /* contexts file, its sha256 and the key of the negative context */
    char contexts_sha256[65];
    char contexts_negative_id[64];
    char strategy_source_sha256[65]; /* "" in older records */
    char video_space[16];           /* "pixel" | "latent" ("" in older records): what /video and its metrics are */
    char vae_path[1024];            /* VAE decoder checkpoint and its sha256; "" without one */
    char vae_sha256[65];
    int grid[3];                    /* latent (pixel) frames, height, width the model ran on; 0 in older records */
    uint64_t seed;
    int steps;
    char solver[16];
    float shift, guidance;
    char backend[16];
    char device[128];
    char version[64];
    char start_time[32];            /* ISO 8601 UTC */
    int failed;                     /* 1 when the output turned NaN/Inf */
    int failed_step;                /* -1 when not failed */
    char failure[256];

    /* per step: steps entries, owned */
    StepRecord *step;

    /* final video [frames][height][width][3], owned */
    int frames, height, width;
    uint8_t *video;

    /* optional latents [steps][lc][lf][lh][lw] (x after each step), owned, NULL when not recorded */
    float *latents;
    int lc, lf, lh, lw;

    /* totals */
    double wall_seconds, model_seconds;
    int calls_total, calls_computed, calls_skipped;
    int calls_shared;               /* calls computed together with other settings (0 alone and in older records) */
    double flops_spent, flops_full;
    long peak_rss_kb;
    double strategy_bytes_peak;     /* the most bytes the strategy held after any step (NAN in older records) */
    double cpu_seconds;             /* process CPU time over the sampling loop (NAN: unknown) */
    double load_average_start, load_average_end; /* 1-minute load average (NAN: unknown) */

    /* optional metrics against a baseline; frames == 0 when absent */
    RunMetrics metrics;

    /* optional SVG trace, owned (record_alloc_svg); svg_layers == 0 when absent. Per step, branch and layer, of
     * the computed model calls only (a reused call leaves 0 heads and density NAN): */
    int svg_layers, svg_heads;
    int32_t *svg_spatial_heads, *svg_temporal_heads; /* [steps][2][svg_layers]: heads run with each pattern */
    float *svg_density;             /* [steps][2][svg_layers][svg_heads]: fraction of (query, key) pairs attended */
    double *attn_flops;             /* [steps]: self-attention FLOPs spent by the step's computed calls */
    double *attn_flops_dense;       /* [steps]: what dense attention would have spent on those calls */
} RunRecord;

/* Writes path.tmp then renames to path. On failure nothing is left at path or path.tmp. */
int record_write(const char *path, const RunRecord *r, Error *err);
/* Reads everything back (latents too when present). Validates the layout: a foreign or corrupt HDF5 file is an
 * error naming the file and what is missing, never a crash. */
int record_read(const char *path, RunRecord *r, Error *err);
/* The same without the video and the latents (video NULL, frames/height/width and the latent shape still set): what
 * a sweep needs to recognise a finished run, at a cost independent of the video size. */
int record_read_header(const char *path, RunRecord *r, Error *err);
/* Frees the owned arrays and zeroes the struct. */
void record_free(RunRecord *r);
/* Allocates the SVG trace for steps x layers x heads: heads counts and FLOPs 0, density NAN. */
int record_alloc_svg(RunRecord *r, int steps, int layers, int heads, Error *err);
/* Adds or replaces /metrics in a finished record (atomically: copy to .tmp, modify, rename). */
int record_write_metrics(const char *path, const RunMetrics *m, Error *err);
/* Human-readable summary (attributes, totals, per-step decisions compactly, metrics if any). */
int record_print_info(const char *path, FILE *out, Error *err);

#endif
