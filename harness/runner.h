/* The sampling loop (DESIGN §1, §3): the solver's steps (harness/solvers/) over its schedule, with classifier-free
 * guidance (cond call first, then uncond), asking the strategy around every model call, timing every step and call,
 * counting FLOPs spent, and filling the per-step trace, totals and final video of a RunRecord.
 * The caller fills the record's descriptive attributes (prompt, strategy spec, model, ...). */
#ifndef CACHEBENCH_RUNNER_H
#define CACHEBENCH_RUNNER_H

#include <stdint.h>

#include "core/error.h"
#include "harness/solvers/solver.h"
#include "models/dit/engine.h"
#include "results/record.h"
#include "strategies/strategy.h"

typedef struct {
    const SolverKind *solver;   /* NULL: euler */
    int steps;
    float shift;
    float guidance;             /* 1 disables CFG: only the cond branch runs */
    uint64_t seed;
    int F, H, W;                /* latent grid; channels = model in_dim */
    const float *text[2];       /* host [text_len][text_dim] for cond and uncond */
    int record_latents;         /* keep x after every step in the record */
    /* Called after every step; may be NULL. */
    void (*progress)(void *user, int step, int steps, double elapsed_seconds);
    void *progress_user;
} RunSettings;

/* Runs one trajectory. On success (also when the output turned NaN/Inf: the record says failed and where)
 * returns 0; returns -1 only for errors that prevent running (allocation, bad geometry).
 * final_x (host, may be NULL) receives x at the end. */
int runner_sample(Engine *e, Strategy *s, const RunSettings *rs, RunRecord *rec, float *final_x, Error *err);

/* Initial noise: standard normal from Philox keyed by seed (stream 0), identical on every backend. */
void runner_initial_noise(float *x, size_t n, uint64_t seed);

/* Pixel-space video [F][H][W][3] from x [3][F][H][W] in [-1,1]: round((clamp(x)+1)/2*255).
 * Latent models (channels != 3) show their first three channels, each scaled by its own min/max. */
void runner_decode_video(const float *x, int channels, int F, int H, int W, uint8_t *video);

#endif
