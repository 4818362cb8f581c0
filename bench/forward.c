/* Forward-pass throughput of the CPU backend next to the machine's own cblas_sgemm, measured in the same run.
 * FLOPs count the matrix work (dit_flops_forward); the ratio forward/sgemm is the figure of merit
 * (target: >= 0.6 on 2 cores).
 *
 * Then the real-size model from a checkpoint folder: a Wan2.1-T2V-1.3B-shaped official folder with random weights
 * (config.json, 2 shards + index; F32 5.7 GB and BF16 2.8 GB) is written once under $CACHEBENCH_WAN_DIR (default
 * /tmp/cachebench-wan13b) when at least 10 GB are free there, else that part is skipped with a note. Each is
 * loaded as `run --weights DIR` loads it (time; the SHA-256 part of it, timed again alone; the peak RSS while loading:
 * F32 tensors stay in the page-cache-backed mapping, BF16 ones are converted into memory and their file pages
 * released), and the F32 model runs the full 30-layer forward at a 1x16x16 latent (64 tokens; the cross-attention
 * over 512 text tokens dominates at this size). Load times depend on the page cache: the folder was just written
 * or read, but a machine short of memory re-reads part of it from disk. CACHEBENCH_WAN_KEEP=0 deletes the folder
 * afterwards. */
#include <cblas.h>
#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "core/rng.h"
#include "harness/experiment.h"
#include "models/dit/checkpoint.h"
#include "models/dit/dit.h"
#include "models/safetensors.h"

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

/* ---- the 1.3B checkpoint folder ---- */

typedef struct {
    StWriteTensor *list;
    int count;
    StDtype dtype;
} Collect;

static int collect(void *user, const char *name, int ndim, const int64_t *shape, const float **slot) {
    Collect *c = user;
    StWriteTensor *t = &c->list[c->count++];
    *t = (StWriteTensor){.name = strdup(name), .dtype = c->dtype, .ndim = ndim, .data = *slot};
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    return 0;
}

/* Writes dir/{config.json, 2 shards, index} of the 1.3B config with random weights. The 5.7 GB of random weights
 * are freed (returned to the system) before the peak RSS of a load is reset and measured. (Not in a forked child:
 * OpenMP's thread pool does not survive fork.) */
static int write_folder(const char *dir, StDtype dtype) {
    const DitConfig *cfg = dit_config_by_name("wan2.1-t2v-1.3b");
    DitModel m;
    Error err;
    if (mkdir(dir, 0755) && errno != EEXIST) return fprintf(stderr, "%s: mkdir failed\n", dir), -1;
    if (dit_init_random(&m, cfg, 1, &err)) return fprintf(stderr, "%s\n", err.msg), -1;
    Collect c = {.list = calloc(1024, sizeof(StWriteTensor)), .dtype = dtype};
    dit_for_each_tensor(&m, collect, &c);
    int split = 0;
    while (split < c.count && strcmp(c.list[split].name, "blocks.15.modulation") != 0) split++;
    char path[4200];
    FILE *f;
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!(f = fopen(path, "w"))) return -1;
    fprintf(f, "{\"_class_name\": \"WanModel\", \"dim\": 1536, \"eps\": 1e-06, \"ffn_dim\": 8960, \"freq_dim\": 256, "
               "\"in_dim\": 16, \"model_type\": \"t2v\", \"num_heads\": 12, \"num_layers\": 30, \"out_dim\": 16, "
               "\"text_len\": 512}\n");
    fclose(f);
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors.index.json", dir);
    if (!(f = fopen(path, "w"))) return -1;
    fprintf(f, "{\"metadata\": {}, \"weight_map\": {");
    for (int i = 0; i < c.count; i++)
        fprintf(f, "%s\"%s\": \"diffusion_pytorch_model-0000%d-of-00002.safetensors\"", i ? ", " : "", c.list[i].name,
                i < split ? 1 : 2);
    fprintf(f, "}}\n");
    fclose(f);
    int rc = 0;
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model-00001-of-00002.safetensors", dir);
    rc = rc || st_write(path, c.list, split, &err);
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model-00002-of-00002.safetensors", dir);
    rc = rc || st_write(path, c.list + split, c.count - split, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    for (int i = 0; i < c.count; i++) free((char *)c.list[i].name);
    free(c.list);
    dit_free(&m);
    return rc ? -1 : 0;
}

static int ensure_folder(const char *dir, StDtype dtype) {
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/diffusion_pytorch_model-00002-of-00002.safetensors", dir);
    if (access(probe, R_OK) == 0) return 0;
    printf("writing %s (random weights, once) ...\n", dir);
    fflush(stdout);
    return write_folder(dir, dtype);
}

