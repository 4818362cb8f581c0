/* fbcache — ParaAttention's First-Block-Cache: run block 0, and while its residual stays within thresh (rel-L1) of
 * the last computed step's, replace blocks 1..N-1 by their residual from that step.
 * Official code: chengzeyi/ParaAttention 4de137c (strategies-2.md §3.1), src/para_attn/first_block_cache/utils.py
 * (`CachedTransformerBlocks.forward`, `get_can_use_cache`, `are_two_tensors_similar`, `CacheContext.mark_step_begin`),
 * taylorseer.py, diffusers_adapters/wan.py (enable_alter_cache: cond and uncond keep separate buffers).
 *
 * Per model call of branch b at step t (r = h_1 - h_0, the block-0 residual; τ = thresh):
 *   compute when t < warmup, τ <= 0, or no reference yet; otherwise
 *   d = mean|ref[b] - r| / mean|ref[b]|, cache when d < τ:
 *     hit:  h_N = h_1 + R[b] (or the TaylorSeer forecast of R); nothing is stored, so the reference stays the
 *           LAST COMPUTED step's r
 *     miss: ref[b] = r, run blocks 1..N-1, R[b] = h_N - h_1 (or feed R to the TaylorSeer).
 * This is the DBCache engine (strategies/dbcache.h) at Fn = 1, Bn = 0 with no caps, where ParaAttention differs
 * from cache-dit in two places: a threshold >= 1 is compared like any other, and the TaylorSeer (taylorseer.py,
 * created with the cache context) counts steps from the first call; its order defaults to TaylorSeer's
 * n_derivatives = 2 (the adapter passes no taylorseer_kwargs).
 *
 * Threshold default: ParaAttention's CacheContext.residual_diff_threshold is 0.0 at 4de137c, i.e. caching off
 * unless passed (that commit removed the Wan adapter's default); the Wan adapter's default was 0.05 (d3a7f99), then
 * 0.03 (ad03f9c, 2025-03-16); diffusers' FirstBlockCacheConfig.threshold is 0.05. We default to 0.03, the last Wan
 * default the official code shipped.
 *
 * Not implemented: downsample_factor (compare every f-th channel only: needs a strided reduction the backends do
 * not have), alter_residual_diff_threshold (a second threshold for the uncond call), skip-layer guidance.
 * Trace: as dbcache (strategies/dbcache.c), k = NAN. */
#include <stdio.h>

#include "strategies/dbcache.h"

static const char *const fb_params[] = {"thresh", "warmup", "taylorseer", "taylorseer_order", NULL};

static int fb_create(Strategy *s, const StrategyParams *p, const StrategyEnv *env, Error *err) {
    DbcacheConfig c = {.fn = 1, .bn = 0, .warmup_interval = 1, .max_cached = -1, .max_continuous = -1,
                       .max_accumulated = 0.0, .separate_cfg_diff = 1, .paraattention = 1};
    if (dbcache_parse_common(p, 0.03, 0, 2, &c, err)) return -1;
    if (env->num_layers < 1) return error_set(err, "fbcache: model %s has no layers", env->model_name);
    if (dbcache_setup(s, &c, env, err)) return -1;
    char th[32];
    strategy_format_double(c.thresh, th, sizeof th);
    snprintf(s->spec, sizeof s->spec, "fbcache:thresh=%s,warmup=%d,taylorseer=%d,taylorseer_order=%d", th, c.warmup,
             c.taylorseer, c.taylorseer_order);
    return 0;
}

STRATEGY_REGISTER(strategy_fbcache_info, 90) = {
    .name = "fbcache",
    .summary = "ParaAttention First-Block-Cache: after block 0, reuse the other blocks' residual while block 0's "
               "residual stays within thresh of the last computed step's",
    .params_help = "thresh            >= 0: cache while the rel-L1 diff of block 0's residual to the last computed\n"
                   "                  step's is below it; 0 never caches (default 0.03, the official Wan adapter's\n"
                   "                  last default; 0 at ParaAttention 4de137c, 0.05 in diffusers)\n"
                   "warmup            steps computed first, >= 0 (default 0, as ParaAttention)\n"
                   "taylorseer        0|1: forecast the residual with ParaAttention's TaylorSeer (default 0)\n"
                   "taylorseer_order  n_derivatives 1..4 (default 2, TaylorSeer's default)",
    .param_names = fb_params,
    .create = fb_create,
};
