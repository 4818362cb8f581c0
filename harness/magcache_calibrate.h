/* MagCache calibration (H3, strategies-2.md §1): one unmodified run records, per step and branch, the statistics of
 * the block-stack residual r = output - input against the same branch's residual of the previous step, as
 * MagCache4Wan2.1/magcache_generate.py `magcache_calibration` (Zehong-Ma/MagCache df81cb1) does:
 *   ratio   = mean over tokens of |r_tok| / |r'_tok|
 *   std     = std over tokens of that ratio (unbiased, torch.std)
 *   cos_dis = mean over tokens of 1 - cos(r_tok, r'_tok), norms clamped at eps 1e-8 (F.cosine_similarity)
 * accumulated in double from the residual downloaded to the host (one [L][dim] copy per call: calibration runs once,
 * so no device reduction is added for it). The table is rounded to 5 decimals only when written. */
#ifndef CACHEBENCH_MAGCACHE_CALIBRATE_H
#define CACHEBENCH_MAGCACHE_CALIBRATE_H

#include "core/error.h"
#include "models/dit/engine.h"
#include "strategies/magcache.h"
#include "strategies/strategy.h"

/* An observing strategy (always computes) that fills table (allocated by the caller for env->num_steps steps with
 * magcache_table_alloc) while the run goes. engine: the run's engine (its download reads the residuals). The
 * strategy borrows table and engine; destroy frees only its own state. */
int magcache_observer_create(Strategy *s, const StrategyEnv *env, Engine *engine, MagTable *table, Error *err);

/* The statistics of one residual r against the previous one p, both [rows][dim] host arrays. */
void magcache_residual_stats(const float *r, const float *p, size_t rows, size_t dim, double *ratio, double *std,
                             double *cos_dis);

#endif
