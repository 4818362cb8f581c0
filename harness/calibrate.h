/* TeaCache calibration (issue: "calibrate"): run full inference, record per model call the TeaCache input signal
 * (relative L1 change of the timestep modulation e or e0 since the previous call of the same branch) and the
 * relative L1 change of the model output, and fit the degree-4 polynomial output ≈ poly(input) by least squares,
 * as TeaCache's authors do for each model. */
#ifndef CACHEBENCH_CALIBRATE_H
#define CACHEBENCH_CALIBRATE_H

#include <stddef.h>

#include "core/error.h"
#include "strategies/strategy.h"

typedef struct {
    double *input, *output;     /* [count] samples: signal and model-output rel-L1 */
    int *step;                  /* [count] sampling step of each sample */
    int *branch;                /* [count] BRANCH_COND or BRANCH_UNCOND */
    size_t count, cap;
} CalibrationSamples;

/* An observing strategy (always computes) that appends one sample per model call after a branch's first call.
 * use_e0 selects the retention-steps signal. The strategy borrows samples; destroy frees only its own state. */
int calibration_observer_create(Strategy *s, const StrategyEnv *env, int use_e0, CalibrationSamples *samples,
                                Error *err);

/* Least squares fit of y ≈ c0 x^4 + c1 x^3 + c2 x^2 + c3 x + c4 (highest degree first); r2 receives the
 * coefficient of determination. Needs at least 5 samples with distinct x. */
int calibration_fit(const double *x, const double *y, size_t n, double coeffs[5], double *r2, Error *err);

void calibration_samples_free(CalibrationSamples *s);

#endif
