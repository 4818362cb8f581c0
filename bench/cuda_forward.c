/* Forward-pass time of the CUDA engine on Wan2.1-T2V-1.3B (random weights) at 480p x 81 frames: latent 21x60x104,
 * 32,760 tokens per model call, the shape of one real sampling step.
 *
 * Prints per attention kernel: ms per forward (best and mean of --reps after one warm-up), achieved TFLOP/s of the
 * matrix work (dit_flops_forward; elementwise work is not counted), the fraction of the GPU's dense BF16 tensor peak
 * (from the table below, keyed by device name; the assumption is printed), the engine's device memory and the
 * device-wide memory growth (cudaMemGetInfo before creating the engine and after the runs; the engine allocates
 * everything up front, so that is its peak), and a last line "RESULT ..." per kernel that bench/run_gpu.sh parses.
 *
 * Options: --reps N (3), --layers N (30), --attention simple|mma|both (both), --precision bf16|fp32 (bf16),
 *          --grid FxHxW (21x60x104), --svg SPARSITY (0: off).
 * --svg s also times Sparse VideoGen forwards (models/sparse_attention.h: official 128-token band and 128x128 blocks)
 * at sparsity s on the engine of the simple kernel: layer 0 dense, every other layer's heads profiled on 64 rows and
 * run spatial or temporal, as a sparse sampling step does; it prints the attention FLOPs spent vs dense and a "RESULT ... attention=svg" line.
 * Without CUDA in the build or without a device it prints "skipped: no CUDA device (...)" and exits 0, because
 * `make bench` runs every benchmark. Compare with PyTorch: bench/run_gpu.sh. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/rng.h"
#include "models/dit/dit.h"
#include "models/dit/engine.h"
#include "models/svg_grid.h"
#ifdef CACHEBENCH_CUDA
#include "models/dit/engine_cuda.h"
#endif

#ifndef CACHEBENCH_CUDA
int main(void) {
    printf("skipped: no CUDA device (this build has no CUDA backend: nvcc was not found at build time, or CUDA=0)\n");
    return 0;
}
#else

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* Dense BF16 tensor-core peaks (FP32 accumulate, no sparsity) from NVIDIA's data sheets. First match wins, so longer
 * names come before their prefixes. */
static const struct {
    const char *match;
    double tflops;
    const char *source;
} PEAKS[] = {
    {"H200", 989.4, "H200 SXM data sheet: 1979 TFLOP/s with sparsity, 989.4 dense"},
    {"H100 PCIe", 756.5, "H100 PCIe data sheet: 1513 TFLOP/s with sparsity, 756.5 dense"},
    {"H100 NVL", 835.5, "H100 NVL data sheet: 1671 TFLOP/s with sparsity, 835.5 dense"},
    {"H100", 989.4, "H100 SXM5 data sheet: 1979 TFLOP/s with sparsity, 989.4 dense"},
    {"A100", 312.0, "A100 data sheet: 624 TFLOP/s with sparsity, 312 dense"},
    {"L40S", 362.05, "L40S data sheet: 733 TFLOP/s with sparsity, 362 dense"},
};

static const char *const USAGE =
    "usage: bench_cuda_forward [--reps N] [--layers N] [--attention simple|mma|both] [--precision bf16|fp32] "
    "[--grid FxHxW] [--svg SPARSITY]\n";

