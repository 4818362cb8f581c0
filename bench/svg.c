/* Sparse VideoGen attention vs dense attention on the CPU: wall time of one self-attention call (4 heads × 32, the
 * tiny model's heads) from 256 to 4096 tokens (4 to 64 frames of 64 tokens; the tiny model runs 8 frames, 512
 * tokens), at sparsity 0.75, official (128-token band, 128x128 blocks) and exact band, with and without the per-call
 * profiling of 64 rows: where SVG starts to pay off. Best of REPS runs each (the machine is shared). Inputs are
 * random; the time does not depend on them.
 * Run: make bench (or build/bench_svg). Threads: OMP_NUM_THREADS. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/rng.h"
#include "models/kernels.h"
#include "models/sparse_attention.h"

enum { HEADS = 4, HEAD_DIM = 32, REPS = 3 };

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    float *q, *k, *v, *out, *kp, *vp, *scratch, *dense_scratch;
    size_t scratch_floats;
    int L;
} Bufs;

static int bufs_init(Bufs *b, int L) {
    const size_t n = (size_t)L * HEADS * HEAD_DIM;
    b->L = L;
    b->scratch_floats = (size_t)omp_get_max_threads() * svg_thread_floats(L, HEAD_DIM);
    b->q = malloc(n * sizeof(float)), b->k = malloc(n * sizeof(float)), b->v = malloc(n * sizeof(float));
    b->out = malloc(n * sizeof(float)), b->kp = malloc(n * sizeof(float)), b->vp = malloc(n * sizeof(float));
    b->scratch = malloc(b->scratch_floats * sizeof(float));
    b->dense_scratch = malloc(attention_scratch_floats(L, L, HEADS) * sizeof(float));
    if (!b->q || !b->k || !b->v || !b->out || !b->kp || !b->vp || !b->scratch || !b->dense_scratch) return -1;
    philox_normal(b->q, n, 1, 0), philox_normal(b->k, n, 1, 1), philox_normal(b->v, n, 1, 2);
    return 0;
}

static void bufs_free(Bufs *b) {
    free(b->q), free(b->k), free(b->v), free(b->out), free(b->kp), free(b->vp), free(b->scratch);
    free(b->dense_scratch);
}

static double time_dense(Bufs *b) {
    double best = INFINITY;
    for (int r = 0; r < REPS; r++) {
        const double t0 = now();
        attention(b->out, b->q, b->k, b->v, b->L, b->L, HEADS, HEAD_DIM, b->dense_scratch);
        best = fmin(best, now() - t0);
    }
    return best;
}

/* Best time of svg_attention; *plan_out keeps the plan of the last run (FLOPs, band). Without profiling half the
 * heads are spatial and half temporal; with it the profiler picks (both patterns cost the same: one mask in pattern
 * order). block: SVG_BLOCK (official) or 0 (exact band). */
static double time_sparse(Bufs *b, int frames, double sparsity, int block, int rows, AttentionPlan *plan_out) {
    double best = INFINITY;
    AttnPattern pattern[HEADS];
    float density[HEADS];
    for (int r = 0; r < REPS; r++) {
        for (int h = 0; h < HEADS; h++) pattern[h] = h % 2 ? ATTN_TEMPORAL : ATTN_SPATIAL;
        AttentionPlan plan = {.num_heads = HEADS, .pattern = pattern, .sparsity = sparsity, .block = block,
                              .profile_rows = rows, .profile_seed = (unsigned long long)r, .frames = frames,
                              .tokens_per_frame = b->L / frames, .density = density};
        const double t0 = now();
        if (svg_attention(b->out, b->q, b->k, b->v, HEADS, HEAD_DIM, &plan, b->kp, b->vp, b->scratch,
                          b->scratch_floats))
            return NAN;
        best = fmin(best, now() - t0);
        *plan_out = plan;
    }
    return best;
}

/* The cost model: frames of the tiny model's 64 tokens (8x8 latent patches), more and more of them, at the official
 * default sparsity 0.75 (5efea72); each length timed dense, then sparse with the official 128-token band and blocks
 * and with the exact band, each without and with the 64-row profiling every sparse call pays. The last line names the
 * shortest length at which official SVG (profiling included) beats dense attention. */
int main(void) {
    const int P = 64, frames[] = {4, 8, 16, 32, 64};
    const double sparsity = 0.75;
    printf("SVG attention vs dense: %d heads x %d, %d tokens a frame, sparsity %.2f, %d OpenMP threads, best of %d\n",
           HEADS, HEAD_DIM, P, sparsity, omp_get_max_threads(), REPS);
    printf("%6s %6s %8s %7s %5s %8s %10s %9s %10s %7s\n", "tokens", "frames", "band", "profile", "w", "density",
           "flops/dns", "dense ms", "sparse ms", "speedup");
    int crossover = 0;
    for (size_t g = 0; g < sizeof frames / sizeof frames[0]; g++) {
        const int L = frames[g] * P;
        Bufs b;
        if (bufs_init(&b, L)) {
            fprintf(stderr, "bench_svg: out of memory\n");
            return 1;
        }
        const double dense = time_dense(&b);
        for (int block = SVG_BLOCK; block >= 0; block -= SVG_BLOCK)
            for (int rows = 0; rows <= 64; rows += 64) {
                AttentionPlan plan = {0};
                const double t = time_sparse(&b, frames[g], sparsity, block, rows, &plan);
                const SvgShape sh = {.frames = frames[g], .tokens_per_frame = P, .band = plan.band_tokens,
                                     .block = block};
                printf("%6d %6d %8s %7d %5d %8.3f %10.3f %9.2f %10.2f %6.2fx\n", L, frames[g],
                       block ? "official" : "exact", rows, plan.band_tokens, svg_mask_density(&sh, ATTN_SPATIAL),
                       plan.flops_done / plan.flops_dense, 1e3 * dense, 1e3 * t, dense / t);
                if (block && rows && t < dense && !crossover) crossover = L;
            }
        bufs_free(&b);
    }
    if (crossover)
        printf("official SVG (with profiling) first beats dense attention at %d tokens\n", crossover);
    else
        printf("official SVG (with profiling) never beat dense attention up to %d tokens\n", frames[4] * P);
    return 0;
}
