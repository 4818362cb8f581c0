/* One experiment = one trajectory of one model with one strategy, prompt and seed, written as a run record.
 * `run` makes one; `sweep` makes many with the same loaded model (harness/sweep.c). */
#ifndef CACHEBENCH_EXPERIMENT_H
#define CACHEBENCH_EXPERIMENT_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "models/dit/dit.h"
#include "models/dit/engine.h"
#include "results/record.h"
#include "strategies/strategy.h"

typedef struct {
    DitModel model;
    Engine *engine;
    char **vocab;               /* NULL for models without a word vocabulary */
    int vocab_size;
    double load_seconds;        /* opening, validating, converting and hashing the weights */
    long load_peak_rss_kb;      /* peak resident memory of the process while loading them */
} ExperimentContext;

typedef struct {
    const char *strategy_spec;
    const char *prompt_id;
    const char *prompt;
    const char *negative_prompt; /* "" = the unconditional branch is the empty prompt */
    uint64_t seed;
    int steps;
    float shift, guidance;
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

/* Runs the experiment and fills rec (attributes, trace, totals, video). The caller frees rec with record_free.
 * A run whose output turns NaN/Inf still returns 0 with rec->failed set. */
int experiment_run(ExperimentContext *ctx, const ExperimentSpec *spec, RunRecord *rec, Error *err);

/* The same with a strategy the caller created (and destroys), e.g. an observer that is not in the registry.
 * experiment_strategy_env prepares the engine for the spec's geometry and describes it for strategy_create. */
int experiment_strategy_env(ExperimentContext *ctx, const ExperimentSpec *spec, StrategyEnv *env, Error *err);
int experiment_run_with(ExperimentContext *ctx, const ExperimentSpec *spec, Strategy *strategy, RunRecord *rec,
                        Error *err);

/* File-name-safe run id: "<strategy spec with ':' ',' '=' replaced>__<prompt_id>__s<seed>". */
void experiment_run_id(const char *strategy_spec, const char *prompt_id, uint64_t seed, char *buf, size_t cap);

/* The default tiny weights: <dir of the executable>/../models/tiny/tiny.safetensors if it exists, else the same
 * path relative to the working directory. */
void experiment_default_weights(char *buf, size_t cap);

/* Peak resident memory of this process since the last reset, in KiB (Linux VmHWM), and its reset. */
long experiment_peak_rss_kb(void);
void experiment_reset_peak_rss(void);

#endif