static double folder_gb(const char *dir) {
    char path[4200];
    double total = 0;
    struct stat st;
    for (int i = 1; i <= 2; i++) {
        snprintf(path, sizeof path, "%s/diffusion_pytorch_model-0000%d-of-00002.safetensors", dir, i);
        if (stat(path, &st) == 0) total += (double)st.st_size;
    }
    return total / 1e9;
}

static int wan_folder_bench(double sgemm_peak) {
    const char *root = getenv("CACHEBENCH_WAN_DIR");
    char base[2048], dirs[2][2200];
    snprintf(base, sizeof base, "%s", root && *root ? root : "/tmp/cachebench-wan13b");
    snprintf(dirs[0], sizeof dirs[0], "%s/f32", base);
    snprintf(dirs[1], sizeof dirs[1], "%s/bf16", base);
    mkdir(base, 0755);
    struct statvfs vfs;
    int have = access(dirs[0], R_OK) == 0 && access(dirs[1], R_OK) == 0;
    if (!have && (statvfs(base, &vfs) != 0 || (double)vfs.f_bavail * vfs.f_frsize < 10e9)) {
        printf("\nWan2.1-T2V-1.3B folder: skipped (needs 10 GB free under %s; set CACHEBENCH_WAN_DIR)\n", base);
        return 0;
    }
    if (ensure_folder(dirs[0], ST_F32) || ensure_folder(dirs[1], ST_BF16)) {
        fprintf(stderr, "bench_forward: could not write the folders under %s\n", base);
        return 1;
    }
    printf("\nWan2.1-T2V-1.3B-shaped official folder (config.json + 2 shards + index, random weights), %d threads\n",
           omp_get_max_threads());
    printf("%-6s %9s %9s %11s %14s\n", "dtype", "size GB", "load s", "sha256 s", "peak RSS MiB");
    DitModel f32_model;
    int have_f32 = 0;
    /* BF16 first: the F32 model stays loaded for the forward below and its resident pages would count. */
    for (int d = 1; d >= 0; d--) {
        DitModel m;
        Error err;
        experiment_reset_peak_rss();
        double t = now();
        if (dit_load(&m, NULL, dirs[d], &err)) {
            fprintf(stderr, "bench_forward: %s\n", err.msg);
            return 1;
        }
        double load = now() - t;
        long rss = experiment_peak_rss_kb();
        char hex[65];
        t = now();
        checkpoint_sha256(m.file, hex, &err);
        double sha = now() - t;
        printf("%-6s %9.2f %9.2f %11.2f %14.0f\n", d ? "BF16" : "F32", folder_gb(dirs[d]), load, sha, rss / 1024.0);
        if (d == 0) f32_model = m, have_f32 = 1;
        else dit_free(&m);
    }
    if (have_f32) {
        /* The full model, every layer, on a 1x16x16 latent: 64 tokens. */
        DitState s;
        Error err;
        const int F = 1, H = 16, W = 16;
        if (dit_state_init(&s, &f32_model.cfg, F, H, W, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
        size_t n = (size_t)16 * F * H * W, tn = (size_t)512 * 4096;
        float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float)), *text = calloc(tn, sizeof(float));
        philox_normal(x, n, 3, 0);
        philox_normal(text, 20 * 4096, 4, 0); /* a 20-token prompt, zero padding */
        double best = 1e30;
        for (int r = 0; r <= 2; r++) {
            double t = now();
            dit_forward(&f32_model, &s, x, 999.0f, text, y);
            t = now() - t;
            if (r > 0 && t < best) best = t;
        }
        double gflops = dit_flops_forward(&f32_model.cfg, s.L) / best * 1e-9;
        printf("\nfull forward, 30 layers, 1x16x16 latent (%d tokens): %.2f s, %.1f tokens/s, %.1f GFLOP/s "
               "(%.0f%% of sgemm %.1f)\n", s.L, best, s.L / best, gflops, 100.0 * gflops / sgemm_peak, sgemm_peak);
        free(x), free(y), free(text);
        dit_state_free(&s);
        dit_free(&f32_model);
    }
    const char *keep = getenv("CACHEBENCH_WAN_KEEP");
    if (keep && strcmp(keep, "0") == 0) {
        char cmd[2200 + 32];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
        if (system(cmd) != 0) fprintf(stderr, "bench_forward: could not remove %s\n", base);
    }
    return 0;
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
    return wan_folder_bench(peak);
}
