/* Sparse VideoGen attention vs dense attention on the CPU: wall time of one self-attention call (4 heads × 32,
 * the tiny model's heads) at the tiny model's 512 tokens and at 4096 tokens (16 frames of 16×16), for sparsity
 * 0.5 and 0.75, half the heads spatial and half temporal, with and without the per-call profiling of 64 rows.
 * Best of REPS runs each (the machine is shared). Inputs are random; the time does not depend on them.
 * Run: make bench (or build/bench_svg). Threads: OMP_NUM_THREADS. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/rng.h"
#include "models/kernels.h"
#include "models/sparse_attention.h"

enum { HEADS = 4, HEAD_DIM = 32, REPS = 5 };

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
 * heads are spatial and half temporal; with it the profiler picks (on random inputs either pattern costs the same
 * to within the sink's placement). */
static double time_sparse(Bufs *b, int frames, double sparsity, int rows, AttentionPlan *plan_out) {
    double best = INFINITY;
    AttnPattern pattern[HEADS];
    float density[HEADS];
    for (int r = 0; r < REPS; r++) {
        for (int h = 0; h < HEADS; h++) pattern[h] = h % 2 ? ATTN_TEMPORAL : ATTN_SPATIAL;
        AttentionPlan plan = {.num_heads = HEADS, .pattern = pattern, .sparsity = sparsity, .profile_rows = rows,
                              .frames = frames, .tokens_per_frame = b->L / frames, .density = density};
        const double t0 = now();
        if (svg_attention(b->out, b->q, b->k, b->v, HEADS, HEAD_DIM, &plan, b->kp, b->vp, b->scratch,
                          b->scratch_floats))
            return NAN;
        best = fmin(best, now() - t0);
        *plan_out = plan;
    }
    return best;
}

int main(void) {
    const struct {
        int frames, L;
    } geos[] = {{8, 512}, {16, 4096}};
    const double sparsities[] = {0.5, 0.75};
    printf("SVG attention vs dense: %d heads x %d, %d OpenMP threads, best of %d\n", HEADS, HEAD_DIM,
           omp_get_max_threads(), REPS);
    printf("%6s %8s %8s %7s %5s %8s %10s %9s %10s %7s\n", "tokens", "frames", "sparsity", "profile", "band",
           "density", "flops/dns", "dense ms", "sparse ms", "speedup");
    for (size_t g = 0; g < sizeof geos / sizeof geos[0]; g++) {
        Bufs b;
        if (bufs_init(&b, geos[g].L)) {
            fprintf(stderr, "bench_svg: out of memory\n");
            return 1;
        }
        const double dense = time_dense(&b);
        for (size_t s = 0; s < sizeof sparsities / sizeof sparsities[0]; s++)
            for (int rows = 0; rows <= 64; rows += 64) {
                AttentionPlan plan = {0};
                const double t = time_sparse(&b, geos[g].frames, sparsities[s], rows, &plan);
                const SvgShape sh = {.frames = geos[g].frames, .tokens_per_frame = geos[g].L / geos[g].frames,
                                     .band = plan.band_tokens};
                const double density =
                    (svg_mask_density(&sh, ATTN_SPATIAL) + svg_mask_density(&sh, ATTN_TEMPORAL)) / 2.0;
                printf("%6d %8d %8.2f %7d %5d %8.3f %10.3f %9.1f %10.1f %6.2fx\n", geos[g].L, geos[g].frames,
                       sparsities[s], rows, plan.band_tokens, density, plan.flops_done / plan.flops_dense,
                       1e3 * dense, 1e3 * t, dense / t);
            }
        bufs_free(&b);
    }
    return 0;
}
