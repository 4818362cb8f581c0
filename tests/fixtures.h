/* Shared test fixtures: temporary folders, random-weight checkpoints, running the CLI. */
#ifndef CACHEBENCH_TEST_FIXTURES_H
#define CACHEBENCH_TEST_FIXTURES_H

#include <stddef.h>
#include <stdint.h>

#include "models/dit/config.h"
#include "models/dit/engine.h"
#include "strategies/strategy.h"
#include "models/svg_grid.h"

/* A small config with the tiny model's structure but tiny sizes, for exhaustive reference checks:
 * dim 32, 2 heads (head_dim 16: RoPE parts 4/2/2), 2 layers, patch 1x2x2, 3 channels, text_len 5, vocab 18. */
const DitConfig *fixture_small_config(void);

/* mkdtemp under /tmp; returns a malloc'd path. */
char *fixture_tmpdir(void);
/* rm -rf of a fixture folder. */
void fixture_rmdir(const char *dir);

/* Writes the random-weight model of cfg (seeded) as safetensors with the given dtype (0 F32, 1 F16, 2 BF16),
 * plus vocab.txt (the tiny vocabulary) beside it. Returns 0 on success. */
int fixture_write_random_weights(const char *path, const DitConfig *cfg, uint64_t seed, int dtype);

/* The CLI the tests run: $CACHEBENCH_BIN when set (the sanitizer build sets it), else build/cachebench. */
const char *fixture_cli_path(void);

/* The python3 that runs the Python oracles: $CACHEBENCH_PYTHON when set (make test sets it), else /usr/bin/python3. */
const char *fixture_python(void);

/* Runs the CLI (fixture_cli_path) with the given arguments (NULL-terminated), capturing stdout+stderr into out
 * (NUL-terminated, truncated to cap). Returns the exit status (128 + signal when killed), or -1 if it could
 * not run. */
int fixture_run_cli(char *out, size_t cap, const char *const *args);

/* Whole file as a malloc'd NUL-terminated string; NULL when it cannot be read. */
char *fixture_read_file(const char *path);

/* Seeded uniform values in [-1, 1), never all zero. */
void fixture_random(float *x, size_t n, uint64_t seed);

/* Head h of q, k ([L][heads*hd], hd >= 3) such that its attention decays with the distance in pattern p's order
 * (σ = band/5): p's Sparse VideoGen mask drops only keys of negligible weight (< e^-12.5 of the nearest), the other
 * pattern's mask drops keys of weight ~0.3-0.8. The profiler must classify it as p. */
void fixture_decaying_head(float *q, float *k, const SvgShape *g, AttnPattern p, int heads, int hd, int h);

/* Returns only when a CUDA device of compute capability 8.0 or newer is usable; skips the calling test otherwise
 * (also in builds without the CUDA backend). */
void fixture_require_cuda_device(void);

/* The StrategyEnv a run of `steps` steps gives a strategy on engine e, prepared for a latent of model_numel floats
 * (what the runner's callers build: the engine's model config, its token count, its VecOps). */
StrategyEnv fixture_strategy_env(const Engine *e, int steps, size_t model_numel);

/* The inputs of one sampling run, for a Python replay of a strategy's official code (tests/strategy_replay.py):
 * what the runner feeds the model for `cachebench run` of the model cfg at weights (a .safetensors with vocab.txt
 * beside it) with this prompt, negative prompt, seed, steps, shift and guidance on the Euler solver. Writes a
 * safetensors file: noise [in_dim][F][H][W] (runner_initial_noise), text.cond and text.uncond
 * [text_len][text_dim] (the vocabulary encoding), sigmas [steps+1], timesteps [steps], guidance [1], and the
 * weights path in the file's metadata-free companion path + ".weights" (one line). Returns 0 on success, -1 with a
 * message on stderr. */
int fixture_replay_case(const char *path, const DitConfig *cfg, const char *weights, const char *prompt,
                        const char *negative, uint64_t seed, int steps, float shift, float guidance);

#endif
