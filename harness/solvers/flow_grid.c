#include "harness/solvers/flow_grid.h"

#include <math.h>
#include <stdint.h>

void flow_grid(int steps, double start, double shift, float *sigmas, float *timesteps) {
    const double delta = (0.0 - start) / steps;
    for (int k = 0; k < steps; k++) {
        /* numpy rounds every product before the sum that follows it; volatile keeps a compiler from fusing them
         * (an FMA moves the last bit, and a truncated timestep can follow it). */
        volatile double scaled = k * delta;
        const double sigma = scaled + start;
        volatile double bent = (shift - 1.0) * sigma;
        const double shifted = shift * sigma / (1.0 + bent);
        sigmas[k] = (float)shifted;
        timesteps[k] = (float)(int64_t)(shifted * 1000.0);
    }
    sigmas[steps] = 0.0f;
}

double flow_lambda(float sigma) { return log(1.0 - (double)sigma) - log((double)sigma); }
