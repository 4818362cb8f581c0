#include "core/rng.h"

#include <math.h>

/* Constants from the Philox paper / Random123. */
#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

static void block_words(uint64_t seed, uint64_t stream, uint64_t block, uint32_t out[4]) {
    uint32_t ctr[4] = {(uint32_t)block, (uint32_t)stream, (uint32_t)(stream >> 32), (uint32_t)(block >> 32)};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    philox4x32_10(ctr, key, out);
}

/* (w + 0.5) / 2^32 lies strictly inside (0,1), so log() below never sees 0. */
static double open_unit(uint32_t w) { return ((double)w + 0.5) * (1.0 / 4294967296.0); }

void philox_normal(float *out, size_t n, uint64_t seed, uint64_t stream) {
    #pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t b = 0; b < (n + 3) / 4; b++) {
        uint32_t w[4];
        block_words(seed, stream, b, w);
        float v[4];
        for (int pair = 0; pair < 2; pair++) {
            double r = sqrt(-2.0 * log(open_unit(w[2 * pair])));
            double theta = 2.0 * M_PI * open_unit(w[2 * pair + 1]);
            v[2 * pair] = (float)(r * cos(theta));
            v[2 * pair + 1] = (float)(r * sin(theta));
        }
        for (int j = 0; j < 4 && 4 * b + j < n; j++) out[4 * b + j] = v[j];
    }
}

void philox_uniform(float *out, size_t n, uint64_t seed, uint64_t stream) {
    #pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t b = 0; b < (n + 3) / 4; b++) {
        uint32_t w[4];
        block_words(seed, stream, b, w);
        for (int j = 0; j < 4 && 4 * b + j < n; j++) out[4 * b + j] = (float)(w[j] >> 8) * (1.0f / 16777216.0f);
    }
}
