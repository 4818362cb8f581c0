/* The Sparse VideoGen token grid (definitions: models/sparse_attention.h): pattern order, the mask and the keys a
 * query tile computes, as inline functions that compile both for the host (C) and for the GPU (CUDA), so that the CPU
 * kernel (models/sparse_attention.c) and the CUDA kernel (models/cuda_kernels.cu) compute exactly the same key sets
 * and the same FLOPs, and the CPU tests of these functions (tests/test_svg.c) cover the GPU's tiling too. */
#ifndef CACHEBENCH_SVG_GRID_H
#define CACHEBENCH_SVG_GRID_H

#include "models/backend.h"

#ifdef __CUDACC__
#define SVG_GRID_FN static inline __host__ __device__
#else
#define SVG_GRID_FN static inline
#endif

/* Tiles: SVG_TILE query rows (each CPU task's GEMMs re-pack the keys they read, so more rows amortise that better;
 * the CUDA kernel's block of 4 warps x 16 rows is the same 64) × SVG_TILE_KEYS keys. The needed key tiles of a query
 * tile are contiguous and run as one GEMM, so a key grid finer than the reference's 128 costs nothing and computes
 * fewer masked pairs at the band's edges (our sequences are short: 512 tokens for the tiny model, where a 64-key grid
 * alone added 16% of dense attention). */
enum { SVG_TILE = 64, SVG_TILE_KEYS = 16 };

typedef struct {
    int frames;             /* F */
    int tokens_per_frame;   /* P; L = F·P, and keys [0, P) are the sink */
    int band;               /* w >= 0, in tokens; w >= L - 1 leaves nothing masked */
} SvgShape;

/* The keys computed for query tile [q0, q1) (pattern order). */
typedef struct {
    int band_lo, band_hi;   /* key tiles [band_lo, band_hi) in pattern order (multiples of SVG_TILE_KEYS, or L),
                               masked exactly */
    int nsink;              /* 0..2 ranges of first-frame keys outside the band tiles, all attended: */
    int sink_lo[2], sink_hi[2]; /* original (frame-major) rows [sink_lo, sink_hi) */
} SvgTileKeys;

SVG_GRID_FN int svg_grid_min(int a, int b) { return a < b ? a : b; }
SVG_GRID_FN int svg_grid_max(int a, int b) { return a > b ? a : b; }
SVG_GRID_FN int svg_grid_ceil_div(int a, int b) { return (a + b - 1) / b; } /* a >= 0, b > 0 */

/* Index of token i (frame-major) in the pattern's order, and back. Dense and spatial: the identity. */
SVG_GRID_FN int svg_pos(const SvgShape *g, AttnPattern p, int i) {
    if (p != ATTN_TEMPORAL) return i;
    const int P = g->tokens_per_frame;
    return (i % P) * g->frames + i / P;
}

SVG_GRID_FN int svg_token(const SvgShape *g, AttnPattern p, int pos) {
    if (p != ATTN_TEMPORAL) return pos;
    const int F = g->frames;
    return (pos % F) * g->tokens_per_frame + pos / F;
}

/* The mask itself, naively: 1 when query i attends key j (both frame-major). The definition every other function
 * here is tested against. */
SVG_GRID_FN int svg_mask(const SvgShape *g, AttnPattern p, int i, int j) {
    if (p == ATTN_DENSE || j < g->tokens_per_frame) return 1;
    const int d = svg_pos(g, p, i) - svg_pos(g, p, j);
    return d <= g->band && -d <= g->band;
}

/* First-frame key p0 sits at pattern position p0·stride. */
SVG_GRID_FN int svg_sink_stride(const SvgShape *g, AttnPattern p) { return p == ATTN_TEMPORAL ? g->frames : 1; }

SVG_GRID_FN void svg_tile_keys(const SvgShape *g, AttnPattern p, int q0, int q1, SvgTileKeys *out) {
    const int P = g->tokens_per_frame, L = g->frames * P, w = g->band, T = SVG_TILE_KEYS;
    out->nsink = 0;
    if (p == ATTN_DENSE || w >= L - 1) {
        out->band_lo = 0, out->band_hi = L;
        return;
    }
    /* Key tiles meeting [q0 - w, q1 - 1 + w]. */
    const int lo = svg_grid_max(0, q0 - w), hi = (int)((long)q1 - 1 + w < L - 1 ? (long)q1 - 1 + w : L - 1);
    out->band_lo = lo / T * T;
    out->band_hi = svg_grid_min(L, (hi / T + 1) * T);
    /* First-frame key p0 sits at p0·stride: before the band tiles when p0 < ceil(band_lo / stride), after them
     * when p0 >= ceil(band_hi / stride). */
    const int stride = svg_sink_stride(g, p);
    const int below = svg_grid_min(P, svg_grid_ceil_div(out->band_lo, stride));
    const int above = svg_grid_min(P, svg_grid_ceil_div(out->band_hi, stride));
    if (below > 0) {
        out->sink_lo[out->nsink] = 0, out->sink_hi[out->nsink] = below;
        out->nsink++;
    }
    if (above < P) {
        out->sink_lo[out->nsink] = above, out->sink_hi[out->nsink] = P;
        out->nsink++;
    }
}

/* Query row r_a (frame-major token) of profiling sample a of `rows` (rows <= L): evenly strided, deterministic. */
SVG_GRID_FN int svg_profile_row(int a, int rows, int L) { return (int)(((2L * a + 1) * L) / (2L * rows)); }

#endif
