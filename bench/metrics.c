/* Throughput of the quality metrics: SSIM and LPIPS frame pairs per second at 64x64 and 256x256 (a sweep scores
 * every frame of every run against its baseline, so this is what metrics cost per frame). LPIPS uses the embedded
 * weights when the build has them, otherwise a synthetic backbone generated in memory: the same arithmetic, so the
 * same speed, but meaningless values (the output says which). Each case: one warm-up call, then repeated until
 * >= MIN_SECONDS and >= MIN_REPS; the best time is kept (the machine is shared). Whole run: a few seconds. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/rng.h"
#include "metrics/metrics.h"

#define MIN_SECONDS 0.5
#define MIN_REPS 3

typedef struct {
    const uint8_t *a, *b;
    int height, width;
    LpipsNet *net;
} Pair;

typedef int (*MetricFn)(const Pair *p, double *out, Error *err);

static int run_ssim(const Pair *p, double *out, Error *err) {
    return ssim_frame_u8(p->a, p->b, p->height, p->width, out, err);
}

static int run_lpips(const Pair *p, double *out, Error *err) {
    return lpips_frame_u8(p->net, p->a, p->b, p->height, p->width, out, err);
}

/* Best seconds per frame pair, or -1 after printing the error. */
static double time_metric(MetricFn fn, const Pair *p) {
    Error err = {{0}};
    double value, best = INFINITY, total = 0.0;
    if (fn(p, &value, &err) != 0) {
        fprintf(stderr, "bench_metrics: %s\n", err.msg);
        return -1;
    }
    for (int reps = 0; reps < MIN_REPS || total < MIN_SECONDS; reps++) {
        double t0 = omp_get_wtime();
        fn(p, &value, &err);
        double dt = omp_get_wtime() - t0;
        total += dt;
        best = dt < best ? dt : best;
    }
    return best;
}

/* A random frame and a noisy copy of it, like a cached run against its baseline. */
static int make_pair(uint8_t **a, uint8_t **b, int height, int width) {
    size_t n = (size_t)height * width * 3;
    float *u = malloc(2 * n * sizeof(float));
    *a = malloc(n);
    *b = malloc(n);
    if (!u || !*a || !*b) {
        free(u);
        return -1;
    }
    philox_uniform(u, 2 * n, 42, (uint64_t)height);
    for (size_t i = 0; i < n; i++) {
        int v = (int)(u[i] * 256.0f);
        int w = v + (int)(u[n + i] * 32.0f) - 16;
        (*a)[i] = (uint8_t)v;
        (*b)[i] = (uint8_t)(w < 0 ? 0 : w > 255 ? 255 : w);
    }
    free(u);
    return 0;
}

int main(void) {
    Error err = {{0}};
    LpipsNet *net = NULL;
    int embedded = lpips_available();
    if ((embedded ? lpips_create(&net, &err) : lpips_create_synthetic(&net, 1, &err)) != 0) {
        fprintf(stderr, "bench_metrics: %s\n", err.msg);
        return 1;
    }
    if (embedded)
        printf("LPIPS weights: embedded\n");
    else
        printf("LPIPS weights: synthetic, generated in memory (same cost; values meaningless): %s\n",
               lpips_unavailable_reason());
    printf("threads: %d (OMP_NUM_THREADS)\n\n", omp_get_max_threads());
    printf("%-10s %14s %14s %14s %14s\n", "frame", "SSIM frames/s", "SSIM ms", "LPIPS frames/s", "LPIPS ms");

    static const int sizes[] = {64, 256};
    int rc = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        Pair p = {.height = sizes[i], .width = sizes[i], .net = net};
        uint8_t *a = NULL, *b = NULL;
        if (make_pair(&a, &b, p.height, p.width) != 0) {
            fprintf(stderr, "bench_metrics: out of memory\n");
            free(a);
            free(b);
            rc = 1;
            break;
        }
        p.a = a;
        p.b = b;
        double ssim = time_metric(run_ssim, &p), lpips = time_metric(run_lpips, &p);
        free(a);
        free(b);
        if (ssim < 0 || lpips < 0) {
            rc = 1;
            break;
        }
        char label[32];
        snprintf(label, sizeof label, "%dx%d", p.width, p.height);
        printf("%-10s %14.1f %14.3f %14.1f %14.3f\n", label, 1.0 / ssim, 1e3 * ssim, 1.0 / lpips, 1e3 * lpips);
    }
    lpips_destroy(net);
    return rc;
}
