/* The Sparse VideoGen token grid (definitions: models/sparse_attention.h): pattern order, the run mask, the fixed
 * profiling masks, the sampled profiling rows and the keys a query tile computes, as inline functions that compile
 * both for the host (C) and for the GPU (CUDA), so that the CPU kernel (models/sparse_attention.c) and the CUDA kernels
 * (models/cuda_kernels.cu) compute exactly the same masks, rows, key sets and FLOPs, and the CPU tests of these
 * functions (tests/test_svg.c) cover the GPU's tiling too. */
#ifndef CACHEBENCH_SVG_GRID_H
#define CACHEBENCH_SVG_GRID_H

#include "models/backend.h"

#ifdef __CUDACC__
#define SVG_GRID_FN static inline __host__ __device__
#else
#define SVG_GRID_FN static inline
#endif

/* Execution tiles: SVG_TILE query rows (each CPU task's GEMMs re-pack the keys they read, so more rows amortise that
 * better; the CUDA kernel's block of 4 warps x 16 rows is the same 64). Which keys a tile computes is set by the grid's
 * block (SvgShape.block): the official kernel's SVG_BLOCK x SVG_BLOCK blocks (FlexAttention's default block mask),
 * whole blocks computed wherever one pair is kept, or, for the exact-band variant (block 0), the tile's own rows x
 * SVG_TILE_KEYS-key tiles. SVG_BLOCK is a multiple of SVG_TILE, so a tile never straddles two official blocks.
 * SVG_PROFILE_BLOCK and SVG_PROFILE_MAX_ROW are the official profiler's hard-coded mask block and its
 * sample_mse_max_row. */
enum { SVG_TILE = 64, SVG_TILE_KEYS = 16, SVG_BLOCK = 128, SVG_PROFILE_BLOCK = 128, SVG_PROFILE_MAX_ROW = 10000 };

typedef struct {
    int frames;             /* F */
    int tokens_per_frame;   /* P; L = F·P, and pattern positions [0, P) are the sink */
    int band;               /* w >= 0, in tokens; w >= L - 1 leaves nothing masked */
    int block;              /* SVG_BLOCK: official blocks; 0: exact tiles (the exact-band variant) */
} SvgShape;

/* The keys computed for query tile [q0, q1), all in pattern order. */
typedef struct {
    int band_lo, band_hi;   /* key tiles [band_lo, band_hi) (multiples of the key block, or L), masked exactly */
    int nsink;              /* 0..2 further ranges holding the sink, masked exactly (kept: positions < P): */
    int sink_lo[2], sink_hi[2];
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

/* The run mask, naively: 1 when query i attends key j (both frame-major). The official code applies one mask to every
 * head after reordering it into its pattern's order, so both the band and the sink are in pattern positions: the sink
 * of a temporal head is the first P token-major positions, not frame 0. The definition every other function here is
 * tested against. */
SVG_GRID_FN int svg_mask(const SvgShape *g, AttnPattern p, int i, int j) {
    if (p == ATTN_DENSE) return 1;
    const int a = svg_pos(g, p, i), b = svg_pos(g, p, j), d = a - b;
    return b < g->tokens_per_frame || (d <= g->band && -d <= g->band);
}

/* The fixed profiling masks (the official "hard coded" ones, independent of the sparsity): in pattern order, blocks of
 * SVG_PROFILE_BLOCK tokens less than floor(2P / SVG_PROFILE_BLOCK) blocks apart, plus the sink positions [0, P). */
SVG_GRID_FN int svg_profile_mask(const SvgShape *g, AttnPattern p, int i, int j) {
    if (p == ATTN_DENSE) return 1;
    const int a = svg_pos(g, p, i), b = svg_pos(g, p, j), P = g->tokens_per_frame;
    const int nb = 2 * P / SVG_PROFILE_BLOCK, d = a / SVG_PROFILE_BLOCK - b / SVG_PROFILE_BLOCK;
    return b < P || (d < nb && -d < nb);
}

/* Key tile width of the grid. */
SVG_GRID_FN int svg_key_block(const SvgShape *g) { return g->block > 0 ? g->block : SVG_TILE_KEYS; }

SVG_GRID_FN void svg_tile_keys(const SvgShape *g, AttnPattern p, int q0, int q1, SvgTileKeys *out) {
    const int P = g->tokens_per_frame, L = g->frames * P, w = g->band, T = svg_key_block(g);
    out->nsink = 0;
    if (p == ATTN_DENSE || w >= L - 1) {
        out->band_lo = 0, out->band_hi = L;
        return;
    }
    /* The query rows whose keys the tile computes: its official block(s), or the tile itself. */
    int b0 = q0, b1 = q1;
    if (g->block > 0) {
        b0 = q0 / g->block * g->block;
        b1 = svg_grid_min(L, ((q1 - 1) / g->block + 1) * g->block);
    }
    /* Key tiles meeting [b0 - w, b1 - 1 + w]. */
    const int lo = svg_grid_max(0, b0 - w), hi = (int)((long)b1 - 1 + w < L - 1 ? (long)b1 - 1 + w : L - 1);
    out->band_lo = lo / T * T;
    out->band_hi = svg_grid_min(L, (hi / T + 1) * T);
    /* The sink positions [0, P) outside the band tiles; whole key blocks of them with official blocks. */
    const int S = g->block > 0 ? svg_grid_min(L, svg_grid_ceil_div(P, T) * T) : P;
    if (out->band_lo > 0) {
        out->sink_lo[out->nsink] = 0, out->sink_hi[out->nsink] = svg_grid_min(S, out->band_lo);
        out->nsink++;
    }
    if (out->band_hi < S) {
        out->sink_lo[out->nsink] = out->band_hi, out->sink_hi[out->nsink] = S;
        out->nsink++;
    }
}

/* Profiling rows. The official profiler draws its rows uniformly, with replacement, from [0, sample_mse_max_row) at
 * every call (torch.randint, unseeded there); ours are a counter-based hash of the call's seed (svg_call_seed in
 * models/sparse_attention.h) and the sample index, so that both backends draw the same rows and a record's spec
 * (which holds the seed) reproduces them. limit: min(SVG_PROFILE_MAX_ROW, L). */
SVG_GRID_FN unsigned long long svg_mix64(unsigned long long x) { /* splitmix64's finaliser */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

SVG_GRID_FN int svg_profile_limit(int L) { return svg_grid_min(SVG_PROFILE_MAX_ROW, L); }

SVG_GRID_FN int svg_profile_row(unsigned long long seed, int a, int limit) {
    const unsigned long long h = svg_mix64(seed + 0x9e3779b97f4a7c15ULL * (unsigned long long)(a + 1));
    return (int)(((h >> 32) * (unsigned long long)limit) >> 32);
}

#endif
