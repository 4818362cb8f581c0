#include "harness/sampler.h"

void flow_sigmas(float *sigmas, int steps, float shift) {
    for (int i = 0; i < steps; i++) {
        double s = 1.0 - (double)i / steps;
        sigmas[i] = (float)(shift * s / (1.0 + (shift - 1.0) * s));
    }
    sigmas[steps] = 0.0f;
}
