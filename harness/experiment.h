/* One experiment = one trajectory of one model with one strategy, prompt and seed, written as a run record.
 * `run` makes one; `sweep` makes many with the same loaded model (harness/sweep.c). */
#ifndef CACHEBENCH_EXPERIMENT_H
#define CACHEBENCH_EXPERIMENT_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "harness/contexts.h"
#include "harness/runner.h"
#include "harness/solvers/solver.h"
#include "models/dit/dit.h"
#include "models/dit/engine.h"
#include "models/vae/vae.h"
#include "results/record.h"
#include "strategies/strategy.h"

typedef struct {
    DitModel model;
    Engine *engine;
    char **vocab;               /* NULL for models without a word vocabulary */
    int vocab_size;
    PromptContexts *contexts;   /* owned; NULL unless experiment_use_contexts */
    VaeModel *vae;              /* owned; NULL unless experiment_use_vae: a latent model's video is then decoded */
    char vae_sha256[65];
    double load_seconds;        /* opening, validating, converting and hashing the weights */
    long load_peak_rss_kb;      /* peak resident memory of the process while loading them */
} ExperimentContext;

typedef struct {
    const char *strategy_spec;
    const char *prompt_id;
    const char *prompt;
    /* Text of the uncond branch. NULL or "": the empty prompt for models with a vocabulary; for models without
     * one (Wan) the official default WAN_DEFAULT_NEGATIVE_PROMPT, as wan/text2video.py does. */
    const char *negative_prompt;
    /* Conditioning. With contexts (experiment_use_contexts, any model) the cond branch uses the context under
     * prompt_id, the uncond branch the one under negative_id (NULL: CONTEXTS_NEGATIVE_KEY). Without, a model with
     * a vocabulary embeds the words itself; one without needs random_context (a seeded stand-in: timing only). */
    const char *negative_id;
    int random_context;
    uint64_t seed;
    int steps;
    float shift, guidance;
    const SolverKind *solver;   /* NULL = the config's default_solver */
    int F, H, W;                /* 0 = the config's default geometry */
    int record_latents;
    int show_progress;          /* 1: progress line on stderr when it is a terminal */
    /* Optional progress callback replacing the built-in line (sweeps draw their own). */
    void (*progress)(void *user, int step, int steps, double elapsed_seconds);
    void *progress_user;
} ExperimentSpec;

/* weights: a safetensors file, a model folder (models/dit/checkpoint.h), or "random" / "random:SEED" for random
 * weights (benchmarks, tests). model_name: a built-in config (--model), or NULL for the checkpoint's own
 * (config.json, or inferred from a single file) and tiny for random weights.
 * The vocabulary is read from vocab.txt beside the weights (models with vocab_size > 0). */
int experiment_open(ExperimentContext *ctx, const char *model_name, const char *weights, const char *backend,
                    Error *err);
void experiment_close(ExperimentContext *ctx);

/* Decodes every run's final latent with the Wan VAE decoder at path (harness records /video in pixels, video_space
 * "pixel"). Refused for a model whose latent is not the VAE's (in_dim != z_dim) or that works in pixels (tiny). */
int experiment_use_vae(ExperimentContext *ctx, const char *path, Error *err);
/* Conditions every following run on the prompt contexts in path (harness/contexts.h), for the model's text shape. */
int experiment_use_contexts(ExperimentContext *ctx, const char *path, Error *err);

/* Runs the experiment and fills rec (attributes, trace, totals, video). The caller frees rec with record_free.
 * A run whose output turns NaN/Inf still returns 0 with rec->failed set. */
int experiment_run(ExperimentContext *ctx, const ExperimentSpec *spec, RunRecord *rec, Error *err);

/* The same with a strategy the caller created (and destroys), e.g. an observer that is not in the registry.
 * experiment_strategy_env prepares the engine for the spec's geometry and describes it for strategy_create. */
int experiment_strategy_env(ExperimentContext *ctx, const ExperimentSpec *spec, StrategyEnv *env, Error *err);
int experiment_run_with(ExperimentContext *ctx, const ExperimentSpec *spec, Strategy *strategy, RunRecord *rec,
                        Error *err);

/* Runs count settings of one spec (everything but strategy_spec: prompt, seed, steps, ...) together as a fork tree
 * (harness/runner.h runner_sample_shared): strategies[j] (created by the caller, each with a clone hook when
 * count > 1) fills recs[j] exactly as experiment_run_with would; stats (may be NULL) accumulates what was shared.
 * Each record's peak_rss_kb is the tree's. On error every record is freed. */
int experiment_run_shared(ExperimentContext *ctx, const ExperimentSpec *spec, Strategy *strategies, int count,
                          RunRecord *recs, RunnerShareStats *stats, Error *err);

/* The solver a spec runs with: spec_solver, else the config's default_solver (euler when cfg is NULL or names
 * none). */
const SolverKind *experiment_solver(const DitConfig *cfg, const SolverKind *spec_solver);

/* The config experiment_open would run: model_name's preset (experiment_open then holds the checkpoint to it),
 * tiny for random weights without one, else the checkpoint's own, read from its headers and config.json without
 * loading its tensors. */
int experiment_peek_config(const char *model_name, const char *weights, DitConfig *out, Error *err);

/* What `run` and `sweep` check before any work (before loading weights): with contexts_path, that the file holds
 * a valid context for every id and for negative_id (NULL: CONTEXTS_NEGATIVE_KEY) for the model's text shape
 * (experiment_peek_config); without, that the model has a vocabulary or random_context is set. */
int experiment_check_conditioning(const char *model_name, const char *weights, const char *contexts_path,
                                  const char *negative_id, int random_context, const char *const *ids, int n_ids,
                                  Error *err);

/* File-name-safe run id: "<strategy spec with ':' ',' '=' replaced>__<prompt_id>__s<seed>". A coeffs=FILE
 * (TeaCache) or ratios=FILE (MagCache) parameter appears as the first 12 hex digits of the file's sha256, so that the
 * id does not depend on the path by which the file was reached (the current directory); the path when the file
 * cannot be read. */
void experiment_run_id(const char *strategy_spec, const char *prompt_id, uint64_t seed, char *buf, size_t cap);

/* The default tiny weights: <dir of the executable>/../models/tiny/tiny.safetensors if it exists, else the same
 * path relative to the working directory. */
void experiment_default_weights(char *buf, size_t cap);
/* The build's version (git describe), as run records store it. */
const char *experiment_version(void);

/* Peak resident memory of this process since the last reset, in KiB (Linux VmHWM), and its reset. */
long experiment_peak_rss_kb(void);
void experiment_reset_peak_rss(void);

#endif
