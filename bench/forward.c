/* Forward-pass throughput of the CPU backend next to the machine's own cblas_sgemm, measured in the same run.
 * FLOPs count the matrix work (dit_flops_forward); the ratio forward/sgemm is the figure of merit
 * (target: >= 0.6 on 2 cores). */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/rng.h"
#include "models/dit/dit.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* Best of `reps` timings after one warm-up: the least-disturbed measurement on a shared machine. */
static double sgemm_gflops(int n, int reps) {
    float *a = malloc((size_t)n * n * sizeof(float)), *b = malloc((size_t)n * n * sizeof(float));
    float *c = malloc((size_t)n * n * sizeof(float));
    philox_normal(a, (size_t)n * n, 1, 0);
    philox_normal(b, (size_t)n * n, 2, 0);
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        double t = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        t = now() - t;
        if (r > 0 && t < best) best = t;
    }
    free(a), free(b), free(c);
    return 2.0 * n * n * (double)n / best * 1e-9;
}

typedef struct {
    const char *label;
    DitConfig cfg;
    int F, H, W, reps;
} Case;

int main(void) {
    Case cases[2] = {
        {"tiny (8x64x64 px, 512 tokens)", *dit_config_by_name("tiny"), 8, 64, 64, 10},
        /* Wan2.1-1.3B width and FFN, 2 of its 30 layers, 4x30x52 latent (1560 tokens). */
        {"wan2.1-1.3b width, 2 layers, 1560 tokens", *dit_config_by_name("wan2.1-t2v-1.3b"), 4, 30, 52, 3},
    };
    cases[1].cfg.num_layers = 2;
    double peak = sgemm_gflops(1024, 5);
    printf("threads: %d; cblas_sgemm 1024^3: %.1f GFLOP/s\n\n", omp_get_max_threads(), peak);
    printf("%-44s %10s %10s %12s %10s\n", "model", "tokens", "ms/forward", "GFLOP/s", "vs sgemm");
    for (int i = 0; i < 2; i++) {
        Case *c = &cases[i];
        DitModel m;
        DitState s;
        Error err;
        if (dit_init_random(&m, &c->cfg, 1, &err) || dit_state_init(&s, &c->cfg, c->F, c->H, c->W, &err)) {
            fprintf(stderr, "bench_forward: %s\n", err.msg);
            return 1;
        }
        size_t n = (size_t)c->cfg.in_dim * c->F * c->H * c->W, tn = (size_t)c->cfg.text_len * c->cfg.text_dim;
        float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float)), *text = malloc(tn * sizeof(float));
        philox_normal(x, n, 3, 0);
        philox_normal(text, tn, 4, 0);
        double best = 1e30;
        for (int r = 0; r <= c->reps; r++) {
            double t = now();
            dit_forward(&m, &s, x, 500.0f, text, y);
            t = now() - t;
            if (r > 0 && t < best) best = t;
        }
        double gflops = dit_flops_forward(&c->cfg, s.L) / best * 1e-9;
        printf("%-44s %10d %10.2f %12.1f %9.0f%%\n", c->label, s.L, best * 1e3, gflops, 100.0 * gflops / peak);
        free(x), free(y), free(text);
        dit_state_free(&s);
        dit_free(&m);
    }
    printf("\n(best of N after a warm-up; FLOPs = matrix work of dit_flops_forward; target >= 60%% of sgemm)\n");
    return 0;
}
