/* Sparse VideoGen: the mask, the tile plan, the permutation, the profiler and the block-sparse kernel against naive
 * references (models/sparse_attention.h); the svg and easycache+svg strategies through their hooks; and one
 * sampling run on a small random model with the SVG trace written to and read back from a run record.
 *
 * Tolerances (fp32 kernels against references in double, inputs of unit scale):
 *   sparse attention vs the naive masked softmax             max |diff| <= 2e-5
 *   sparsity 0 vs dense attention() (other GEMM blocking)    max |diff| <= 1e-5
 *   a block at sparsity 0 vs the dense block                 max |diff| <= 1e-4 (through LayerNorm, FFN)
 *   profiler MSEs vs the naive masked attention              relative 1e-4 (+1e-12 absolute)
 *   profiler on a head where one pattern is exact            that pattern's MSE <= 1e-10, the other's >= 1e-4;
 *                                                            the sparse output then equals dense within 1e-5
 * Everything else (mask counts, tile plans, FLOPs, permutations, decisions, record round trip) is exact. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/runner.h"
#include "models/dit/dit.h"
#include "models/dit/engine.h"
#include "models/kernels.h"
#include "models/sparse_attention.h"
#include "results/record.h"
#include "strategies/strategy.h"
#include "tests/fixtures.h"

/* Shapes with several tiles, L and P not multiples of the tile, bands from none to everything. */
typedef struct {
    int F, P, w;
} Shape;
static const Shape SHAPES[] = {
    {5, 30, 0}, {5, 30, 7}, {5, 30, 45}, {5, 30, 149}, {3, 70, 64}, {3, 70, 100}, {8, 16, 20},
    {8, 16, 33}, {2, 1, 0}, {1, 40, 3}, {9, 13, 1},  {4, 40, 70},
};
#define NSHAPES (sizeof SHAPES / sizeof SHAPES[0])
static const AttnPattern PATTERNS[] = {ATTN_DENSE, ATTN_SPATIAL, ATTN_TEMPORAL};

static SvgShape shape_of(Shape s) { return (SvgShape){.frames = s.F, .tokens_per_frame = s.P, .band = s.w}; }

/* ---------------------------------------------------------------------------------------------- */
/* mask, density, tiles */

Test(svg, band_for_sparsity) {
    cr_assert_eq(svg_band_for_sparsity(512, 0.0), 512);
    cr_assert_eq(svg_band_for_sparsity(512, 1.0), 0);
    cr_assert_eq(svg_band_for_sparsity(512, 0.25), 256); /* 512 · (1 - 0.5), exactly */
    cr_assert_eq(svg_band_for_sparsity(512, -1.0), 512);
    /* The band alone (no sink) masks (L - w)(L - w - 1) of L² pairs: never more than s, and below it by at most
     * 3/L (w rounds up by < 1 token, and the discrete triangles are (L - w)(L - w - 1)/2, not (L - w)²/2). */
    const double ss[] = {0.1, 0.3, 0.5, 0.75, 0.9, 0.99};
    const int Ls[] = {150, 512, 4096};
    for (size_t a = 0; a < sizeof ss / sizeof ss[0]; a++)
        for (size_t b = 0; b < sizeof Ls / sizeof Ls[0]; b++) {
            const int L = Ls[b], w = svg_band_for_sparsity(L, ss[a]);
            const double masked = (double)(L - w) * (L - w - 1) / ((double)L * L);
            cr_assert(masked <= ss[a] + 1e-12 && masked >= ss[a] - 3.0 / L, "L %d s %g: w %d masks %g", L, ss[a], w,
                      masked);
        }
}

Test(svg, positions_are_a_permutation) {
    const SvgShape g = {.frames = 5, .tokens_per_frame = 30, .band = 3};
    int seen[150] = {0};
    for (int i = 0; i < 150; i++) {
        const int t = svg_pos(&g, ATTN_TEMPORAL, i);
        cr_assert_eq(t, (i % 30) * 5 + i / 30); /* index' = spatial_pos · frames + frame */
        cr_assert_eq(svg_token(&g, ATTN_TEMPORAL, t), i);
        cr_assert_eq(svg_pos(&g, ATTN_SPATIAL, i), i);
        seen[t]++;
    }
    for (int i = 0; i < 150; i++) cr_assert_eq(seen[i], 1);
}

/* svg_mask written out from the definition in the issue, independently of svg_pos. */
static int naive_mask(int F, int P, int w, AttnPattern p, int i, int j) {
    if (p == ATTN_DENSE) return 1;
    if (j / P == 0) return 1; /* every key of frame 0 */
    int a = i, b = j;
    if (p == ATTN_TEMPORAL) a = (i % P) * F + i / P, b = (j % P) * F + j / P;
    return abs(a - b) <= w;
}

Test(svg, mask_and_density_against_naive) {
    for (size_t s = 0; s < NSHAPES; s++) {
        const SvgShape g = shape_of(SHAPES[s]);
        const int L = g.frames * g.tokens_per_frame;
        for (int pi = 0; pi < 3; pi++) {
            long kept = 0;
            for (int i = 0; i < L; i++)
                for (int j = 0; j < L; j++) {
                    const int m = naive_mask(g.frames, g.tokens_per_frame, g.band, PATTERNS[pi], i, j);
                    cr_assert_eq(svg_mask(&g, PATTERNS[pi], i, j), m, "shape %zu pattern %d (%d,%d)", s, pi, i, j);
                    kept += m;
                }
            cr_assert_eq(lround(svg_mask_density(&g, PATTERNS[pi]) * L * L), kept, "shape %zu pattern %d", s, pi);
        }
    }
}

