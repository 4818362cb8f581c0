/* Sparse VideoGen: the mask, the tile plan, the permutation, the profiler and the block-sparse kernel against naive
 * references (models/sparse_attention.h); bands, masks, block counts, profiling masks, head choices and the dense
 * warm-up against an independent numpy transcription of the official code (tests/svg_official.py) on the tiny grid
 * (8 frames x 64 tokens) and a Wan2.1-480p grid (21 x 1560); the svg and easycache+svg strategies through their
 * hooks; and one sampling run on a small random model with the SVG trace written to and read back from a run record.
 *
 * Tolerances (fp32 kernels against references in double, inputs of unit scale):
 *   sparse attention vs the naive masked softmax             max |diff| <= 2e-5
 *   sparsity 0 vs dense attention() (other GEMM blocking)    max |diff| <= 1e-5
 *   a block at sparsity 0 vs the dense block                 max |diff| <= 1e-4 (through LayerNorm, FFN)
 *   profiler MSEs vs the naive masked attention              relative 1e-4 (+1e-12 absolute)
 *   profiler on a planted head (fixture_decaying_head)      its pattern's MSE below a tenth of the other's; the
 *                                                            sparse output then equals dense within 1e-4 (fp32
 *                                                            cancellation: the fixture's logits hold terms ~5e3)
 *   profiler MSEs vs the official transcription (float64)   relative 1e-3 (+1e-9 absolute); the choices identical
 * Everything else (mask counts, tile plans, FLOPs, permutations, decisions, record round trip) is exact. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/runner.h"
#include "harness/solvers/solver.h"
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

static SvgShape shape_of(Shape s, int block) {
    return (SvgShape){.frames = s.F, .tokens_per_frame = s.P, .band = s.w, .block = block};
}

/* ---------------------------------------------------------------------------------------------- */
/* mask, density, tiles */

