/* Wan2.1 VAE decoder on the CPU (models/vae): the real 96-wide architecture (random weights) at two small latent
 * sizes. Reports video frames/s, GFLOP/s of the nominal decode FLOPs against a plain cblas_sgemm measured in the same
 * run, the growth of peak RSS per decoded frame (streaming: should be ~0), and an extrapolation (not a measurement)
 * of a 480p x 81-frame decode from the measured FLOP rate. ~1.5 min on 2 cores. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/vae/vae.h"

static long peak_rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) kib = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return kib;
}

static float *random_floats(size_t n, uint32_t seed) {
    float *p = malloc(n * sizeof(float));
    if (!p) {
        fprintf(stderr, "bench_vae: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (float)((seed >> 8) * (1.0 / 8388608.0) - 1.0);
    }
    return p;
}

/* Best GFLOP/s of cblas_sgemm at a conv-like shape: [M][K] x [K][N]. */
static double sgemm_gflops(int M, int K, int N) {
    float *a = random_floats((size_t)M * K, 1), *b = random_floats((size_t)K * N, 2), *c = random_floats((size_t)M * N, 3);
    double best = INFINITY, total = 0;
    for (int r = 0; r < 3 || total < 0.5; r++) {
        const double t0 = omp_get_wtime();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N);
        const double dt = omp_get_wtime() - t0;
        if (r > 0 && dt < best) best = dt;
        total += dt;
    }
    free(a), free(b), free(c);
    return 2.0 * M * K * N / best * 1e-9;
}

static int count_frame(void *user, int t, const float *rgb, int height, int width, Error *err) {
    (void)t, (void)rgb, (void)height, (void)width, (void)err;
    ++*(int *)user;
    return 0;
}

typedef struct {
    double seconds, gflops, frames_per_s, rss_growth_kib_per_frame;
    double state_mib;
} Result;

/* One decode of F latent frames of H x W, pushed one by one. Peak RSS growth per frame is measured from the third
 * latent frame on (the first two touch less of the buffers: their causal convs skip the zero taps); NAN if F <= 3. */
static Result bench_decode(const VaeModel *m, int F, int H, int W) {
    Result r = {0};
    Error err = {{0}};
    VaeDecoder *d;
    if (vae_decoder_new(&d, m, H, W, &err)) {
        fprintf(stderr, "bench_vae: %s\n", err.msg);
        exit(1);
    }
    const size_t P = (size_t)H * W;
    float *z = random_floats((size_t)VAE_Z_DIM * P * F, 7);
    int frames = 0, frames_warm = 0;
    long rss_warm = 0;
    const double t0 = omp_get_wtime();
    for (int f = 0; f < F; f++) {
        if (vae_decoder_push(d, z + (size_t)f * VAE_Z_DIM * P, count_frame, &frames, &err)) {
            fprintf(stderr, "bench_vae: %s\n", err.msg);
            exit(1);
        }
        if (f == 2) {
            rss_warm = peak_rss_kib();
            frames_warm = frames;
        }
    }
    r.seconds = omp_get_wtime() - t0;
    const long rss_last = peak_rss_kib();
    r.gflops = vae_flops_decode(&m->cfg, F, H, W) / r.seconds * 1e-9;
    r.frames_per_s = frames / r.seconds;
    r.rss_growth_kib_per_frame = F > 3 ? (double)(rss_last - rss_warm) / (frames - frames_warm) : NAN;
    r.state_mib = (double)vae_decoder_bytes(d) / (1024.0 * 1024.0);
    vae_decoder_free(d);
    free(z);
    return r;
}

int main(void) {
    const VaeConfig cfg = vae_config_wan21();
    VaeModel m;
    Error err = {{0}};
    if (vae_init_random(&m, &cfg, 1, &err)) {
        fprintf(stderr, "bench_vae: %s\n", err.msg);
        return 1;
    }
    printf("Wan2.1 VAE decoder (dim 96, 73.3 M parameters, random weights), %d threads\n", omp_get_max_threads());
    /* The decoder's dominant GEMMs: 3x3x3 convs, e.g. 96 channels x 2592 taps over a frame's pixels. */
    const double peak = fmax(sgemm_gflops(96, 2592, 4096), sgemm_gflops(384, 3456, 1024));
    printf("plain cblas_sgemm (best of 96x2592x4096, 384x3456x1024): %.1f GFLOP/s\n\n", peak);
    printf("%-22s %7s %9s %10s %9s %9s %12s %14s\n", "latents FxHxW", "frames", "seconds", "frames/s", "GFLOP/s",
           "vs sgemm", "state MiB", "RSS KiB/frame");
    const int sizes[2][3] = {{6, 8, 8}, {2, 16, 16}};
    Result last = {0};
    for (int i = 0; i < 2; i++) {
        const int F = sizes[i][0], H = sizes[i][1], W = sizes[i][2];
        last = bench_decode(&m, F, H, W);
        char label[64];
        snprintf(label, sizeof label, "%dx%dx%d -> %dx%d", F, H, W, 8 * H, 8 * W);
        printf("%-22s %7d %9.2f %10.3f %9.1f %8.0f%% %12.1f %14.1f\n", label, vae_num_frames(&cfg, F), last.seconds,
               last.frames_per_s, last.gflops, 100.0 * last.gflops / peak, last.state_mib,
               last.rss_growth_kib_per_frame);
    }
    const double flops_480p = vae_flops_decode(&cfg, 21, 60, 104);
    VaeDecoder *d;
    double state_480p = -1;
    if (vae_decoder_new(&d, &m, 60, 104, &err) == 0) { /* allocated, never touched: costs no RSS */
        state_480p = (double)vae_decoder_bytes(d) / (1024.0 * 1024.0 * 1024.0);
        vae_decoder_free(d);
    }
    printf("\nExtrapolated (not measured): 480p x 81 frames (21 latent frames of 60x104) = %.1f TFLOP nominal;\n"
           "at the %.1f GFLOP/s measured above that is ~%.0f min on this CPU; decoder state %.1f GiB + %.0f MiB "
           "weights.\n",
           flops_480p * 1e-12, last.gflops, flops_480p / (last.gflops * 1e9) / 60.0, state_480p,
           (double)m.arena_floats * 4 / (1024.0 * 1024.0));
    vae_free(&m);
    return 0;
}
