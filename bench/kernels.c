/* Microbenchmark of the CPU kernels: cblas_sgemm throughput at the model's GEMM shapes, and attention
 * throughput against it. The forward pass is GEMM-bound, so "attention / sgemm" says how close the
 * hand-written part of attention (softmax, blocking, threading) comes to the BLAS it is built on.
 * Each case: one warm-up call, then repeated until >= MIN_SECONDS and >= MIN_REPS; best time kept
 * (the machine is shared, the minimum is the least noisy estimate). Whole run: ~10-20 s on 2 cores. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "models/kernels.h"

#define MIN_SECONDS 0.3
#define MIN_REPS 2

typedef struct {
    int M, K, N;            /* GEMM shape, or Lq=Lk=M, heads=K, head_dim=N for attention */
    const float *a, *b;     /* inputs */
    const float *c_in;      /* attention: v */
    float *out, *scratch;
    const float *bias;      /* linear only */
} Case;

typedef void (*CaseFn)(const Case *);

static void run_sgemm(const Case *c) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c->M, c->N, c->K, 1.0f, c->a, c->K, c->b, c->K, 0.0f, c->out,
                c->N);
}

static void run_linear(const Case *c) { linear(c->out, c->a, c->b, c->bias, c->M, c->K, c->N); }

static void run_attention(const Case *c) {
    attention(c->out, c->a, c->b, c->c_in, c->M, c->M, c->K, c->N, c->scratch);
}

/* Best seconds per call. */
static double time_case(CaseFn fn, const Case *c) {
    fn(c);
    double best = INFINITY, total = 0.0;
    for (int reps = 0; reps < MIN_REPS || total < MIN_SECONDS; reps++) {
        const double t0 = omp_get_wtime();
        fn(c);
        const double dt = omp_get_wtime() - t0;
        total += dt;
        if (dt < best) best = dt;
    }
    return best;
}

/* Deterministic values in [-1, 1): a 32-bit LCG, enough for timing. */
static float *random_floats(size_t n, uint32_t seed) {
    float *p = malloc(n * sizeof(float));
    if (!p) {
        fprintf(stderr, "bench_kernels: out of memory (%zu floats)\n", n);
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (float)((seed >> 8) * (1.0 / 8388608.0) - 1.0);
    }
    return p;
}

static double bench_gemm(const char *label, CaseFn fn, int M, int K, int N, int with_bias) {
    float *a = random_floats((size_t)M * K, 1), *b = random_floats((size_t)N * K, 2);
    float *out = random_floats((size_t)M * N, 3); /* touched: no page faults inside the timing */
    float *bias = with_bias ? random_floats((size_t)N, 4) : NULL;
    Case c = {.M = M, .K = K, .N = N, .a = a, .b = b, .out = out, .bias = bias};
    const double s = time_case(fn, &c);
    const double gflops = 2.0 * M * K * N / s * 1e-9;
    printf("%-22s %6d %6d %6d %10.2f %10.1f\n", label, M, K, N, s * 1e3, gflops);
    free(a), free(b), free(out), free(bias);
    return gflops;
}

static void bench_attention(int L, int heads, int head_dim, double sgemm_peak) {
    const size_t n = (size_t)L * heads * head_dim;
    float *q = random_floats(n, 5), *k = random_floats(n, 6), *v = random_floats(n, 7), *out = random_floats(n, 8);
    const size_t ns = attention_scratch_floats(L, L, heads);
    float *scratch = random_floats(ns, 9);
    Case c = {.M = L, .K = heads, .N = head_dim, .a = q, .b = k, .c_in = v, .out = out, .scratch = scratch};
    const double s = time_case(run_attention, &c);
    const double gflops = 4.0 * L * L * head_dim * heads / s * 1e-9;
    printf("%-22s %6d %6d %6d %10.2f %10.1f %8.2f\n", "attention L,heads,hd", L, heads, head_dim, s * 1e3, gflops,
           gflops / sgemm_peak);
    free(q), free(k), free(v), free(out), free(scratch);
}

int main(void) {
    printf("threads: %d (OMP_NUM_THREADS)\n", omp_get_max_threads());
    printf("%-22s %6s %6s %6s %10s %10s %8s\n", "kernel", "M", "K", "N", "ms", "GFLOP/s", "/sgemm");
    const double peak = bench_gemm("sgemm 1024^3", run_sgemm, 1024, 1024, 1024, 0);
    /* tiny model: 512 tokens, dim 128, ffn 512 */
    bench_gemm("sgemm tiny qkv/o", run_sgemm, 512, 128, 128, 0);
    bench_gemm("sgemm tiny ffn1", run_sgemm, 512, 128, 512, 0);
    bench_gemm("linear+bias tiny ffn1", run_linear, 512, 128, 512, 1);
    /* Wan2.1-1.3B width: dim 1536, ffn 8960 (4096 of its 32760 tokens) */
    bench_gemm("sgemm wan qkv/o", run_sgemm, 4096, 1536, 1536, 0);
    bench_gemm("linear+bias wan qkv/o", run_linear, 4096, 1536, 1536, 1);
    bench_gemm("sgemm wan ffn1", run_sgemm, 4096, 1536, 8960, 0);
    bench_attention(512, 4, 32, peak);
    bench_attention(4096, 12, 128, peak);
    printf("(attention GFLOP counts 4*Lq*Lk*hd*heads; /sgemm is relative to sgemm 1024^3)\n");
    return 0;
}
