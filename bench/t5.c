/* Benchmark of the umT5 encoder on the CPU at umT5-XXL shapes (dim 4096, 64 heads, FFN 10,240) with random BF16
 * weights: tokens/s for one 512-token prompt, and its GFLOP/s against a plain fp32 cblas_sgemm of the FFN shape in
 * the same run. XXL has 24 layers (~0.45 GB of BF16 each); to stay within a small machine's memory and a short run,
 * T5_BENCH_LAYERS layers (default 2) are timed and the 24-layer time is extrapolated linearly (each layer costs the
 * same; the embedding lookup and final norm are negligible). Best of T5_BENCH_REPS runs (default 2) after a warm-up.
 * T5_BENCH_TOKENS (default 512) sets the prompt length. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/safetensors.h"
#include "models/t5/t5.h"

#define XXL_LAYERS 24

static void *xmalloc(size_t bytes) {
    void *p = malloc(bytes);
    if (!p) {
        fprintf(stderr, "bench_t5: out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

/* Random BF16 values of scale ~1/sqrt(cols) (a 32-bit LCG; enough for timing). */
static T5Matrix random_bf16(int rows, int cols, uint32_t seed) {
    size_t n = (size_t)rows * cols;
    uint16_t *w = xmalloc(n * sizeof *w);
    float scale = 1.7f / sqrtf((float)cols);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        w[i] = st_f32_to_bf16(scale * ((float)(seed >> 8) / 8388608.0f - 1.0f));
    }
    return (T5Matrix){ST_BF16, w, rows, cols};
}

static float *filled(size_t n, float v) {
    float *p = xmalloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = v;
    return p;
}

int main(void) {
    const char *env = getenv("T5_BENCH_LAYERS");
    int layers = env ? atoi(env) : 2, reps = getenv("T5_BENCH_REPS") ? atoi(getenv("T5_BENCH_REPS")) : 2;
    const int TOKENS = getenv("T5_BENCH_TOKENS") ? atoi(getenv("T5_BENCH_TOKENS")) : 512;
    if (layers < 1 || layers > XXL_LAYERS || reps < 1 || TOKENS < 1 || TOKENS > 512) {
        fprintf(stderr, "bench_t5: T5_BENCH_LAYERS must be 1..24, T5_BENCH_REPS >= 1, T5_BENCH_TOKENS 1..512\n");
        return 1;
    }
    T5Encoder enc = {0};
    enc.cfg = (T5Config){.vocab = 1024, .dim = 4096, .dim_attn = 4096, .dim_ffn = 10240, .heads = 64,
                         .layers = layers, .buckets = 32};
    const T5Config *c = &enc.cfg;
    enc.embedding = random_bf16(c->vocab, c->dim, 1);
    enc.layers = xmalloc((size_t)layers * sizeof *enc.layers);
    for (int l = 0; l < layers; l++) {
        T5Layer *L = &enc.layers[l];
        uint32_t s = 100u * (uint32_t)l;
        L->q = random_bf16(c->dim_attn, c->dim, s + 1), L->k = random_bf16(c->dim_attn, c->dim, s + 2);
        L->v = random_bf16(c->dim_attn, c->dim, s + 3), L->o = random_bf16(c->dim, c->dim_attn, s + 4);
        L->gate = random_bf16(c->dim_ffn, c->dim, s + 5), L->fc1 = random_bf16(c->dim_ffn, c->dim, s + 6);
        L->fc2 = random_bf16(c->dim, c->dim_ffn, s + 7);
        L->norm1 = filled((size_t)c->dim, 1.0f), L->norm2 = filled((size_t)c->dim, 1.0f);
        L->rel_bias = filled((size_t)c->buckets * c->heads, 0.1f);
    }
    enc.final_norm = filled((size_t)c->dim, 1.0f);
    int ids[512];
    for (int i = 0; i < TOKENS; i++) ids[i] = (i * 7919) % c->vocab;
    float *out = xmalloc((size_t)TOKENS * c->dim * sizeof(float));

    /* the plain fp32 GEMM of the FFN's shape (weights already fp32), timed between the encoder runs so that both
     * see the same machine load; best of each */
    float *a = filled((size_t)TOKENS * c->dim, 0.5f), *w = filled((size_t)c->dim_ffn * c->dim, 0.01f);
    float *y = xmalloc((size_t)TOKENS * c->dim_ffn * sizeof(float));
    Error err = {{0}};
    double best = 1e30, gemm_best = 1e30;
    for (int r = 0; r <= reps; r++) { /* r == 0: warm-up */
        for (int g = 0; g < 3; g++) {
            double t0 = omp_get_wtime();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, TOKENS, c->dim_ffn, c->dim, 1.0f, a, c->dim, w,
                        c->dim, 0.0f, y, c->dim_ffn);
            double dt = omp_get_wtime() - t0;
            if (r > 0 && dt < gemm_best) gemm_best = dt;
        }
        double t0 = omp_get_wtime();
        if (t5_encode(&enc, ids, TOKENS, out, &err)) {
            fprintf(stderr, "bench_t5: %s\n", err.msg);
            return 1;
        }
        double dt = omp_get_wtime() - t0;
        if (r > 0 && dt < best) best = dt;
    }
    double n = TOKENS, d = c->dim, da = c->dim_attn, f = c->dim_ffn;
    double flops_layer = 2 * n * (3 * d * da + da * d + 3 * d * f) + 4 * n * n * da;
    double per_layer = best / layers, xxl = per_layer * XXL_LAYERS;

    double gemm_gflops = 2.0 * TOKENS * c->dim * c->dim_ffn / gemm_best / 1e9;
    printf("umT5-XXL encoder, CPU, %d threads, %d tokens, BF16 weights, %d of %d layers timed (best of %d):\n",
           omp_get_max_threads(), TOKENS, layers, XXL_LAYERS, reps);
    printf("  %.2f s per layer, %.1f GFLOP/s; 24 layers extrapolated: %.1f s = %.1f tokens/s\n", per_layer,
           flops_layer / per_layer / 1e9, xxl, TOKENS / xxl);
    printf("  plain sgemm %dx%dx%d (fp32 weights): %.1f GFLOP/s; the encoder reaches %.0f%% of it\n", TOKENS,
           c->dim_ffn, c->dim, gemm_gflops, 100.0 * (flops_layer / per_layer / 1e9) / gemm_gflops);
    return 0;
}
