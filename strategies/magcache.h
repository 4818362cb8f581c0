/* MagCache magnitude-ratio tables (strategies/magcache.c), shared with `cachebench calibrate --for magcache`.
 *
 * File format (text, written by magcache_write_table, read by magcache_read_table):
 *   - lines whose first non-blank character is '#' are comments;
 *   - the first other line is exactly "format cachebench-magcache-ratios 1";
 *   - then metadata lines "KEY VALUE" (KEY a word starting with a letter, VALUE the rest of the line):
 *       model, weights, weights_sha256, solver, shift, guidance, size, prompts, prompt, seed, steps
 *     all optional for the reader except that "steps N", when present, must equal the number of rows;
 *   - then one row per sampling step 0..steps-1, 7 blank-separated numbers:
 *       step ratio_cond ratio_uncond std_cond std_uncond cos_dis_cond cos_dis_uncond
 *     step counts 0, 1, 2, ...; ratio_* are finite and > 0; std_* and cos_dis_* are numbers or nan.
 * Row 0 holds the ratios 1 1 (the official table's padding: no previous residual) and nan statistics.
 * For step t >= 1 and branch b, with r = block-stack output - input of that call and r' the one of step t-1:
 *   ratio   = mean over tokens of |r_tok| / |r'_tok|          (the magnitude ratio γ_t)
 *   std     = standard deviation over tokens of that ratio (unbiased, as torch.std)
 *   cos_dis = mean over tokens of 1 - cos(r_tok, r'_tok)       (eps 1e-8)
 * rounded to 5 decimals as magcache_calibration does (MagCache4Wan2.1/magcache_generate.py). The official script's
 * interleaved list mag_ratios[2t + b] is column ratio_cond (b = 0) / ratio_uncond (b = 1) of row t. */
#ifndef CACHEBENCH_MAGCACHE_H
#define CACHEBENCH_MAGCACHE_H

#include <stdint.h>

#include "core/error.h"

#define MAGCACHE_FORMAT_LINE "format cachebench-magcache-ratios 1"

typedef struct {
    int steps;
    double *ratio[2];       /* [steps] per branch (0 cond, 1 uncond) */
    double *std[2];         /* [steps], nan where not measured */
    double *cos_dis[2];     /* [steps], nan where not measured */
} MagTable;

/* What a calibrated table was measured on, written as metadata (NULL strings are left out). */
typedef struct {
    const char *model, *weights, *weights_sha256, *solver, *prompts_path, *prompt_id;
    double shift, guidance;
    uint64_t seed;
    int frames, height, width;
} MagTableMeta;

/* Allocates the columns of a table of steps rows (nan-filled, ratio row 0 = 1); -1 when out of memory. */
int magcache_table_alloc(MagTable *t, int steps, Error *err);
void magcache_table_free(MagTable *t);

/* Reads path; an error names the file (and line) and says what is wrong. */
int magcache_read_table(const char *path, MagTable *t, Error *err);
/* Writes t with meta, beside path and renamed into place (a failed write leaves no truncated table). */
int magcache_write_table(const char *path, const MagTable *t, const MagTableMeta *meta, Error *err);

/* The official nearest_interp: dst[i] = src[round(i * (n - 1) / (target - 1))], rounding half to even as numpy's
 * np.round; target 1 gives the last element. n >= 1, target >= 1. */
void magcache_nearest_interp(const double *src, int n, double *dst, int target);

#endif
