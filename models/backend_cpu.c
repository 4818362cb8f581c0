/* CPU VecOps: plain host arrays (DESIGN §2: the CPU backend is the specification).
 *
 * Reductions accumulate in double and are deterministic: the sum is split into a number of chunks that depends
 * only on n (never on the thread count), each chunk is summed in order, then the chunk sums are added in order.
 * A caching decision compares an accumulated reduction with a threshold, so a result that changed with
 * OMP_NUM_THREADS could flip a compute/reuse decision between two runs of the same experiment. */
#include "models/backend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Below this many floats one thread is faster than waking the pool. */
#define CPU_PARALLEL_MIN ((size_t)1 << 16)
/* Chunks of a large reduction: enough to share among the cores of one machine, small enough for the stack. */
#define CPU_CHUNKS 64

static float *cpu_alloc(void *ctx, size_t n) {
    (void)ctx;
    return calloc(n ? n : 1, sizeof(float)); /* calloc(0) may return NULL, which reads as failure */
}

static void cpu_release(void *ctx, float *p) {
    (void)ctx;
    free(p);
}

/* Sum of |a[i]| (b == NULL) or |a[i] - b[i]| over [0, n), chunked as described at the top. */
static double cpu_sum_abs(const float *a, const float *b, size_t n) {
    int chunks = n >= CPU_PARALLEL_MIN ? CPU_CHUNKS : 1;
    size_t per = (n + (size_t)chunks - 1) / (size_t)chunks;
    double part[CPU_CHUNKS];
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (int c = 0; c < chunks; c++) {
        size_t lo = (size_t)c * per, hi = lo + per < n ? lo + per : n;
        double s = 0.0;
        if (b) {
            for (size_t i = lo; i < hi; i++) s += fabs((double)a[i] - (double)b[i]);
        } else {
            for (size_t i = lo; i < hi; i++) s += fabs((double)a[i]);
        }
        part[c] = s;
    }
    double total = 0.0;
    for (int c = 0; c < chunks; c++) total += part[c];
    return total;
}

static double cpu_mean_abs(void *ctx, const float *a, size_t n) {
    (void)ctx;
    return n ? cpu_sum_abs(a, NULL, n) / (double)n : 0.0;
}

static double cpu_mean_abs_diff(void *ctx, const float *a, const float *b, size_t n) {
    (void)ctx;
    return n ? cpu_sum_abs(a, b, n) / (double)n : 0.0;
}

/* Element-wise ops may run in place (out == a or out == b): each element is read before it is written. */
static void cpu_sub(void *ctx, float *out, const float *a, const float *b, size_t n) {
    (void)ctx;
#pragma omp parallel for schedule(static) if (n >= CPU_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) out[i] = a[i] - b[i];
}

static void cpu_add(void *ctx, float *out, const float *a, const float *b, size_t n) {
    (void)ctx;
#pragma omp parallel for schedule(static) if (n >= CPU_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

static void cpu_copy(void *ctx, float *dst, const float *src, size_t n) {
    (void)ctx;
    if (dst != src && n) memcpy(dst, src, n * sizeof(float));
}

static size_t cpu_guide(void *ctx, float *out, const float *vc, const float *vu, float g, size_t n) {
    (void)ctx;
    size_t bad = 0;
#pragma omp parallel for reduction(+ : bad) schedule(static) if (n >= CPU_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) {
        const float v = vu ? vu[i] + g * (vc[i] - vu[i]) : vc[i];
        bad += !isfinite(v);
        out[i] = v;
    }
    return bad;
}

static void cpu_axpby(void *ctx, float *out, float a, const float *x, float b, const float *y, size_t n) {
    (void)ctx;
#pragma omp parallel for schedule(static) if (n >= CPU_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) {
        const float ax = a * x[i], by = b * y[i]; /* two roundings, then the sum: never contracted into an FMA */
        out[i] = ax + by;
    }
}

static const VecOps cpu_ops = {
    .ctx = NULL,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .mean_abs = cpu_mean_abs,
    .mean_abs_diff = cpu_mean_abs_diff,
    .sub = cpu_sub,
    .add = cpu_add,
    .copy = cpu_copy,
    .guide = cpu_guide,
    .axpby = cpu_axpby,
};

const VecOps *cpu_vec_ops(void) { return &cpu_ops; }