/* The tile plan against the mask: every attended pair is computed exactly once; every band key tile computed is
 * one that holds a band pair, and every band tile holding one is computed; sink ranges hold only attended pairs
 * and are exactly the first-frame keys outside the band tiles; FLOPs = 4·hd·(computed pairs). */
Test(svg, tiles_against_naive_mask) {
    const int hd = 8;
    for (size_t s = 0; s < NSHAPES; s++) {
        const SvgShape g = shape_of(SHAPES[s]);
        const int F = g.frames, P = g.tokens_per_frame, L = F * P, T = svg_tile(L), TK = SVG_TILE_KEYS, w = g.band;
        unsigned char *cover = malloc((size_t)L * L);
        cr_assert_not_null(cover);
        for (int pi = 0; pi < 3; pi++) {
            const AttnPattern p = PATTERNS[pi];
            memset(cover, 0, (size_t)L * L);
            double pairs = 0.0;
            for (int q0 = 0; q0 < L; q0 += T) {
                const int q1 = q0 + T < L ? q0 + T : L;
                SvgTileKeys tk;
                svg_tile_keys(&g, p, q0, q1, &tk);
                cr_assert(tk.band_lo % TK == 0 && (tk.band_hi % TK == 0 || tk.band_hi == L));
                cr_assert(0 <= tk.band_lo && tk.band_lo < tk.band_hi && tk.band_hi <= L);
                /* Naive: which key tiles (pattern order) hold a pair within the band? */
                for (int k0 = 0; k0 < L; k0 += TK) {
                    int needed = p == ATTN_DENSE || w >= L - 1;
                    for (int a = q0; a < q1 && !needed; a++)
                        for (int b = k0; b < k0 + TK && b < L && !needed; b++) needed = abs(a - b) <= w;
                    const int computed = k0 >= tk.band_lo && k0 < tk.band_hi;
                    cr_assert_eq(computed, needed, "shape %zu pattern %d q-tile %d k-tile %d", s, pi, q0, k0);
                }
                int in_sink_ranges = 0;
                for (int r = 0; r < tk.nsink; r++) {
                    cr_assert(0 <= tk.sink_lo[r] && tk.sink_lo[r] < tk.sink_hi[r] && tk.sink_hi[r] <= P);
                    in_sink_ranges += tk.sink_hi[r] - tk.sink_lo[r];
                }
                int sink_outside = 0; /* first-frame keys whose pattern position is outside the band tiles */
                for (int j = 0; j < P; j++) {
                    const int pos = svg_pos(&g, p, j);
                    sink_outside += pos < tk.band_lo || pos >= tk.band_hi;
                }
                cr_assert_eq(in_sink_ranges, sink_outside, "shape %zu pattern %d q-tile %d", s, pi, q0);
                for (int a = q0; a < q1; a++) {
                    const int i = svg_token(&g, p, a);
                    for (int b = tk.band_lo; b < tk.band_hi; b++) cover[(size_t)i * L + svg_token(&g, p, b)]++;
                    for (int r = 0; r < tk.nsink; r++)
                        for (int j = tk.sink_lo[r]; j < tk.sink_hi[r]; j++) {
                            cr_assert(svg_mask(&g, p, i, j), "sink key %d not attended by %d", j, i);
                            cover[(size_t)i * L + j]++;
                        }
                }
                pairs += (double)(q1 - q0) * (tk.band_hi - tk.band_lo + in_sink_ranges);
            }
            for (int i = 0; i < L; i++)
                for (int j = 0; j < L; j++) {
                    const int c = cover[(size_t)i * L + j];
                    cr_assert(c <= 1, "pair (%d,%d) computed %d times", i, j, c);
                    if (svg_mask(&g, p, i, j)) cr_assert_eq(c, 1, "shape %zu pattern %d: pair (%d,%d) missed", s, pi, i, j);
                }
            cr_assert_eq(svg_pattern_flops(&g, p, hd), 4.0 * hd * pairs);
        }
        free(cover);
    }
}

