#include <math.h>

#include "metrics/metrics.h"

double psnr_u8(const uint8_t *a, const uint8_t *b, size_t n) {
    if (n == 0) return NAN;
    /* Squared byte differences are exact integers; summing them in 64 bits keeps the MSE exact up to the one
     * final division (a video of 2^40 values still fits), so no float accumulation error enters. */
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        int d = (int)a[i] - (int)b[i];
        sum += (uint64_t)(d * d);
    }
    if (sum == 0) return INFINITY;
    double mse = (double)sum / ((double)n * 255.0 * 255.0);
    return 10.0 * log10(1.0 / mse);
}
