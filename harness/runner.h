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

/* Sharing computation between settings (fork trees, DESIGN §8 and README "Shared computation"). Settings that run
 * the same prompt, seed, solver, schedule and geometry start from the same x; runner_sample_shared runs them as one
 * trajectory while they agree and forks it where they part:
 *   - each model call is made once for all members that agree: every member's hooks are called in the order and with
 *     the inputs of a run alone; a member whose decision departs (model_begin or blocks_begin REUSE, a sparse
 *     attention plan, a SUPPLY module, a layer_end that jumps, stops or rewrites the tokens) leaves the shared call
 *     and, when the engine had already started it, is restored from a clone (strategy_clone) taken at the call's
 *     start and makes the call alone;
 *   - after each step members whose guided velocity is bitwise the same take one solver step together; the others
 *     fork off with a copy of x and the solver history (SolverKind.copy) and continue as their own trajectories,
 *     run one after another (depth first) from those copies.
 * Every record is bit-identical to runner_sample's for its strategy (decisions, latents, video, FLOPs, calls); its
 * times count a shared call for each member (as if it ran alone), and it records which calls were shared
 * (StepRecord.shared, RunRecord.calls_shared). Every strategy of a tree of two or more needs a clone hook. */
typedef struct {
    Strategy *strategy;
    RunRecord *rec;             /* filled as runner_sample fills it */
    float *final_x;             /* host, may be NULL: x at the end */
} RunnerMember;

typedef struct {
    long calls_run;             /* model calls the engine made (a shared call once, a replay again) */
    long calls_alone;           /* calls of every member that ran the engine (embed and head at least), alone */
    long replays;               /* calls made again alone after leaving a shared call */
    long forks;                 /* trajectories forked off */
    long branches;              /* trees run (a run alone counts one) */
    double flops_run, flops_alone;
} RunnerShareStats;

/* Runs count settings (count >= 1) as one fork tree; stats (may be NULL) accumulates what it ran. runner_sample is
 * this with one member. Returns 0, or -1 for errors that prevent running (allocation, a strategy without clone in a
 * tree of two or more, a strategy error), then with the records partly filled. */
int runner_sample_shared(Engine *e, RunnerMember *members, int count, const RunSettings *rs, RunnerShareStats *stats,
                         Error *err);

/* Initial noise: standard normal from Philox keyed by seed (stream 0), identical on every backend. */
void runner_initial_noise(float *x, size_t n, uint64_t seed);

/* Pixel-space video [F][H][W][3] from x [3][F][H][W] in [-1,1]: round((clamp(x)+1)/2*255).
 * Latent models (channels != 3) show their first three channels, each scaled by its own min/max. */
void runner_decode_video(const float *x, int channels, int F, int H, int W, uint8_t *video);

#endif
