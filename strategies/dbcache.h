/* The block-residual cache shared by dbcache (cache-dit's DBCache) and fbcache (ParaAttention's First-Block-Cache):
 * one engine (strategies/dbcache.c), two parameter sets. fbcache is this engine at Fn = 1, Bn = 0, no caps, with
 * ParaAttention's two differences (paraattention = 1 below). */
#ifndef CACHEBENCH_DBCACHE_H
#define CACHEBENCH_DBCACHE_H

#include "core/error.h"
#include "strategies/strategy.h"

#define DBCACHE_MAX_ORDER 4 /* highest TaylorSeer order accepted (cache-dit recommends 1 or 2) */

typedef struct {
    double thresh;          /* residual_diff_threshold; <= 0 never caches */
    int warmup;             /* max_warmup_steps: steps in range(0, warmup, warmup_interval) compute */
    int warmup_interval;
    int fn, bn;             /* Fn_compute_blocks >= 1, Bn_compute_blocks >= 0, fn + bn <= layers */
    int max_cached;         /* max_cached_steps per branch; < 0 no cap */
    int max_continuous;     /* max_continuous_cached_steps per branch; < 0 no cap */
    double max_accumulated; /* max_accumulated_residual_diff_threshold per branch; <= 0 no cap */
    int separate_cfg_diff;  /* cfg_diff_compute_separate: 0 lets the uncond call reuse the cond call's diff */
    int taylorseer;         /* 1: the middle residual comes from a TaylorSeer calibrator */
    int taylorseer_order;   /* 1..DBCACHE_MAX_ORDER */
    int paraattention;      /* ParaAttention semantics: a threshold >= 1 is compared like any other (cache-dit
                             * always caches then), and the TaylorSeer counts steps from the first call (cache-dit
                             * creates it at its first update, one step later) */
} DbcacheConfig;

/* Installs the engine's hooks and state on s (s->spec is the caller's to write). */
int dbcache_setup(Strategy *s, const DbcacheConfig *cfg, const StrategyEnv *env, Error *err);

/* Parses the parameters both strategies share (thresh, warmup, taylorseer, taylorseer_order) into cfg, with the
 * given defaults. */
int dbcache_parse_common(const StrategyParams *p, double thresh_default, int warmup_default, int order_default,
                         DbcacheConfig *cfg, Error *err);

#endif
