/* Branch-free, vectorisable exp for the CPU kernels (models/kernels.c, models/sparse_attention.c).
 * Header-only (static inline) so each loop that calls it vectorises in its own translation unit. */
#ifndef CACHEBENCH_FAST_MATH_H
#define CACHEBENCH_FAST_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* The exp-heavy loops (softmax, GELU, SiLU) are compiled three times and picked at load time by CPU:
 * AVX-512, AVX2+FMA, and the SSE2 baseline the Makefile's flags target. On a Zen 4/5 core the AVX-512
 * softmax is ~5x faster than SSE2, which decides whether attention runs near GEMM speed. Other loops are
 * memory-bound and gain little. Needs GCC's ifunc support (ELF x86-64); elsewhere one generic build. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__ELF__)
#define KERNEL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define KERNEL_CLONES
#endif

/* ---------------------------------------------------------------------------------------------- */
/* fast exp */

static inline float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint32_t bits_from_f32(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Branch-free select: mask is all ones (take a) or all zeros (take b). Written with integer ops
 * because under GCC's default -ftrapping-math a float `c ? a : b` blocks if-conversion and with it
 * vectorisation. */
static inline float select_f32(uint32_t mask, float a, float b) {
    return f32_from_bits((bits_from_f32(a) & mask) | (bits_from_f32(b) & ~mask));
}

/* exp(x) = 2^n * exp(r), n = round(x / ln2), |r| <= ln2/2, exp(r) by the Cephes expf polynomial
 * (peak relative error ~1e-7). Branch-free so that loops calling it vectorise. Rounding uses the
 * 1.5*2^23 trick (SSE2 has no round instruction); ln2 is split in two (Cody-Waite) so r is exact.
 * 2^n is built as 2^(n-1) * 2 so that n = 128 (x up to 88.72, the float overflow point) still works.
 * Results: +inf above 88.7228, 0 below -87.3365 (where float exp goes subnormal; a softmax weight of
 * 1e-38 is irrelevant), NaN in -> NaN out (both comparisons are false). */
static inline float fast_expf(float x) {
    const float hi = 88.7228f, lo = -87.3365f;
    const float magic = 12582912.0f; /* 1.5 * 2^23 */
    const uint32_t too_big = -(uint32_t)(x > hi), too_small = -(uint32_t)(x < lo);
    const float xc = select_f32(too_big, hi, select_f32(too_small, lo, x));
    const float t = xc * 1.44269504088896341f + magic;
    const float nf = t - magic;
    const int32_t n = (int32_t)(bits_from_f32(t) - bits_from_f32(magic));
    float r = xc - nf * 0.693359375f;
    r = r - nf * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const float y = (p + p) * f32_from_bits((uint32_t)(n + 126) << 23);
    return select_f32(too_big, INFINITY, select_f32(too_small, 0.0f, y));
}

/* 2^x for x <= 0, the softmax's exp once log2(e) is folded into the logits' scale: no ln2 reduction and
 * no overflow side, so ~25% cheaper than fast_expf. 2^r on [-1/2, 1/2] by a degree-6 polynomial fitted
 * for relative error (2e-9 in exact arithmetic, 1e-7 in float). 0 below -126 (float's normal range). */
static inline float fast_exp2_nonpositive(float x) {
    const float lo = -126.0f;
    const float magic = 12582912.0f; /* 1.5 * 2^23 */
    const uint32_t too_small = -(uint32_t)(x < lo);
    const float xc = select_f32(too_small, lo, x);
    const float t = xc + magic;
    const float nf = t - magic;
    const int32_t n = (int32_t)(bits_from_f32(t) - bits_from_f32(magic));
    const float r = xc - nf; /* exact */
    float p = 1.5353361683e-4f;
    p = p * r + 1.3398874866e-3f;
    p = p * r + 9.6184373623e-3f;
    p = p * r + 5.5503324699e-2f;
    p = p * r + 2.4022647914e-1f;
    p = p * r + 6.9314720286e-1f;
    p = p * r + 1.0f;
    const float y = p * f32_from_bits((uint32_t)(n + 127) << 23);
    return select_f32(too_small, 0.0f, y);
}

/* s[0..n) <- exp(s - max s) (base e) or 2^(s - max s) (base 2, when s holds logits times log2 e, which saves the
 * ln2 reduction); returns the sum of the new values, in float over n terms of at most 1. The max uses 32 explicit
 * lanes (two AVX-512 registers): an `omp simd reduction(max)` keeps its lanes in a stack array and runs at half
 * the speed. Rows with -inf entries (masked keys) need one finite entry; the -inf entries become exactly 0. */
#define FAST_SOFTMAX_ROW(name, exp_fn)                                                                          \
    KERNEL_CLONES static float name(float *s, int n) {                                                          \
        float lane[32];                                                                                         \
        for (int l = 0; l < 32; l++) lane[l] = -INFINITY;                                                       \
        int j = 0;                                                                                              \
        for (; j + 32 <= n; j += 32)                                                                            \
            for (int l = 0; l < 32; l++) lane[l] = select_f32(-(uint32_t)(s[j + l] > lane[l]), s[j + l], lane[l]); \
        float m = -INFINITY;                                                                                    \
        for (int l = 0; l < 32; l++) m = lane[l] > m ? lane[l] : m;                                             \
        for (; j < n; j++) m = s[j] > m ? s[j] : m;                                                             \
        float sum = 0.0f;                                                                                       \
        _Pragma("omp simd reduction(+ : sum)") for (j = 0; j < n; j++) {                                       \
            const float e = exp_fn(s[j] - m);                                                                   \
            s[j] = e;                                                                                           \
            sum += e;                                                                                           \
        }                                                                                                       \
        return sum;                                                                                             \
    }

#endif