int main(int argc, char **argv) {
    int reps = 3, layers = 30, F = 21, H = 60, W = 104;
    const char *attention = "both", *precision = "bf16";
    double svg = 0.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fputs(USAGE, stderr);
            return 2;
        }
        if (strcmp(a, "--reps") == 0) reps = atoi(v);
        else if (strcmp(a, "--layers") == 0) layers = atoi(v);
        else if (strcmp(a, "--attention") == 0) attention = v;
        else if (strcmp(a, "--precision") == 0) precision = v;
        else if (strcmp(a, "--grid") == 0 && sscanf(v, "%dx%dx%d", &F, &H, &W) == 3) (void)0;
        else if (strcmp(a, "--svg") == 0) svg = atof(v);
        else {
            fputs(USAGE, stderr);
            return 2;
        }
        i++;
    }
    const int fp32 = strcmp(precision, "fp32") == 0;
    if (reps < 1 || layers < 1 || !(svg >= 0.0 && svg < 1.0) || (!fp32 && strcmp(precision, "bf16") != 0) ||
        (strcmp(attention, "both") && strcmp(attention, "simple") && strcmp(attention, "mma"))) {
        fputs(USAGE, stderr);
        return 2;
    }

    Error err = {{0}};
    CudaDeviceInfo dev;
    if (cuda_device_info(&dev, &err)) {
        printf("skipped: %s\n", err.msg); /* "no CUDA device available: <why>" */
        return 0;
    }
    if (dev.major < 8) {
        printf("skipped: no CUDA device (%s has compute capability %d.%d; the CUDA engine needs 8.0)\n", dev.name,
               dev.major, dev.minor);
        return 0;
    }
    double peak = 0.0;
    const char *source = NULL;
    for (size_t i = 0; i < sizeof PEAKS / sizeof PEAKS[0] && !source; i++)
        if (strstr(dev.name, PEAKS[i].match)) peak = PEAKS[i].tflops, source = PEAKS[i].source;

    DitConfig cfg = *dit_config_by_name("wan2.1-t2v-1.3b");
    cfg.num_layers = layers;
    DitModel m;
    printf("device: %s (cc %d.%d, %d SMs, %.1f GiB)\n", dev.name, dev.major, dev.minor, dev.sm_count,
           (double)dev.total_bytes / (1u << 30));
    printf("peak assumed: %s\n", source ? source : "unknown for this device (add it to PEAKS in bench/cuda_forward.c)");
    printf("model: %s, %d layers, random weights; latent %dx%dx%d; %s; %d reps after 1 warm-up\n", cfg.name, layers, F,
           H, W, precision, reps);
    fflush(stdout);
    double t0 = now();
    if (dit_init_random(&m, &cfg, 1, &err)) {
        fprintf(stderr, "bench_cuda_forward: %s\n", err.msg);
        return 1;
    }
    printf("random weights: %.1f s\n", now() - t0);

    const size_t n = (size_t)cfg.in_dim * F * H * W, tn = (size_t)cfg.text_len * cfg.text_dim;
    float *x = malloc(n * sizeof(float)), *text = calloc(tn, sizeof(float)), *out = malloc(n * sizeof(float));
    if (!x || !text || !out) {
        fprintf(stderr, "bench_cuda_forward: out of memory\n");
        return 1;
    }
    philox_normal(x, n, 2, 0);
    philox_normal(text, 20 * (size_t)cfg.text_dim, 3, 0); /* 20 "words", zero padding: like a T5-encoded prompt */

    const CudaAttention kinds[2] = {CUDA_ATTENTION_SIMPLE, CUDA_ATTENTION_MMA};
    int status = 0;
    printf("\n%-9s %-6s %7s %10s %10s %9s %7s %11s %11s %11s\n", "attention", "prec", "tokens", "ms best", "ms mean",
           "TFLOP/s", "%peak", "weights MiB", "activ. MiB", "device MiB");
    for (int ki = 0; ki < 2; ki++) {
        const CudaOptions opt = {fp32 ? CUDA_PRECISION_FP32 : CUDA_PRECISION_BF16, kinds[ki]};
        if (strcmp(attention, "both") != 0 && strcmp(attention, cuda_attention_name(opt.attention)) != 0) continue;
        if (fp32 && opt.attention == CUDA_ATTENTION_MMA) continue; /* mma is bf16 only */
        size_t used0 = 0, used1 = 0, wbytes = 0, abytes = 0;
        Engine *e = NULL;
        if (cuda_memory_used(&used0, NULL, &err) || engine_create_cuda(&e, &m, &opt, &err) ||
            e->prepare(e, F, H, W, &err)) {
            fprintf(stderr, "bench_cuda_forward: %s\n", err.msg);
            if (e) e->destroy(e);
            status = 1;
            continue;
        }
        const VecOps *ops = e->ops;
        float *dx = ops->alloc(ops->ctx, n), *dtext = ops->alloc(ops->ctx, tn), *dout = ops->alloc(ops->ctx, n);
        if (!dx || !dtext || !dout) {
            fprintf(stderr, "bench_cuda_forward: CUDA out of memory for inputs\n");
            status = 1;
            e->destroy(e);
            continue;
        }
        e->upload(e, dx, x, n);
        e->upload(e, dtext, text, tn);
        /* Pass 0: dense. Pass 1 (--svg, simple kernel's engine only): Sparse VideoGen plans on layers 1.. */
        const int passes = svg > 0.0 && opt.attention == CUDA_ATTENTION_SIMPLE ? 2 : 1;
        for (int pass = 0; pass < passes; pass++) {
            AttnPattern *patterns = pass ? calloc((size_t)layers * cfg.num_heads, sizeof(AttnPattern)) : NULL;
            AttentionPlan *plans = pass ? calloc((size_t)layers, sizeof(AttentionPlan)) : NULL;
            if (pass && (!patterns || !plans)) {
                fprintf(stderr, "bench_cuda_forward: out of memory\n");
                return 1;
            }
            double best = 1e30, sum = 0.0, attn_done = 0.0, attn_dense = 0.0;
            for (int r = 0; r <= reps; r++) {
                for (int l = 0; pass && l < layers; l++) {
                    for (int h = 0; h < cfg.num_heads; h++)
                        patterns[(size_t)l * cfg.num_heads + h] = l == 0 ? ATTN_DENSE : ATTN_SPATIAL;
                    plans[l] = (AttentionPlan){.num_heads = cfg.num_heads,
                                               .pattern = patterns + (size_t)l * cfg.num_heads,
                                               .sparsity = svg, .block = SVG_BLOCK, .profile_rows = 64,
                                               .profile_seed = (unsigned long long)(r * layers + l)};
                }
                e->synchronize(e);
                double t = now();
                e->embed(e, dx, 500.0f, dtext);
                for (int l = 0; l < layers; l++) e->block(e, l, pass ? &plans[l] : NULL, NULL);
                e->head(e, dout);
                e->synchronize(e);
                t = now() - t;
                if (r == 0) continue; /* warm-up: cuBLAS heuristics, lazy module loading */
                best = t < best ? t : best;
                sum += t;
            }
            for (int l = 0; pass && l < layers; l++) attn_done += plans[l].flops_done, attn_dense += plans[l].flops_dense;
            free(patterns);
            free(plans);
            e->download(e, out, dout, n);
            size_t bad = 0;
            for (size_t i = 0; i < n; i++) bad += !isfinite(out[i]);
            cuda_memory_used(&used1, NULL, &err);
            engine_cuda_bytes(e, &wbytes, &abytes);
            /* TFLOP/s of the work done: for svg the dense attention FLOPs are replaced by those spent. */
            const double flops = dit_flops_forward(&cfg, e->L) - attn_dense + attn_done, tflops = flops / best * 1e-12;
            const char *name = pass ? "svg" : cuda_attention_name(opt.attention);
            char pct[16] = "n/a";
            if (peak > 0) snprintf(pct, sizeof pct, "%.1f%%", 100.0 * tflops / peak);
            printf("%-9s %-6s %7d %10.1f %10.1f %9.1f %7s %11.0f %11.0f %11.0f\n", name, precision, e->L, best * 1e3,
                   sum / reps * 1e3, tflops, pct, (double)wbytes / (1 << 20), (double)abytes / (1 << 20),
                   ((double)used1 - (double)used0) / (1 << 20));
            if (pass)
                printf("  svg sparsity %.2f: self-attention FLOPs spent %.3g of dense %.3g (%.1f%%, profiling included)\n",
                       svg, attn_done, attn_dense, 100.0 * attn_done / attn_dense);
            if (engine_cuda_error(e)) {
                printf("  engine error: %s\n", engine_cuda_error(e));
                status = 1;
            }
            if (bad) printf("  warning: %zu non-finite outputs\n", bad);
            printf("RESULT backend=cachebench attention=%s precision=%s tokens=%d ms=%.3f tflops=%.2f\n", name,
                   precision, e->L, best * 1e3, tflops);
            fflush(stdout);
        }
        ops->release(ops->ctx, dx), ops->release(ops->ctx, dtext), ops->release(ops->ctx, dout);
        e->destroy(e);
    }
    free(x), free(text), free(out);
    dit_free(&m);
    return status;
}
#endif