/* A band far narrower than the sequence computes far fewer tiles than dense. */
Test(svg, tiles_skip_work) {
    const SvgShape g = {.frames = 16, .tokens_per_frame = 256, .band = svg_band_for_sparsity(4096, 0.75)};
    const double dense = 4.0 * 32 * 4096.0 * 4096.0;
    for (int pi = 1; pi < 3; pi++) {
        const double f = svg_pattern_flops(&g, PATTERNS[pi], 32) / dense;
        const double d = svg_mask_density(&g, PATTERNS[pi]);
        cr_assert(d > 0.25 && d < 0.35, "density %g", d);       /* 0.25 of the band plus the sink */
        cr_assert(f >= d && f < d + 0.05, "flops fraction %g vs density %g", f, d); /* tile edges waste little */
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* permutation */

Test(svg, permutation_roundtrip) {
    const SvgShape g = {.frames = 7, .tokens_per_frame = 11, .band = 0};
    const int L = 77, ld = 24, col = 8, width = 8;
    float *src = malloc(sizeof(float) * L * ld), *mid = malloc(sizeof(float) * L * ld),
          *back = malloc(sizeof(float) * L * ld);
    cr_assert(src && mid && back);
    fixture_random(src, (size_t)L * ld, 11);
    for (int i = 0; i < L * ld; i++) mid[i] = back[i] = -7.0f;
    svg_permute_rows(mid, src, &g, ld, col, width, 0);
    svg_permute_rows(back, mid, &g, ld, col, width, 1);
    for (int i = 0; i < L; i++) {
        const int t = (i % 11) * 7 + i / 11;
        for (int c = 0; c < ld; c++) {
            const int inside = c >= col && c < col + width;
            cr_assert_eq(mid[t * ld + c], inside ? src[i * ld + c] : -7.0f);
            cr_assert_eq(back[i * ld + c], inside ? src[i * ld + c] : -7.0f);
        }
    }
    free(src), free(mid), free(back);
}

/* ---------------------------------------------------------------------------------------------- */
/* the kernel */

/* Naive masked softmax attention of head h in double, frame-major. */
static void reference_attention(double *out, const float *q, const float *k, const float *v, const SvgShape *g,
                                AttnPattern p, int heads, int hd, int h) {
    const int L = g->frames * g->tokens_per_frame, ld = heads * hd;
    double *s = malloc(sizeof(double) * L);
    cr_assert_not_null(s);
    for (int i = 0; i < L; i++) {
        double m = -INFINITY;
        for (int j = 0; j < L; j++) {
            double dot = 0.0;
            for (int d = 0; d < hd; d++) dot += (double)q[i * ld + h * hd + d] * k[j * ld + h * hd + d];
            s[j] = naive_mask(g->frames, g->tokens_per_frame, g->band, p, i, j) ? dot / sqrt((double)hd) : -INFINITY;
            if (s[j] > m) m = s[j];
        }
        double sum = 0.0;
        for (int j = 0; j < L; j++) sum += (s[j] = exp(s[j] - m));
        for (int d = 0; d < hd; d++) {
            double acc = 0.0;
            for (int j = 0; j < L; j++) acc += s[j] * v[j * ld + h * hd + d];
            out[i * hd + d] = acc / sum;
        }
    }
    free(s);
}

typedef struct {
    float *q, *k, *v, *out, *kp, *vp, *scratch;
    size_t scratch_floats;
} Bufs;

static Bufs bufs_new(int L, int heads, int hd, uint64_t seed, float qscale) {
    Bufs b;
    const size_t n = (size_t)L * heads * hd;
    b.q = malloc(n * sizeof(float)), b.k = malloc(n * sizeof(float)), b.v = malloc(n * sizeof(float));
    b.out = malloc(n * sizeof(float)), b.kp = malloc(n * sizeof(float)), b.vp = malloc(n * sizeof(float));
    b.scratch_floats = 2 * svg_thread_floats(L, hd);
    b.scratch = malloc(b.scratch_floats * sizeof(float));
    cr_assert(b.q && b.k && b.v && b.out && b.kp && b.vp && b.scratch);
    fixture_random(b.q, n, seed), fixture_random(b.k, n, seed + 1), fixture_random(b.v, n, seed + 2);
    for (size_t i = 0; i < n; i++) b.q[i] *= qscale; /* sharper softmax: masking matters */
    return b;
}

static void bufs_free(Bufs *b) {
    free(b->q), free(b->k), free(b->v), free(b->out), free(b->kp), free(b->vp), free(b->scratch);
}

/* Sparse attention equals dense attention restricted to the mask, for every pattern, with the tile FLOPs. */
static void check_against_reference(int F, int P, double sparsity, int band) {
    const int L = F * P, heads = 3, hd = 16, ld = heads * hd;
    Bufs b = bufs_new(L, heads, hd, 100 + (uint64_t)L, 3.0f);
    AttnPattern pattern[3] = {ATTN_SPATIAL, ATTN_TEMPORAL, ATTN_DENSE};
    float density[3];
    AttentionPlan plan = {.num_heads = heads, .pattern = pattern, .band_tokens = band, .sparsity = sparsity,
                          .frames = F, .tokens_per_frame = P, .density = density};
    cr_assert_eq(svg_attention(b.out, b.q, b.k, b.v, heads, hd, &plan, b.kp, b.vp, b.scratch, b.scratch_floats), 0);
    const SvgShape g = {.frames = F, .tokens_per_frame = P, .band = plan.band_tokens};
    cr_assert_eq(plan.band_tokens, band > 0 ? band : svg_band_for_sparsity(L, sparsity));
    cr_assert_eq(plan.sink_tokens, P);
    double *ref = malloc(sizeof(double) * L * hd), flops = 0.0;
    cr_assert_not_null(ref);
    for (int h = 0; h < heads; h++) {
        reference_attention(ref, b.q, b.k, b.v, &g, pattern[h], heads, hd, h);
        double worst = 0.0;
        for (int i = 0; i < L; i++)
            for (int d = 0; d < hd; d++) worst = fmax(worst, fabs(b.out[i * ld + h * hd + d] - ref[i * hd + d]));
        cr_assert(worst <= 2e-5, "F %d P %d w %d head %d: max diff %g", F, P, g.band, h, worst);
        cr_assert_eq(density[h], (float)svg_mask_density(&g, pattern[h]));
        flops += svg_pattern_flops(&g, pattern[h], hd);
    }
    cr_assert_eq(plan.flops_done, flops);
    cr_assert_eq(plan.flops_dense, 4.0 * L * L * ld);
    free(ref);
    bufs_free(&b);
}

Test(svg, sparse_equals_masked_reference) {
    check_against_reference(5, 30, 0.6, 0);   /* several tiles, partial last tile */
    check_against_reference(3, 70, 0.0, 40);  /* explicit band */
    check_against_reference(8, 16, 0.9, 0);   /* narrow band: sink ranges on both sides */
    check_against_reference(4, 40, 1.0, 0);   /* w = 0: diagonal and sink only */
    check_against_reference(2, 7, 0.5, 0);    /* one tile */
}

Test(svg, sparsity_zero_equals_dense) {
    const int F = 6, P = 25, L = F * P, heads = 2, hd = 16, ld = heads * hd;
    Bufs b = bufs_new(L, heads, hd, 7, 3.0f);
    float *dense = malloc(sizeof(float) * L * ld), *scratch = malloc(sizeof(float) * attention_scratch_floats(L, L, heads));
    cr_assert(dense && scratch);
    attention(dense, b.q, b.k, b.v, L, L, heads, hd, scratch);
    AttnPattern pattern[2] = {ATTN_SPATIAL, ATTN_TEMPORAL};
    AttentionPlan plan = {.num_heads = heads, .pattern = pattern, .sparsity = 0.0, .frames = F, .tokens_per_frame = P,
                          .profile_rows = 8};
    cr_assert_eq(svg_attention(b.out, b.q, b.k, b.v, heads, hd, &plan, b.kp, b.vp, b.scratch, b.scratch_floats), 0);
    cr_assert_eq(plan.band_tokens, L);
    for (int i = 0; i < L * ld; i++) cr_assert(fabsf(b.out[i] - dense[i]) <= 1e-5f, "%d: %g vs %g", i, b.out[i], dense[i]);
    /* Nothing skipped: the tiles cost exactly dense; profiling comes on top. */
    cr_assert_eq(plan.flops_done, plan.flops_dense + 2 * 8.0 * hd * 8 * L);
    free(dense), free(scratch);
    bufs_free(&b);
}

Test(svg, scratch_too_small_falls_back) {
    const int F = 2, P = 8, L = 16, heads = 2, hd = 4;
    Bufs b = bufs_new(L, heads, hd, 3, 1.0f);
    /* Three entries: the plan below claims num_heads = 3, and the fallback marks all of a plan's heads dense. */
    AttnPattern pattern[3] = {ATTN_SPATIAL, ATTN_TEMPORAL, ATTN_SPATIAL};
    AttentionPlan plan = {.num_heads = heads, .pattern = pattern, .sparsity = 0.5, .frames = F, .tokens_per_frame = P};
    cr_assert_eq(svg_attention(b.out, b.q, b.k, b.v, heads, hd, &plan, b.kp, b.vp, b.scratch,
                               svg_thread_floats(L, hd) - 1),
                 -1);
    cr_assert(pattern[0] == ATTN_DENSE && pattern[1] == ATTN_DENSE);
    plan.tokens_per_frame = 9; /* 18 tokens: still rejected, nothing read */
    plan.num_heads = 3;
    cr_assert_eq(svg_attention(b.out, b.q, b.k, b.v, heads, hd, &plan, b.kp, b.vp, b.scratch, b.scratch_floats), -1);
    bufs_free(&b);
}

/* ---------------------------------------------------------------------------------------------- */
/* classification */

Test(svg, classification_picks_the_exact_pattern) {
    const int F = 4, P = 16, L = 64, heads = 2, hd = 8, ld = heads * hd, rows = 16;
    const SvgShape g = {.frames = F, .tokens_per_frame = P, .band = 16};
    Bufs b = bufs_new(L, heads, hd, 5, 1.0f);
    fixture_decaying_head(b.q, b.k, &g, ATTN_SPATIAL, heads, hd, 0);
    fixture_decaying_head(b.q, b.k, &g, ATTN_TEMPORAL, heads, hd, 1);
    double mse[2];
    svg_profile_head(b.q, b.k, b.v, &g, heads, hd, 0, rows, b.scratch, mse);
    cr_assert(mse[0] <= 1e-10 && mse[1] >= 1e-4, "spatial head: mse spatial %g temporal %g", mse[0], mse[1]);
    svg_profile_head(b.q, b.k, b.v, &g, heads, hd, 1, rows, b.scratch, mse);
    cr_assert(mse[1] <= 1e-10 && mse[0] >= 1e-4, "temporal head: mse spatial %g temporal %g", mse[0], mse[1]);

    /* Through svg_attention: both heads start as spatial placeholders; profiling fixes head 1; the sparse output
     * then equals dense attention (the dropped keys weigh nothing). */
    AttnPattern pattern[2] = {ATTN_SPATIAL, ATTN_SPATIAL};
    AttentionPlan plan = {.num_heads = heads, .pattern = pattern, .band_tokens = 16, .frames = F, .tokens_per_frame = P,
                          .profile_rows = rows};
    cr_assert_eq(svg_attention(b.out, b.q, b.k, b.v, heads, hd, &plan, b.kp, b.vp, b.scratch, b.scratch_floats), 0);
    cr_assert_eq(pattern[0], ATTN_SPATIAL);
    cr_assert_eq(pattern[1], ATTN_TEMPORAL);
    cr_assert_eq(plan.flops_done, svg_pattern_flops(&g, ATTN_SPATIAL, hd) + svg_pattern_flops(&g, ATTN_TEMPORAL, hd) +
                                      2 * 8.0 * hd * rows * L);
    float *dense = malloc(sizeof(float) * L * ld), *scratch = malloc(sizeof(float) * attention_scratch_floats(L, L, heads));
    cr_assert(dense && scratch);
    attention(dense, b.q, b.k, b.v, L, L, heads, hd, scratch);
    for (int i = 0; i < L * ld; i++) cr_assert(fabsf(b.out[i] - dense[i]) <= 1e-5f, "%d: %g vs %g", i, b.out[i], dense[i]);
    free(dense), free(scratch);
    bufs_free(&b);
}

/* The profiler's MSEs against the naive masked attention of the same evenly strided rows, on random inputs (two
 * chunks of rows), and on a head whose masked rows all underflow against one huge score outside both masks. */
static void naive_mse(const Bufs *b, const SvgShape *g, int heads, int hd, int h, int rows, double mse[2]) {
    const int L = g->frames * g->tokens_per_frame;
    double *ex = malloc(sizeof(double) * L * hd), *mk = malloc(sizeof(double) * L * hd);
    cr_assert(ex && mk);
    reference_attention(ex, b->q, b->k, b->v, g, ATTN_DENSE, heads, hd, h);
    for (int m = 0; m < 2; m++) {
        reference_attention(mk, b->q, b->k, b->v, g, m ? ATTN_TEMPORAL : ATTN_SPATIAL, heads, hd, h);
        double sse = 0.0;
        for (int a = 0; a < rows; a++) {
            const int i = (int)(((2L * a + 1) * L) / (2L * rows));
            for (int d = 0; d < hd; d++) sse += (mk[i * hd + d] - ex[i * hd + d]) * (mk[i * hd + d] - ex[i * hd + d]);
        }
        mse[m] = sse / ((double)rows * hd);
    }
    free(ex), free(mk);
}

Test(svg, profile_mse_against_naive) {
    const int F = 5, P = 30, L = F * P, heads = 2, hd = 16, rows = 40;
    const SvgShape g = {.frames = F, .tokens_per_frame = P, .band = 20};
    Bufs b = bufs_new(L, heads, hd, 21, 3.0f);
    for (int h = 0; h < heads; h++) {
        double got[2], want[2];
        svg_profile_head(b.q, b.k, b.v, &g, heads, hd, h, rows, b.scratch, got);
        naive_mse(&b, &g, heads, hd, h, rows, want);
        for (int m = 0; m < 2; m++)
            cr_assert(fabs(got[m] - want[m]) <= 1e-4 * want[m] + 1e-12, "head %d mask %d: %g vs %g", h, m, got[m], want[m]);
    }
    bufs_free(&b);
}

Test(svg, profile_underflow_fallback) {
    const int F = 4, P = 16, L = F * P, heads = 1, hd = 4, rows = L;
    const SvgShape g = {.frames = F, .tokens_per_frame = P, .band = 4};
    Bufs b = bufs_new(L, heads, hd, 22, 1.0f);
    memset(b.k, 0, sizeof(float) * L * hd);
    b.k[(L - 1) * hd] = 1.0f; /* key 63: outside both masks for most queries */
    for (int i = 0; i < L; i++) b.q[i * hd] = 200.0f, b.q[i * hd + 1] = b.q[i * hd + 2] = b.q[i * hd + 3] = 0.0f;
    double got[2], want[2];
    svg_profile_head(b.q, b.k, b.v, &g, heads, hd, 0, rows, b.scratch, got);
    naive_mse(&b, &g, heads, hd, 0, rows, want);
    for (int m = 0; m < 2; m++)
        cr_assert(isfinite(got[m]) && fabs(got[m] - want[m]) <= 1e-4 * want[m], "mask %d: %g vs %g", m, got[m], want[m]);
    bufs_free(&b);
}

/* ---------------------------------------------------------------------------------------------- */
/* the block */

/* A block whose plan has every head sparse but sparsity 0 (band = L) equals the dense block; at sparsity 0.6 it
 * spends fewer attention FLOPs and stays close (a loose sanity bound, not a tolerance: sparse is an approximation). */
Test(svg, block_sparse_plan) {
    const DitConfig *cfg = fixture_small_config();
    DitModel m;
    Error err;
    cr_assert_eq(dit_init_random(&m, cfg, 4, &err), 0, "%s", err.msg);
    const int F = 4, H = 16, W = 16; /* 4 frames of 8x8 tokens: L = 256 (4 query tiles), P = 64 */
    DitState s[3];
    for (int i = 0; i < 3; i++) cr_assert_eq(dit_state_init(&s[i], cfg, F, H, W, &err), 0, "%s", err.msg);
    const int L = s[0].L, d = cfg->dim, heads = cfg->num_heads;
    cr_assert_eq(L, 256);
    float *x = malloc(sizeof(float) * cfg->in_dim * F * H * W), *text = malloc(sizeof(float) * cfg->text_len * cfg->text_dim);
    cr_assert(x && text);
    fixture_random(x, (size_t)cfg->in_dim * F * H * W, 31), fixture_random(text, (size_t)cfg->text_len * cfg->text_dim, 32);
    for (int i = 0; i < 3; i++) dit_embed(&m, &s[i], x, 500.0f, text);

    AttnPattern pattern[8];
    float density[8];
    AttentionPlan plan = {.num_heads = heads, .pattern = pattern, .density = density};
    dit_block(&m, &s[0], 1, &plan); /* all dense: the dense path */
    cr_assert_eq(plan.flops_done, dit_flops_self_attention(cfg, L));

    for (int h = 0; h < heads; h++) pattern[h] = ATTN_SPATIAL;
    plan.sparsity = 0.0, plan.band_tokens = 0, plan.profile_rows = 8;
    dit_block(&m, &s[1], 1, &plan);
    cr_assert(plan.frames == 4 && plan.tokens_per_frame == 64 && plan.sink_tokens == 64 && plan.band_tokens == L);
    cr_assert_eq(plan.flops_dense, dit_flops_self_attention(cfg, L));
    cr_assert_eq(plan.flops_done, plan.flops_dense + heads * 8.0 * (d / heads) * 8 * L);
    double worst = 0.0;
    for (int i = 0; i < L * d; i++) worst = fmax(worst, fabs(s[1].tokens[i] - s[0].tokens[i]));
    cr_assert(worst <= 1e-4, "sparsity 0 block differs from dense by %g", worst);

    for (int h = 0; h < heads; h++) pattern[h] = ATTN_SPATIAL;
    plan.sparsity = 0.6, plan.band_tokens = 0, plan.profile_rows = 8;
    dit_block(&m, &s[2], 1, &plan);
    cr_assert_eq(plan.band_tokens, svg_band_for_sparsity(L, 0.6));
    double tile_flops = 0.0;
    const SvgShape g = {.frames = 4, .tokens_per_frame = 64, .band = plan.band_tokens};
    for (int h = 0; h < heads; h++) {
        cr_assert(pattern[h] == ATTN_SPATIAL || pattern[h] == ATTN_TEMPORAL);
        cr_assert_eq(density[h], (float)svg_mask_density(&g, pattern[h]));
        tile_flops += svg_pattern_flops(&g, pattern[h], d / heads);
    }
    cr_assert_eq(plan.flops_done, tile_flops + heads * 8.0 * (d / heads) * 8 * L);
    cr_assert(tile_flops < plan.flops_dense);
    for (int i = 0; i < L * d; i++) cr_assert(isfinite(s[2].tokens[i]));
    for (int i = 0; i < 3; i++) dit_state_free(&s[i]);
    free(x), free(text);
    dit_free(&m);
}

/* ---------------------------------------------------------------------------------------------- */
/* the strategies */

static StrategyEnv env_for(int steps, int layers, int heads) {
    return (StrategyEnv){.num_steps = steps, .num_layers = layers, .num_heads = heads, .dim = 8, .model_numel = 37,
                         .tokens_numel = 37, .ops = cpu_vec_ops(), .model_name = "test"};
}

/* Calls attention_plan for (step, layer) the way the runner does (pattern reset to dense, band 0). */
static void plan_for(Strategy *s, int step, int steps, int layer, AttentionPlan *plan) {
    memset(plan->pattern, 0, sizeof(AttnPattern) * plan->num_heads);
    plan->band_tokens = 0;
    plan->profile_rows = -1, plan->sparsity = -1; /* stale values the strategy must overwrite */
    StepInfo st = {.step = step, .num_steps = steps, .branch = BRANCH_COND, .guidance_on = 1};
    s->attention_plan(s, &st, layer, plan);
}

/* 'D' dense, 'S' sparse with profiling, per layer, for each step. */
static void plan_string(Strategy *s, int steps, int layers, char *out) {
    AttnPattern pattern[3];
    AttentionPlan plan = {.num_heads = 3, .pattern = pattern};
    for (int t = 0; t < steps; t++) {
        for (int l = 0; l < layers; l++) {
            plan_for(s, t, steps, l, &plan);
            const int sparse = pattern[0] == ATTN_SPATIAL;
            for (int h = 0; h < 3; h++) cr_assert_eq(pattern[h], sparse ? ATTN_SPATIAL : ATTN_DENSE);
            cr_assert_eq(plan.profile_rows, sparse ? 64 : 0);
            cr_assert_eq(plan.band_tokens, 0);
            *out++ = sparse ? 'S' : 'D';
        }
        *out++ = '|';
    }
    *out = '\0';
}

Test(svg, strategy_plans) {
    Strategy s;
    Error err;
    StrategyEnv env = env_for(6, 4, 3);
    char got[128];
    cr_assert_eq(strategy_create(&s, "svg:sparsity=0.5,dense_steps=0.2", &env, &err), 0, "%s", err.msg);
    cr_assert_str_eq(s.spec, "svg:sparsity=0.5,dense_steps=0.2,dense_layers=0.03,rows=64");
    cr_assert(s.model_begin == NULL && s.blocks_begin == NULL && s.attention_plan != NULL);
    /* 0.2 · 6 = 1.2: steps 0 and 1 dense; 0.03 · 4 = 0.12: layer 0 dense. */
    plan_string(&s, 6, 4, got);
    cr_assert_str_eq(got, "DDDD|DDDD|DSSS|DSSS|DSSS|DSSS|");
    AttnPattern pattern[3];
    AttentionPlan plan = {.num_heads = 3, .pattern = pattern};
    plan_for(&s, 3, 6, 2, &plan);
    cr_assert_eq(plan.sparsity, 0.5);
    strategy_destroy(&s);

    /* Defaults; 0.3 · 10 is 3 dense steps despite 0.3 · 10 = 3.0000000000000004 in double; no dense layer. */
    env = env_for(10, 3, 3);
    cr_assert_eq(strategy_create(&s, "svg:dense_steps=0.3,dense_layers=0", &env, &err), 0, "%s", err.msg);
    cr_assert_str_eq(s.spec, "svg:sparsity=0.75,dense_steps=0.3,dense_layers=0,rows=64");
    plan_string(&s, 5, 3, got);
    cr_assert_str_eq(got, "DDD|DDD|DDD|SSS|SSS|");
    strategy_destroy(&s);

    /* Sparsity 0 is dense everywhere. */
    cr_assert_eq(strategy_create(&s, "svg:sparsity=0,dense_steps=0,dense_layers=0", &env, &err), 0, "%s", err.msg);
    plan_string(&s, 2, 3, got);
    cr_assert_str_eq(got, "DDD|DDD|");
    strategy_destroy(&s);

    const char *bad[] = {"svg:sparsity=1.5", "svg:rows=0", "svg:dense_steps=-0.1", "svg:thresh=0.1", "svg:rows=2.5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err.msg[0] = '\0';
        cr_assert_eq(strategy_create(&s, bad[i], &env, &err), -1, "%s accepted", bad[i]);
        cr_assert(strstr(err.msg, "svg") != NULL, "%s: %s", bad[i], err.msg);
    }
}

/* Drives a step strategy over a synthetic trajectory (x_t = a_t·r, full outputs y_t = b_t·r + r2), cond then
 * uncond, and records decisions and outputs. */
#define TN 37
static void drive(Strategy *s, int steps, char *dec, float *ys) {
    float r[TN], r2[TN], x[TN], y[TN];
    fixture_random(r, TN, 41), fixture_random(r2, TN, 42);
    for (int t = 0; t < steps; t++)
        for (int b = 0; b < 2; b++) {
            StepInfo st = {.step = t, .num_steps = steps, .branch = (Branch)b, .guidance_on = 1};
            BranchTrace tr = {.computed = 1, .signal = NAN, .accumulator = NAN, .threshold = NAN, .k = NAN};
            const float a = 1.0f - 0.05f * t, bb = 0.5f + 0.01f * t * t + 0.1f * b;
            for (int i = 0; i < TN; i++) x[i] = a * r[i];
            if (s->model_begin(s, &st, x, TN, &tr) == STRATEGY_REUSE) {
                s->model_reuse(s, &st, x, y, TN);
                dec[2 * t + b] = 'R';
            } else {
                for (int i = 0; i < TN; i++) y[i] = bb * r[i] + r2[i];
                s->model_end(s, &st, x, y, TN);
                dec[2 * t + b] = 'C';
            }
            memcpy(ys + (size_t)(2 * t + b) * TN, y, sizeof y);
        }
    dec[2 * steps] = '\0';
}

Test(svg, easycache_svg_composition) {
    Strategy c, ec, svg;
    Error err;
    const int steps = 12;
    StrategyEnv env = env_for(steps, 4, 3);
    cr_assert_eq(strategy_create(&c, "easycache+svg:thresh=0.2,sparsity=0.5,warmup=2", &env, &err), 0, "%s", err.msg);
    cr_assert_str_eq(c.spec, "easycache+svg:thresh=0.2,warmup=2,sparsity=0.5,dense_steps=0.2,dense_layers=0.03,rows=64");
    cr_assert(c.model_begin && c.model_reuse && c.model_end && c.attention_plan && !c.blocks_begin);
    cr_assert_eq(strategy_create(&ec, "easycache:thresh=0.2,warmup=2", &env, &err), 0, "%s", err.msg);
    cr_assert_eq(strategy_create(&svg, "svg:sparsity=0.5", &env, &err), 0, "%s", err.msg);

    /* Step decisions and outputs: exactly easycache's. */
    char dc[2 * steps + 1], de[2 * steps + 1];
    float *yc = malloc(sizeof(float) * 2 * steps * TN), *ye = malloc(sizeof(float) * 2 * steps * TN);
    cr_assert(yc && ye);
    drive(&c, steps, dc, yc);
    drive(&ec, steps, de, ye);
    cr_assert_str_eq(dc, de);
    cr_assert(strchr(dc, 'R') != NULL, "the trajectory should make easycache reuse: %s", dc);
    cr_assert_eq(memcmp(yc, ye, sizeof(float) * 2 * steps * TN), 0);

    /* Attention plans: exactly svg's. */
    char pc[128], ps[128];
    plan_string(&c, steps, 4, pc);
    plan_string(&svg, steps, 4, ps);
    cr_assert_str_eq(pc, ps);
    free(yc), free(ye);
    strategy_destroy(&c), strategy_destroy(&ec), strategy_destroy(&svg);

    /* Parameters are checked by the strategy they belong to; the message names the composite. */
    const char *bad[] = {"easycache+svg:thresh=-1", "easycache+svg:sparsity=2", "easycache+svg:interval=3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err.msg[0] = '\0';
        cr_assert_eq(strategy_create(&c, bad[i], &env, &err), -1, "%s accepted", bad[i]);
        cr_assert(strstr(err.msg, "easycache+svg") != NULL, "%s: %s", bad[i], err.msg);
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* a run */

/* svg on a small random model: the per-layer trace in the record, its FLOPs, and the HDF5 round trip. */
Test(svg, run_records_trace) {
    const DitConfig *cfg = fixture_small_config();
    DitModel m;
    Engine *e;
    Error err;
    cr_assert_eq(dit_init_random(&m, cfg, 5, &err), 0, "%s", err.msg);
    cr_assert_eq(engine_create_cpu(&e, &m, &err), 0, "%s", err.msg);
    const int steps = 5, F = 4, H = 16, W = 16; /* L = 256 */
    const size_t text_n = (size_t)cfg->text_len * cfg->text_dim;
    float *text[2] = {calloc(text_n, sizeof(float)), calloc(text_n, sizeof(float))};
    cr_assert(text[0] && text[1]);
    fixture_random(text[0], text_n, 51);
    RunSettings rs = {.steps = steps, .shift = 3.0f, .guidance = 4.0f, .seed = 2, .F = F, .H = H, .W = W,
                      .text = {text[0], text[1]}};
    cr_assert_eq(e->prepare(e, F, H, W, &err), 0, "%s", err.msg);
    StrategyEnv env = {.num_steps = steps, .num_layers = cfg->num_layers, .num_heads = cfg->num_heads,
                       .dim = cfg->dim, .model_numel = (size_t)cfg->in_dim * F * H * W,
                       .tokens_numel = (size_t)e->L * cfg->dim, .ops = e->ops, .model_name = cfg->name};

    Strategy none, svg;
    RunRecord base, rec;
    memset(&base, 0, sizeof base), memset(&rec, 0, sizeof rec);
    cr_assert_eq(strategy_create(&none, "none", &env, &err), 0, "%s", err.msg);
    cr_assert_eq(runner_sample(e, &none, &rs, &base, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(base.svg_layers, 0);
    /* 0.2 · 5 = 1 dense step; 0.5 · 2 layers = layer 0 dense. */
    cr_assert_eq(strategy_create(&svg, "svg:sparsity=0.75,dense_steps=0.2,dense_layers=0.5,rows=16", &env, &err), 0,
                 "%s", err.msg);
    cr_assert_eq(runner_sample(e, &svg, &rs, &rec, NULL, &err), 0, "%s", err.msg);
    cr_assert(!rec.failed);
    cr_assert(rec.svg_layers == cfg->num_layers && rec.svg_heads == cfg->num_heads);
    const double attn_call = dit_flops_self_attention(cfg, e->L);
    for (int t = 0; t < steps; t++) {
        for (int b = 0; b < 2; b++)
            for (int l = 0; l < cfg->num_layers; l++) {
                const size_t at = ((size_t)t * 2 + b) * rec.svg_layers + l;
                const int sparse = t >= 1 && l >= 1;
                const int n = rec.svg_spatial_heads[at] + rec.svg_temporal_heads[at];
                cr_assert_eq(n, sparse ? cfg->num_heads : 0, "step %d branch %d layer %d", t, b, l);
                for (int h = 0; h < rec.svg_heads; h++) {
                    const float dn = rec.svg_density[at * rec.svg_heads + h];
                    cr_assert(sparse ? dn > 0.0f && dn < 1.0f : dn == 1.0f, "density %g", dn);
                }
            }
        cr_assert_eq(rec.attn_flops_dense[t], 2 * cfg->num_layers * attn_call);
        if (t == 0) cr_assert_eq(rec.attn_flops[t], rec.attn_flops_dense[t]);
        else cr_assert(rec.attn_flops[t] < rec.attn_flops_dense[t]);
        /* The step's model FLOPs are the baseline's minus the attention work skipped. */
        cr_assert(fabs(rec.step[t].flops - (base.step[t].flops - (rec.attn_flops_dense[t] - rec.attn_flops[t]))) <=
                  1e-9 * base.step[t].flops);
    }
    cr_assert(rec.flops_spent < base.flops_spent);

    char *dir = fixture_tmpdir(), path[512];
    cr_assert_not_null(dir);
    snprintf(path, sizeof path, "%s/svg.h5", dir);
    snprintf(rec.strategy, sizeof rec.strategy, "svg");
    cr_assert_eq(record_write(path, &rec, &err), 0, "%s", err.msg);
    RunRecord back;
    cr_assert_eq(record_read(path, &back, &err), 0, "%s", err.msg);
    cr_assert(back.svg_layers == rec.svg_layers && back.svg_heads == rec.svg_heads);
    const size_t cells = (size_t)steps * 2 * rec.svg_layers;
    cr_assert_eq(memcmp(back.svg_spatial_heads, rec.svg_spatial_heads, cells * sizeof(int32_t)), 0);
    cr_assert_eq(memcmp(back.svg_temporal_heads, rec.svg_temporal_heads, cells * sizeof(int32_t)), 0);
    cr_assert_eq(memcmp(back.attn_flops, rec.attn_flops, steps * sizeof(double)), 0);
    cr_assert_eq(memcmp(back.attn_flops_dense, rec.attn_flops_dense, steps * sizeof(double)), 0);
    for (size_t i = 0; i < cells * rec.svg_heads; i++)
        cr_assert(back.svg_density[i] == rec.svg_density[i] || (isnan(back.svg_density[i]) && isnan(rec.svg_density[i])));
    record_free(&back);
    /* A record without the trace reads back without it. */
    snprintf(path, sizeof path, "%s/none.h5", dir);
    cr_assert_eq(record_write(path, &base, &err), 0, "%s", err.msg);
    cr_assert_eq(record_read(path, &back, &err), 0, "%s", err.msg);
    cr_assert(back.svg_layers == 0 && back.svg_density == NULL);
    record_free(&back);
    fixture_rmdir(dir);
    free(dir);

    record_free(&base), record_free(&rec);
    strategy_destroy(&none), strategy_destroy(&svg);
    free(text[0]), free(text[1]);
    e->destroy(e);
    dit_free(&m);
}