Test(svg, band_for_sparsity) {
    cr_assert_eq(svg_band_for_sparsity(512, 64, 0.0, 0), 512);
    cr_assert_eq(svg_band_for_sparsity(512, 64, 1.0, 0), 0);
    cr_assert_eq(svg_band_for_sparsity(512, 64, 0.25, 0), 256); /* 512 · (1 - 0.5), exactly */
    cr_assert_eq(svg_band_for_sparsity(512, 64, -1.0, 0), 512);
    /* Exact: the band alone (no sink) masks (L - w)(L - w - 1) of L² pairs: never more than s, and below it by at
     * most 3/L (w rounds up by < 1 token, and the discrete triangles are (L - w)(L - w - 1)/2, not (L - w)²/2).
     * Official: the exact width rounded up to a multiple of 128 (capped at L). */
    const double ss[] = {0.1, 0.3, 0.5, 0.75, 0.9, 0.99};
    const int Ls[] = {150, 512, 4096, 32760};
    for (size_t a = 0; a < sizeof ss / sizeof ss[0]; a++)
        for (size_t b = 0; b < sizeof Ls / sizeof Ls[0]; b++) {
            const int L = Ls[b], w = svg_band_for_sparsity(L, 30, ss[a], 0);
            const double masked = (double)(L - w) * (L - w - 1) / ((double)L * L);
            cr_assert(masked <= ss[a] + 1e-12 && masked >= ss[a] - 3.0 / L, "L %d s %g: w %d masks %g", L, ss[a], w,
                      masked);
            const int wo = svg_band_for_sparsity(L, 30, ss[a], SVG_BLOCK);
            cr_assert(wo == L || (wo % 128 == 0 && wo >= w && wo < w + 128), "L %d s %g: official %d exact %d", L, ss[a],
                      wo, w);
        }
    cr_assert_eq(svg_band_for_sparsity(512, 64, 0.75, SVG_BLOCK), 128);      /* tiny: 68.6 -> 128 (exact: 69) */
    cr_assert_eq(svg_band_for_sparsity(32760, 1560, 0.75, SVG_BLOCK), 4480); /* Wan 480p: 4389.2 -> 4480 */
    cr_assert_eq(svg_band_for_sparsity(32760, 1560, 0.0, SVG_BLOCK), 32760);
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

/* svg_mask written out from the definition, independently of svg_pos: one mask on the pattern-ordered tokens. */
static int naive_mask(int F, int P, int w, AttnPattern p, int i, int j) {
    if (p == ATTN_DENSE) return 1;
    int a = i, b = j;
    if (p == ATTN_TEMPORAL) a = (i % P) * F + i / P, b = (j % P) * F + j / P;
    return b < P || abs(a - b) <= w; /* the sink: the first P positions of the pattern's order */
}

Test(svg, mask_and_density_against_naive) {
    for (size_t s = 0; s < NSHAPES; s++) {
        const SvgShape g = shape_of(SHAPES[s], 0);
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

/* The tile plan against the mask, for both grids (official 128x128 blocks and the exact variant's 16-key tiles):
 * every attended pair is computed exactly once; the keys a query tile computes are exactly the key blocks (pattern
 * order) holding a kept pair of its query block (official: its 128-row block) — for the exact variant, the band's
 * tiles plus the sink positions outside them; FLOPs = 4·hd·(computed pairs); svg_blocks_computed counts the blocks. */
Test(svg, tiles_against_naive_mask) {
    const int hd = 8;
    for (int block = 0; block <= SVG_BLOCK; block += SVG_BLOCK)
        for (size_t s = 0; s < NSHAPES; s++) {
            const SvgShape g = shape_of(SHAPES[s], block);
            const int F = g.frames, P = g.tokens_per_frame, L = F * P, T = svg_tile(L), TK = svg_key_block(&g);
            const int w = g.band, QB = block ? block : T;
            unsigned char *cover = malloc((size_t)L * L);
            cr_assert_not_null(cover);
            for (int pi = 0; pi < 3; pi++) {
                const AttnPattern p = PATTERNS[pi];
                const int full = p == ATTN_DENSE || w >= L - 1;
                memset(cover, 0, (size_t)L * L);
                double pairs = 0.0;
                long long blocks = 0;
                for (int q0 = 0; q0 < L; q0 += T) {
                    const int q1 = q0 + T < L ? q0 + T : L, b0 = q0 / QB * QB, b1 = b0 + QB < L ? b0 + QB : L;
                    SvgTileKeys tk;
                    svg_tile_keys(&g, p, q0, q1, &tk);
                    cr_assert(tk.band_lo % TK == 0 && (tk.band_hi % TK == 0 || tk.band_hi == L));
                    cr_assert(0 <= tk.band_lo && tk.band_lo < tk.band_hi && tk.band_hi <= L);
                    int n = tk.band_hi - tk.band_lo;
                    for (int r = 0; r < tk.nsink; r++) {
                        cr_assert(0 <= tk.sink_lo[r] && tk.sink_lo[r] < tk.sink_hi[r] && tk.sink_hi[r] <= L);
                        cr_assert(tk.sink_hi[r] <= tk.band_lo || tk.sink_lo[r] >= tk.band_hi);
                        n += tk.sink_hi[r] - tk.sink_lo[r];
                    }
                    for (int k0 = 0; k0 < L; k0 += TK) {
                        int computed = k0 >= tk.band_lo && k0 < tk.band_hi;
                        for (int r = 0; r < tk.nsink; r++) computed |= k0 >= tk.sink_lo[r] && k0 < tk.sink_hi[r];
                        int needed = full;
                        if (block) /* any kept pair of the query block in the key block */
                            for (int a = b0; a < b1 && !needed; a++)
                                for (int b = k0; b < k0 + TK && b < L && !needed; b++) needed = b < P || abs(a - b) <= w;
                        else { /* a band pair of the tile, or a sink position outside the band tiles */
                            for (int a = q0; a < q1 && !needed; a++)
                                for (int b = k0; b < k0 + TK && b < L && !needed; b++) needed = abs(a - b) <= w;
                            if (!needed && k0 < P) needed = -1; /* sink positions: checked key by key below */
                        }
                        if (needed >= 0)
                            cr_assert_eq(computed, needed, "block %d shape %zu pattern %d q-tile %d k-tile %d", block, s,
                                         pi, q0, k0);
                    }
                    if (!block && !full) /* exact variant: the sink ranges are exactly [0, P) outside the band tiles */
                        for (int b = 0; b < L; b++) {
                            int in_sink = 0;
                            for (int r = 0; r < tk.nsink; r++) in_sink |= b >= tk.sink_lo[r] && b < tk.sink_hi[r];
                            cr_assert_eq(in_sink, b < P && (b < tk.band_lo || b >= tk.band_hi), "shape %zu key %d", s, b);
                        }
                    for (int a = q0; a < q1; a++) {
                        const int i = svg_token(&g, p, a);
                        for (int b = tk.band_lo; b < tk.band_hi; b++) cover[(size_t)i * L + svg_token(&g, p, b)]++;
                        for (int r = 0; r < tk.nsink; r++)
                            for (int b = tk.sink_lo[r]; b < tk.sink_hi[r]; b++) cover[(size_t)i * L + svg_token(&g, p, b)]++;
                    }
                    pairs += (double)(q1 - q0) * n;
                    if (q0 == b0) { /* one count per query block */
                        blocks += svg_grid_ceil_div(tk.band_hi - tk.band_lo, TK);
                        for (int r = 0; r < tk.nsink; r++) blocks += svg_grid_ceil_div(tk.sink_hi[r] - tk.sink_lo[r], TK);
                    }
                }
                for (int i = 0; i < L; i++)
                    for (int j = 0; j < L; j++) {
                        const int c = cover[(size_t)i * L + j];
                        cr_assert(c <= 1, "pair (%d,%d) computed %d times", i, j, c);
                        if (svg_mask(&g, p, i, j))
                            cr_assert_eq(c, 1, "block %d shape %zu pattern %d: pair (%d,%d) missed", block, s, pi, i, j);
                    }
                cr_assert_eq(svg_pattern_flops(&g, p, hd), 4.0 * hd * pairs);
                cr_assert_eq(svg_blocks_computed(&g, p), blocks);
            }
            free(cover);
        }
}

/* A band far narrower than the sequence computes far fewer tiles than dense. */
Test(svg, tiles_skip_work) {
    const double dense = 4.0 * 32 * 4096.0 * 4096.0;
    for (int block = 0; block <= SVG_BLOCK; block += SVG_BLOCK) {
        const SvgShape g = {.frames = 16, .tokens_per_frame = 256,
                            .band = svg_band_for_sparsity(4096, 256, 0.75, block), .block = block};
        for (int pi = 1; pi < 3; pi++) {
            const double f = svg_pattern_flops(&g, PATTERNS[pi], 32) / dense;
            const double d = svg_mask_density(&g, PATTERNS[pi]);
            /* 0.25 of the pairs in the exact band plus the sink; the official band is up to 127 tokens wider */
            cr_assert(d > 0.25 && d < (block ? 0.42 : 0.35), "block %d density %g", block, d);
            /* tile edges waste little: 16-key tiles, or whole 128x128 blocks */
            cr_assert(f >= d && f < d + (block ? 0.08 : 0.05), "block %d flops fraction %g vs density %g", block, f, d);
        }
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

/* The official profiling masks written out from get_attention_mask: spatial (frame-major) the first P keys and the
 * 128-token blocks less than floor(2P/128) blocks apart; temporal the same on token-major positions. */
static int naive_profile_mask(int F, int P, AttnPattern p, int i, int j) {
    if (p == ATTN_DENSE) return 1;
    int a = i, b = j;
    if (p == ATTN_TEMPORAL) a = (i % P) * F + i / P, b = (j % P) * F + j / P;
    return b < P || abs(a / 128 - b / 128) < 2 * P / 128;
}

/* Naive masked softmax attention of head h in double, frame-major, under the run mask (profile = 0) or the profiling
 * mask (profile = 1). */
static void reference_attention_mask(double *out, const float *q, const float *k, const float *v, const SvgShape *g,
                                     AttnPattern p, int heads, int hd, int h, int profile) {
    const int L = g->frames * g->tokens_per_frame, ld = heads * hd;
    double *s = malloc(sizeof(double) * L);
    cr_assert_not_null(s);
    for (int i = 0; i < L; i++) {
        double m = -INFINITY;
        for (int j = 0; j < L; j++) {
            double dot = 0.0;
            for (int d = 0; d < hd; d++) dot += (double)q[i * ld + h * hd + d] * k[j * ld + h * hd + d];
            const int keep = profile ? naive_profile_mask(g->frames, g->tokens_per_frame, p, i, j)
                                     : naive_mask(g->frames, g->tokens_per_frame, g->band, p, i, j);
            s[j] = keep ? dot / sqrt((double)hd) : -INFINITY;
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

static void reference_attention(double *out, const float *q, const float *k, const float *v, const SvgShape *g,
                                AttnPattern p, int heads, int hd, int h) {
    reference_attention_mask(out, q, k, v, g, p, heads, hd, h, 0);
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
static void check_against_reference(int F, int P, double sparsity, int band, int block) {
    const int L = F * P, heads = 3, hd = 16, ld = heads * hd;
    Bufs b = bufs_new(L, heads, hd, 100 + (uint64_t)L, 3.0f);
    AttnPattern pattern[3] = {ATTN_SPATIAL, ATTN_TEMPORAL, ATTN_DENSE};
    float density[3];
    AttentionPlan plan = {.num_heads = heads, .pattern = pattern, .band_tokens = band, .sparsity = sparsity,
                          .block = block, .frames = F, .tokens_per_frame = P, .density = density};
    cr_assert_eq(svg_attention(b.out, b.q, b.k, b.v, heads, hd, &plan, b.kp, b.vp, b.scratch, b.scratch_floats), 0);
    const SvgShape g = {.frames = F, .tokens_per_frame = P, .band = plan.band_tokens, .block = block};
    cr_assert_eq(plan.band_tokens, band > 0 ? band : svg_band_for_sparsity(L, P, sparsity, block));
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
    for (int block = 0; block <= SVG_BLOCK; block += SVG_BLOCK) {
        check_against_reference(5, 30, 0.6, 0, block);  /* several tiles, partial last tile */
        check_against_reference(3, 70, 0.0, 40, block); /* explicit band */
        check_against_reference(8, 16, 0.9, 0, block);  /* narrow band: sink ranges on both sides */
        check_against_reference(4, 40, 1.0, 0, block);  /* w = 0: diagonal and sink only */
        check_against_reference(2, 7, 0.5, 0, block);   /* one tile */
    }
    check_against_reference(10, 40, 0.0, 9, SVG_BLOCK); /* 400 tokens: a narrow band inside whole 128-key blocks */
    check_against_reference(7, 50, 0.0, 3, SVG_BLOCK);  /* P = 50 of 350: sink ranges that end inside a block */
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

/* Planted heads (fixture_decaying_head, band 20: σ = 4 tokens) on 4 frames of 64 tokens. The profiling masks are
 * 128-token blocks plus the sink (floor(2·64/128) = 1 block), so rows near a block edge lose near neighbours under
 * either mask, but the planted pattern still wins by far; the run mask (band 20 + sink) drops nothing that weighs. */
Test(svg, classification_picks_the_planted_pattern) {
    const int F = 4, P = 64, L = 256, heads = 2, hd = 8, ld = heads * hd, rows = 32;
    const SvgShape g = {.frames = F, .tokens_per_frame = P, .band = 20, .block = SVG_BLOCK};
    Bufs b = bufs_new(L, heads, hd, 5, 1.0f);
    fixture_decaying_head(b.q, b.k, &g, ATTN_SPATIAL, heads, hd, 0);
    fixture_decaying_head(b.q, b.k, &g, ATTN_TEMPORAL, heads, hd, 1);
    double mse[2];
    svg_profile_head(b.q, b.k, b.v, &g, heads, hd, 0, rows, 7, b.scratch, mse);
    cr_assert(mse[0] < 0.1 * mse[1], "spatial head: mse spatial %g temporal %g", mse[0], mse[1]);
    svg_profile_head(b.q, b.k, b.v, &g, heads, hd, 1, rows, 7, b.scratch, mse);
    cr_assert(mse[1] < 0.1 * mse[0], "temporal head: mse spatial %g temporal %g", mse[0], mse[1]);

    /* Through svg_attention: both heads start as spatial placeholders; profiling fixes head 1; the sparse output
     * then equals dense attention (the dropped keys weigh nothing). */
    AttnPattern pattern[2] = {ATTN_SPATIAL, ATTN_SPATIAL};
    AttentionPlan plan = {.num_heads = heads, .pattern = pattern, .band_tokens = 20, .block = SVG_BLOCK, .frames = F,
                          .tokens_per_frame = P, .profile_rows = rows, .profile_seed = 7};
    cr_assert_eq(svg_attention(b.out, b.q, b.k, b.v, heads, hd, &plan, b.kp, b.vp, b.scratch, b.scratch_floats), 0);
    cr_assert_eq(pattern[0], ATTN_SPATIAL);
    cr_assert_eq(pattern[1], ATTN_TEMPORAL);
    cr_assert_eq(plan.flops_done, svg_pattern_flops(&g, ATTN_SPATIAL, hd) + svg_pattern_flops(&g, ATTN_TEMPORAL, hd) +
                                      2 * 8.0 * hd * rows * L);
    float *dense = malloc(sizeof(float) * L * ld), *scratch = malloc(sizeof(float) * attention_scratch_floats(L, L, heads));
    cr_assert(dense && scratch);
    attention(dense, b.q, b.k, b.v, L, L, heads, hd, scratch);
    for (int i = 0; i < L * ld; i++) cr_assert(fabsf(b.out[i] - dense[i]) <= 1e-4f, "%d: %g vs %g", i, b.out[i], dense[i]);
    free(dense), free(scratch);
    bufs_free(&b);
}

/* Profiling rows: in [0, min(10000, L)), drawn with replacement (repeats occur), about uniform, the same for the same
 * seed, different for other seeds; every call of a run (step, branch, layer) has its own seed. */
Test(svg, profile_rows_are_seeded_uniform_draws) {
    cr_assert_eq(svg_profile_limit(512), 512);
    cr_assert_eq(svg_profile_limit(32760), 10000);
    enum { N = 20000, BINS = 10 };
    int count[BINS] = {0}, repeats = 0, differ = 0;
    for (int a = 0; a < N; a++) {
        const int r = svg_profile_row(123, a, BINS);
        cr_assert(r >= 0 && r < BINS);
        count[r]++;
        cr_assert_eq(svg_profile_row(123, a, BINS), r);
        differ += svg_profile_row(124, a, 10000) != svg_profile_row(123, a, 10000);
    }
    for (int i = 0; i < BINS; i++) cr_assert(count[i] > N / BINS - 300 && count[i] < N / BINS + 300, "bin %d: %d", i, count[i]);
    cr_assert(differ > N - 10);
    for (int a = 0; a < 64; a++)
        for (int c = 0; c < a; c++) repeats += svg_profile_row(5, a, 100) == svg_profile_row(5, c, 100);
    cr_assert(repeats > 0, "64 draws from 100 rows without one repeat: not with replacement");
    unsigned long long seen[2 * 2 * 3];
    int n = 0;
    for (int step = 0; step < 2; step++)
        for (int branch = 0; branch < 2; branch++)
            for (int layer = 0; layer < 3; layer++) {
                seen[n] = svg_call_seed(0, step, branch, layer);
                for (int m = 0; m < n; m++) cr_assert_neq(seen[m], seen[n]);
                cr_assert_neq(svg_call_seed(1, step, branch, layer), seen[n]);
                n++;
            }
}

/* The profiler's MSEs against the naive attention under the profiling masks on the same seeded rows, on random
 * inputs (two chunks of rows; with and without profiling blocks), and on a head whose masked rows all underflow
 * against one huge score outside both masks. */
static void naive_mse(const Bufs *b, const SvgShape *g, int heads, int hd, int h, int rows, unsigned long long seed,
                      double mse[2]) {
    const int L = g->frames * g->tokens_per_frame;
    double *ex = malloc(sizeof(double) * L * hd), *mk = malloc(sizeof(double) * L * hd);
    cr_assert(ex && mk);
    reference_attention(ex, b->q, b->k, b->v, g, ATTN_DENSE, heads, hd, h);
    for (int m = 0; m < 2; m++) {
        reference_attention_mask(mk, b->q, b->k, b->v, g, m ? ATTN_TEMPORAL : ATTN_SPATIAL, heads, hd, h, 1);
        double sse = 0.0;
        for (int a = 0; a < rows; a++) {
            const int i = svg_profile_row(seed, a, svg_profile_limit(L));
            for (int d = 0; d < hd; d++) sse += (mk[i * hd + d] - ex[i * hd + d]) * (mk[i * hd + d] - ex[i * hd + d]);
        }
        mse[m] = sse / ((double)rows * hd);
    }
    free(ex), free(mk);
}

Test(svg, profile_mse_against_naive) {
    const int shapes[][2] = {{5, 30}, {3, 70}, {4, 100}}; /* floor(2P/128) = 0, 1, 1 */
    for (size_t s = 0; s < 3; s++) {
        const int F = shapes[s][0], P = shapes[s][1], L = F * P, heads = 2, hd = 16, rows = 40;
        const SvgShape g = {.frames = F, .tokens_per_frame = P, .band = 20, .block = SVG_BLOCK};
        Bufs b = bufs_new(L, heads, hd, 21 + s, 3.0f);
        for (int h = 0; h < heads; h++) {
            double got[2], want[2];
            svg_profile_head(b.q, b.k, b.v, &g, heads, hd, h, rows, 99 + s, b.scratch, got);
            naive_mse(&b, &g, heads, hd, h, rows, 99 + s, want);
            for (int m = 0; m < 2; m++)
                cr_assert(fabs(got[m] - want[m]) <= 1e-4 * want[m] + 1e-12, "F %d P %d head %d mask %d: %g vs %g", F, P,
                          h, m, got[m], want[m]);
        }
        bufs_free(&b);
    }
}

Test(svg, profile_underflow_fallback) {
    const int F = 4, P = 16, L = F * P, heads = 1, hd = 4, rows = L;
    const SvgShape g = {.frames = F, .tokens_per_frame = P, .band = 4};
    Bufs b = bufs_new(L, heads, hd, 22, 1.0f);
    memset(b.k, 0, sizeof(float) * L * hd);
    b.k[(L - 1) * hd] = 1.0f; /* key 63: outside both masks for most queries */
    for (int i = 0; i < L; i++) b.q[i * hd] = 200.0f, b.q[i * hd + 1] = b.q[i * hd + 2] = b.q[i * hd + 3] = 0.0f;
    double got[2], want[2];
    svg_profile_head(b.q, b.k, b.v, &g, heads, hd, 0, rows, 3, b.scratch, got);
    naive_mse(&b, &g, heads, hd, 0, rows, 3, want);
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
    dit_block(&m, &s[0], 1, &plan, NULL); /* all dense: the dense path */
    cr_assert_eq(plan.flops_done, dit_flops_self_attention(cfg, L));

    for (int h = 0; h < heads; h++) pattern[h] = ATTN_SPATIAL;
    plan.sparsity = 0.0, plan.band_tokens = 0, plan.profile_rows = 8;
    dit_block(&m, &s[1], 1, &plan, NULL);
    cr_assert(plan.frames == 4 && plan.tokens_per_frame == 64 && plan.sink_tokens == 64 && plan.band_tokens == L);
    cr_assert_eq(plan.flops_dense, dit_flops_self_attention(cfg, L));
    cr_assert_eq(plan.flops_done, plan.flops_dense + heads * 8.0 * (d / heads) * 8 * L);
    double worst = 0.0;
    for (int i = 0; i < L * d; i++) worst = fmax(worst, fabs(s[1].tokens[i] - s[0].tokens[i]));
    cr_assert(worst <= 1e-4, "sparsity 0 block differs from dense by %g", worst);

    for (int h = 0; h < heads; h++) pattern[h] = ATTN_SPATIAL;
    plan.sparsity = 0.6, plan.band_tokens = 0, plan.profile_rows = 8;
    dit_block(&m, &s[2], 1, &plan, NULL);
    cr_assert_eq(plan.band_tokens, svg_band_for_sparsity(L, 64, 0.6, 0)); /* exact: 128-token blocks save nothing at L = 256 */
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

/* Calls attention_plan for (step, layer) the way the runner does (pattern reset to dense, band 0), at timestep
 * 1000 · (1 - step/steps). */
static void plan_for(Strategy *s, int step, int steps, int layer, AttentionPlan *plan) {
    memset(plan->pattern, 0, sizeof(AttnPattern) * plan->num_heads);
    plan->band_tokens = 0;
    plan->profile_rows = -1, plan->sparsity = -1, plan->block = -1; /* stale values the strategy must overwrite */
    StepInfo st = {.step = step, .num_steps = steps, .branch = BRANCH_COND, .guidance_on = 1,
                   .timestep = 1000.0f * (float)(steps - step) / (float)steps};
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
    /* HEAD: floor(0.2 · 6) = 1 dense step, floor(0.03 · 4) = 0 dense layers. */
    cr_assert_eq(strategy_create(&s, "svg:svg_version=head,sparsity=0.5,dense_steps=0.2", &env, &err), 0, "%s", err.msg);
    cr_assert_str_eq(s.spec, "svg:svg_version=head,sparsity=0.5,dense_steps=0.2,dense_layers=0.03,rows=64,row_seed=0,"
                             "band=official");
    cr_assert(s.model_begin == NULL && s.blocks_begin == NULL && s.attention_plan != NULL);
    plan_string(&s, 6, 4, got);
    cr_assert_str_eq(got, "DDDD|SSSS|SSSS|SSSS|SSSS|SSSS|");
    AttnPattern pattern[3];
    AttentionPlan plan = {.num_heads = 3, .pattern = pattern};
    plan_for(&s, 3, 6, 2, &plan);
    cr_assert(plan.sparsity == 0.5 && plan.block == SVG_BLOCK);
    const unsigned long long seed = plan.profile_seed;
    cr_assert_eq(seed, svg_call_seed(0, 3, BRANCH_COND, 2));
    plan_for(&s, 3, 6, 1, &plan);
    cr_assert_neq(plan.profile_seed, seed);
    strategy_destroy(&s);

    /* 5efea72 defaults: dense when timestep > 1000 · (1 - 0.075) = 925 (step 0 at 1000, step 1 at 833.3) or
     * layer < 4 · 0.025 = 0.1 (layer 0). */
    cr_assert_eq(strategy_create(&s, "svg", &env, &err), 0, "%s", err.msg);
    cr_assert_str_eq(s.spec, "svg:svg_version=5efea72,sparsity=0.75,dense_steps=0.075,dense_layers=0.025,rows=64,"
                             "row_seed=0,band=official");
    plan_string(&s, 6, 4, got);
    cr_assert_str_eq(got, "DDDD|DSSS|DSSS|DSSS|DSSS|DSSS|");
    strategy_destroy(&s);
    /* 0.3 of 10 steps: timestep > 700 is steps 0-2 (1000, 900, 800); step 3 is at exactly 700 (not above). */
    env = env_for(10, 3, 3);
    cr_assert_eq(strategy_create(&s, "svg:dense_steps=0.3,dense_layers=0,band=exact,row_seed=9", &env, &err), 0, "%s",
                 err.msg);
    cr_assert_str_eq(s.spec, "svg:svg_version=5efea72,sparsity=0.75,dense_steps=0.3,dense_layers=0,rows=64,row_seed=9,"
                             "band=exact");
    plan_string(&s, 10, 3, got);
    cr_assert_str_eq(got, "DDD|DDD|DDD|SSS|SSS|SSS|SSS|SSS|SSS|SSS|");
    plan_for(&s, 4, 10, 1, &plan);
    cr_assert(plan.block == 0 && plan.profile_seed == svg_call_seed(9, 4, BRANCH_COND, 1));
    strategy_destroy(&s);

    /* Sparsity 0 is dense everywhere. */
    cr_assert_eq(strategy_create(&s, "svg:sparsity=0,dense_steps=0,dense_layers=0", &env, &err), 0, "%s", err.msg);
    plan_string(&s, 2, 3, got);
    cr_assert_str_eq(got, "DDD|DDD|");
    strategy_destroy(&s);

    const char *bad[] = {"svg:sparsity=1.5", "svg:rows=0",          "svg:dense_steps=-0.1", "svg:thresh=0.1",
                         "svg:rows=2.5",     "svg:svg_version=svg2", "svg:band=128",        "svg:row_seed=-1"};
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
    cr_assert_str_eq(c.spec, "easycache+svg:thresh=0.2,warmup=2,svg_version=5efea72,sparsity=0.5,dense_steps=0.075,"
                             "dense_layers=0.025,rows=64,row_seed=0,band=official");
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
    StrategyEnv env = fixture_strategy_env(e, steps, (size_t)cfg->in_dim * F * H * W);

    Strategy none, svg;
    RunRecord base, rec;
    memset(&base, 0, sizeof base), memset(&rec, 0, sizeof rec);
    cr_assert_eq(strategy_create(&none, "none", &env, &err), 0, "%s", err.msg);
    cr_assert_eq(runner_sample(e, &none, &rs, &base, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(base.svg_layers, 0);
    /* HEAD's rule: floor(0.2 · 5) = 1 dense step; floor(0.5 · 2) = layer 0 dense. The exact band: at 256 tokens the
     * official 128-token blocks skip nothing. */
    cr_assert_eq(strategy_create(&svg, "svg:svg_version=head,sparsity=0.75,dense_steps=0.2,dense_layers=0.5,rows=16,"
                                       "band=exact",
                                 &env, &err),
                 0, "%s", err.msg);
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

/* ---------------------------------------------------------------------------------------------- */
/* against the official code: tests/svg_official.py, an independent numpy transcription of svg/models/wan/utils.py,
 * attention.py, placement.py and the warm-up of wan_inference.py (5efea72) / wan_t2v_inference.py (HEAD) */

/* Runs tests/svg_official.py on a case file and returns its output (malloc'd); skips without numpy. */
static char *official(const char *cases) {
    const char *py = fixture_python();
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import numpy' >/dev/null 2>&1", py);
    if (system(cmd) != 0) cr_skip_test("%s cannot import numpy (Debian: python3-numpy)", py);
    snprintf(cmd, sizeof cmd, "'%s' tests/svg_official.py '%s' 2>&1", py, cases);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "cannot run %s", cmd);
    size_t cap = 1 << 20, n = 0, got;
    char *out = malloc(cap);
    cr_assert_not_null(out);
    while ((got = fread(out + n, 1, cap - n - 1, p)) > 0) {
        n += got;
        if (n + 1 == cap) cr_assert_not_null(out = realloc(out, cap *= 2));
    }
    out[n] = '\0';
    const int status = pclose(p);
    cr_assert_eq(status, 0, "%s failed (status %d):\n%.2000s", cmd, status, out);
    return out;
}

/* The next line of the oracle's output, which must start with `tag` (returns what follows it). */
static char *next_line(char **cur, const char *tag) {
    char *line = *cur, *end = strchr(line, '\n');
    cr_assert_not_null(end, "oracle output ended before '%s'", tag);
    *end = '\0';
    *cur = end + 1;
    const size_t n = strlen(tag);
    cr_assert(strncmp(line, tag, n) == 0 && line[n] == ' ', "expected '%s', got '%.60s'", tag, line);
    return line + n + 1;
}

static int hex_bit(const char *hex, size_t bit) { /* numpy packbits order: most significant bit first */
    const char c = hex[2 * (bit / 8) + (bit % 8 < 4 ? 0 : 1)];
    const int nib = c <= '9' ? c - '0' : c - 'a' + 10;
    return (nib >> (3 - bit % 4)) & 1;
}

static char *cases_file(char *dir, const char *text) {
    char *path = malloc(strlen(dir) + 16);
    cr_assert_not_null(path);
    sprintf(path, "%s/cases.txt", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* Band, per-block kept pairs and computed 128x128 blocks, and (full) the element masks of both patterns, against the
 * official mask_mod run on the placed tokens; rows_every: kept pairs compared on every n-th query block (and the
 * last) only, by brute force over svg_mask. */
static void compare_grid(char **cur, int F, int P, double s, int full, int rows_every) {
    const int L = F * P, w = svg_band_for_sparsity(L, P, s, SVG_BLOCK), nq = (L + 127) / 128;
    const SvgShape g = {.frames = F, .tokens_per_frame = P, .band = w, .block = SVG_BLOCK};
    cr_assert_eq(atoi(next_line(cur, "band")), w, "F %d P %d s %g: band", F, P, s);
    char *blk = next_line(cur, "blocks"), *e;
    cr_assert_eq(strtol(blk, &e, 10), nq);
    long long kept_total = 0, blocks_total = 0;
    for (int qb = 0; qb < nq; qb++) {
        const long long kept = strtoll(e, &e, 10), blocks = strtoll(e, &e, 10);
        kept_total += kept, blocks_total += blocks;
        for (int pi = 1; pi < 3; pi++) {
            const AttnPattern p = PATTERNS[pi];
            SvgTileKeys tk;
            svg_tile_keys(&g, p, qb * 128, qb * 128 + 128 < L ? qb * 128 + 128 : L, &tk);
            long long mine = svg_grid_ceil_div(tk.band_hi - tk.band_lo, 128);
            for (int r = 0; r < tk.nsink; r++) mine += svg_grid_ceil_div(tk.sink_hi[r] - tk.sink_lo[r], 128);
            cr_assert_eq(mine, blocks, "F %d P %d s %g pattern %d query block %d: blocks", F, P, s, pi, qb);
            if (qb % rows_every && qb != nq - 1) continue;
            long long n = 0;
            for (int a = qb * 128; a < L && a < qb * 128 + 128; a++) {
                const int i = svg_token(&g, p, a);
                for (int j = 0; j < L; j++) n += svg_mask(&g, p, i, j);
            }
            cr_assert_eq(n, kept, "F %d P %d s %g pattern %d query block %d: kept pairs", F, P, s, pi, qb);
        }
    }
    for (int pi = 1; pi < 3; pi++) {
        cr_assert_eq(llround(svg_mask_density(&g, PATTERNS[pi]) * L * L), kept_total, "F %d P %d s %g: density", F, P, s);
        cr_assert_eq(svg_blocks_computed(&g, PATTERNS[pi]), blocks_total, "F %d P %d s %g: blocks", F, P, s);
        cr_assert_eq(svg_pattern_flops(&g, PATTERNS[pi], 1) <= 4.0 * blocks_total * 128 * 128, 1);
    }
    if (!full) return;
    for (int pi = 1; pi < 3; pi++) {
        const char *hex = next_line(cur, pi == 1 ? "mask spatial" : "mask temporal");
        for (int i = 0; i < L; i++)
            for (int j = 0; j < L; j++)
                cr_assert_eq(svg_mask(&g, PATTERNS[pi], i, j), hex_bit(hex, (size_t)i * L + j),
                             "F %d P %d s %g pattern %d (%d,%d)", F, P, s, pi, i, j);
    }
}

Test(svg_official, tiny_grid_masks_bands_blocks, .timeout = 60) {
    const double ss[] = {0.75, 0.7, 0.5, 0.9, 0.97};
    char text[1024] = "", *dir = fixture_tmpdir();
    cr_assert_not_null(dir);
    for (size_t a = 0; a < sizeof ss / sizeof ss[0]; a++)
        snprintf(text + strlen(text), sizeof text - strlen(text), "grid 8 64 %.17g full\ngrid 5 70 %.17g blocks\n",
                 1.0 - ss[a], 1.0 - ss[a]);
    char *path = cases_file(dir, text), *out = official(path), *cur = out;
    for (size_t a = 0; a < sizeof ss / sizeof ss[0]; a++) {
        compare_grid(&cur, 8, 64, ss[a], 1, 1);
        compare_grid(&cur, 5, 70, ss[a], 0, 1);
    }
    free(out), free(path);
    fixture_rmdir(dir);
    free(dir);
}

Test(svg_official, wan480p_grid_bands_blocks, .timeout = 120) {
    char text[256], *dir = fixture_tmpdir();
    cr_assert_not_null(dir);
    snprintf(text, sizeof text, "grid 21 1560 %.17g blocks\n", 1.0 - 0.75);
    char *path = cases_file(dir, text), *out = official(path), *cur = out;
    compare_grid(&cur, 21, 1560, 0.75, 0, 64);
    free(out), free(path);
    fixture_rmdir(dir);
    free(dir);
}

/* Profiling on planted heads (0 spatial, 1 temporal: fixture_decaying_head) and random ones: the profiling masks on
 * the sampled rows (full: all rows), the MSEs and the choices, ours (svg_profile_head, and with full svg_attention's
 * plan) against the official sample_mse with get_attention_mask. */
static void compare_profile(int F, int P, int planted_band, int full) {
    const int L = F * P, heads = 4, hd = 16, rows = 64;
    const unsigned long long seed = svg_call_seed(0, 3, 0, 1);
    const SvgShape g = {.frames = F, .tokens_per_frame = P, .band = planted_band, .block = SVG_BLOCK};
    Bufs b = bufs_new(L, heads, hd, 300 + (uint64_t)L, 3.0f);
    fixture_decaying_head(b.q, b.k, &g, ATTN_SPATIAL, heads, hd, 0);
    fixture_decaying_head(b.q, b.k, &g, ATTN_TEMPORAL, heads, hd, 1);
    char *dir = fixture_tmpdir(), qkv[512];
    cr_assert_not_null(dir);
    snprintf(qkv, sizeof qkv, "%s/qkv.f32", dir);
    FILE *f = fopen(qkv, "wb");
    cr_assert_not_null(f);
    const size_t n = (size_t)L * heads * hd;
    cr_assert(fwrite(b.q, sizeof(float), n, f) == n && fwrite(b.k, sizeof(float), n, f) == n &&
              fwrite(b.v, sizeof(float), n, f) == n);
    fclose(f);
    char *text = malloc(1024 + 8 * rows);
    cr_assert_not_null(text);
    int idx[64];
    sprintf(text, "profile %d %d %d %d %s %s", F, P, heads, hd, qkv, full ? "full" : "rows");
    for (int a = 0; a < rows; a++) {
        idx[a] = svg_profile_row(seed, a, svg_profile_limit(L));
        sprintf(text + strlen(text), " %d", idx[a]);
    }
    strcat(text, "\n");
    char *path = cases_file(dir, text), *out = official(path), *cur = out;
    for (int pi = 1; pi < 3; pi++) {
        const char *hex = next_line(&cur, pi == 1 ? "profmask spatial" : "profmask temporal");
        for (int r = 0; r < (full ? L : rows); r++)
            for (int j = 0; j < L; j++)
                cr_assert_eq(svg_profile_mask(&g, PATTERNS[pi], full ? r : idx[r], j), hex_bit(hex, (size_t)r * L + j),
                             "F %d P %d pattern %d row %d key %d", F, P, pi, full ? r : idx[r], j);
    }
    /* The whole call too (its plan's choices), where it is cheap. */
    AttnPattern pattern[4] = {ATTN_SPATIAL, ATTN_SPATIAL, ATTN_SPATIAL, ATTN_SPATIAL};
    AttentionPlan plan = {.num_heads = heads, .pattern = pattern, .sparsity = 0.75, .block = SVG_BLOCK, .frames = F,
                          .tokens_per_frame = P, .profile_rows = rows, .profile_seed = seed};
    if (full)
        cr_assert_eq(svg_attention(b.out, b.q, b.k, b.v, heads, hd, &plan, b.kp, b.vp, b.scratch, b.scratch_floats), 0);
    for (int h = 0; h < heads; h++) {
        char *line = next_line(&cur, "mse"), *e;
        cr_assert_eq(strtol(line, &e, 10), h);
        const double want_s = strtod(e, &e), want_t = strtod(e, &e);
        const int choice = (int)strtol(e, &e, 10);
        double mse[2];
        svg_profile_head(b.q, b.k, b.v, &g, heads, hd, h, rows, seed, b.scratch, mse);
        if (h >= 2) /* random heads: the same MSEs (planted heads' logits cancel terms ~1e5: only the choice) */
            for (int m = 0; m < 2; m++) {
                const double want = m ? want_t : want_s;
                cr_assert(fabs(mse[m] - want) <= 1e-3 * want + 1e-9, "F %d P %d head %d mask %d: %g vs %g", F, P, h, m,
                          mse[m], want);
            }
        const AttnPattern official_choice = choice ? ATTN_TEMPORAL : ATTN_SPATIAL;
        cr_assert_eq(svg_pattern_for_mse(mse), official_choice, "F %d P %d head %d: mse %g %g vs official %g %g", F, P,
                     h, mse[0], mse[1], want_s, want_t);
        if (full) cr_assert_eq(pattern[h], official_choice, "F %d P %d head %d: plan", F, P, h);
        if (h < 2) cr_assert_eq(official_choice, h ? ATTN_TEMPORAL : ATTN_SPATIAL, "planted head %d", h);
    }
    free(text), free(out), free(path);
    bufs_free(&b);
    fixture_rmdir(dir);
    free(dir);
}

Test(svg_official, tiny_grid_profiling, .timeout = 60) { compare_profile(8, 64, 20, 1); }

Test(svg_official, wan480p_grid_profiling, .timeout = 120) { compare_profile(21, 1560, 600, 0); }

/* The dense warm-up of both versions on our schedule (Euler, shift 3 and 5, 50 and 30 steps) for Wan2.1-1.3B (30
 * layers), 14B (40) and a 2-layer model, at the versions' defaults and other fractions. */
Test(svg_official, dense_warmup, .timeout = 60) {
    const struct { const char *version; int steps, layers; float shift; double fs, fl; } cases[] = {
        {"5efea72", 50, 40, 5.0f, 0.075, 0.025}, {"5efea72", 50, 30, 3.0f, 0.075, 0.025},
        {"5efea72", 30, 2, 3.0f, 0.09, 0.5},     {"5efea72", 50, 30, 5.0f, 0.2, 0.1},
        {"head", 50, 40, 5.0f, 0.2, 0.03},       {"head", 50, 30, 3.0f, 0.2, 0.03},
        {"head", 30, 2, 3.0f, 0.3, 0.5},         {"head", 50, 40, 5.0f, 0.075, 0.025},
    };
    enum { NC = sizeof cases / sizeof cases[0] };
    char *text = malloc(NC * 2048), *dir = fixture_tmpdir();
    cr_assert(text && dir);
    text[0] = '\0';
    float ts[NC][51];
    for (size_t c = 0; c < NC; c++) {
        float sig[51];
        solver_by_name("euler")->schedule(cases[c].steps, cases[c].shift, sig, ts[c]);
        sprintf(text + strlen(text), "warmup %s %d %d %.17g %.17g", cases[c].version, cases[c].steps, cases[c].layers,
                cases[c].fs, cases[c].fl);
        for (int t = 0; t < cases[c].steps; t++) sprintf(text + strlen(text), " %.17g", (double)ts[c][t]);
        strcat(text, "\n");
    }
    char *path = cases_file(dir, text), *out = official(path), *cur = out;
    for (size_t c = 0; c < NC; c++) {
        char spec[128], mine[4096], *m = mine;
        snprintf(spec, sizeof spec, "svg:svg_version=%s,dense_steps=%.17g,dense_layers=%.17g", cases[c].version,
                 cases[c].fs, cases[c].fl);
        Strategy s;
        Error err;
        StrategyEnv env = env_for(cases[c].steps, cases[c].layers, 3);
        cr_assert_eq(strategy_create(&s, spec, &env, &err), 0, "%s", err.msg);
        AttnPattern pattern[3];
        AttentionPlan plan = {.num_heads = 3, .pattern = pattern};
        for (int t = 0; t < cases[c].steps; t++) {
            StepInfo st = {.step = t, .num_steps = cases[c].steps, .branch = BRANCH_UNCOND, .guidance_on = 1,
                           .timestep = ts[c][t]};
            for (int l = 0; l < cases[c].layers; l++) {
                memset(pattern, 0, sizeof pattern);
                s.attention_plan(&s, &st, l, &plan);
                *m++ = pattern[0] == ATTN_DENSE ? 'D' : 'S';
            }
            *m++ = '|';
        }
        *m = '\0';
        strategy_destroy(&s);
        const char *want = next_line(&cur, "warmup");
        cr_assert_str_eq(mine, want, "%s", spec);
        cr_assert(strchr(mine, 'S') && strchr(mine, 'D'), "%s: a case that tests nothing", spec);
    }
    free(text), free(out), free(path);
    fixture_rmdir(dir);
    free(dir);
}
