/* Sparse VideoGen attention on the CPU (DESIGN §4 "svg"; svg-project/Sparse-VideoGen, SVG1, its Wan2.1 path:
 * svg/models/wan/utils.py and attention.py, unchanged from commit 5efea72 to HEAD 5ce7b01).
 *
 * Tokens are frame-major: token i = f·P + p for frame f < F and spatial position p < P (P = th·tw tokens per
 * frame), L = F·P. Each head runs under one pattern (AttnPattern in models/backend.h), defined through the index
 * of a token in the pattern's own order (the official code reorders a temporal head's q, k, v and runs one mask):
 *     spatial   pos(i) = i          = f·P + p   frame-major: a band around a query covers its own and the
 *                                               neighbouring frames
 *     temporal  pos(i) = p·F + f                token-major: a band covers the same and nearby spatial positions in
 *                                               every frame
 *     dense     every key
 * Query i attends key j when
 *     |pos(i) - pos(j)| <= w      (the band, half-width w tokens)
 *  or pos(j) < P                  (the sink: the first P positions of the head's own order; frame 0 for a spatial
 *                                  head, the first ceil(P/F) spatial positions of every frame for a temporal one)
 *
 * Band width from the sparsity s (the fraction of (query, key) pairs to skip; the official --sparsity is the
 * fraction kept, 1 - s), svg_band_for_sparsity:
 *     official (block = SVG_BLOCK): w = ceil(width / 128) · 128, width = L · (1 - sqrt(1 - kept)) with the official
 *                                   sparsity_to_width's arithmetic (utils.py: round_to_multiple)
 *     exact (block = 0):            w = ceil(L · (1 - sqrt(s)))
 * The pairs outside an exact band are (1 - w/L)² = s of all pairs; rounding up to 128 tokens keeps more (the tiny
 * grid: 0.53 of the pairs instead of 0.35). svg_mask_density gives the exact density, sink included.
 *
 * Block-sparse execution (svg_attention). Query tiles of SVG_TILE rows in the pattern's order; a tile computes the keys
 * of its official 128-row block: every 128-key block (pattern order) that holds a kept pair of that block, the mask
 * applied exactly inside (FlexAttention's block mask, which the official code runs); with block = 0 (exact variant)
 * its own 16-key tiles instead. Temporal heads have their K and V rows permuted into token-major order
 * (svg_permute_rows), so that both patterns are bands; their query rows are gathered per tile and the output rows
 * scattered back.
 *
 * Profiling (online, at every sparse call, as the official code does): for every non-dense head, `rows` query rows
 * drawn with replacement from [0, min(10000, L)) (svg_profile_row, seeded per call) get their exact attention output
 * and their output under the two fixed profiling masks (svg_profile_mask: 128-token blocks within floor(2P/128)
 * blocks plus the sink, in each pattern's order; not the run masks); the head takes the pattern with the lower mean
 * squared error (spatial on a tie, as argmin does). The official MSEs are bf16, ours double.
 *
 * FLOPs (2 per multiply-add, like models/dit/dit.h): 4·head_dim per computed (query, key) pair (QKᵀ and PV), i.e.
 * whole official blocks, plus 8·head_dim·rows·L per profiled head (one QKᵀ for the sampled rows, three PV: exact,
 * spatial, temporal). */
#ifndef CACHEBENCH_SPARSE_ATTENTION_H
#define CACHEBENCH_SPARSE_ATTENTION_H

#include <stddef.h>

#include "models/backend.h"
#include "models/svg_grid.h" /* SvgShape, SvgTileKeys, svg_pos, svg_token, svg_mask, svg_tile_keys, svg_profile_* */

/* The band half-width for L = frames·P tokens and sparsity s (fraction skipped; <= 0: dense, w = L): official
 * (block > 0, rounded up to a multiple of block) or exact (block = 0). Result in [0, L]. */
int svg_band_for_sparsity(int L, int P, double sparsity, int block);

/* Seed of the profiling rows of one call (step, branch, layer) of a run with seed row_seed. */
unsigned long long svg_call_seed(unsigned long long row_seed, int step, int branch, int layer);

/* Query rows per tile for a sequence of L tokens: SVG_TILE, or L when shorter. */
int svg_tile(int L);

/* Fraction of the L² (query, key) pairs the mask keeps, counted exactly in O(L). */
double svg_mask_density(const SvgShape *g, AttnPattern p);

/* FLOPs one head spends on its tiles under pattern p (4·head_dim per computed pair; profiling not included). */
double svg_pattern_flops(const SvgShape *g, AttnPattern p, int head_dim);

/* Blocks one head computes under pattern p: (query block, key block) pairs, query blocks of g->block rows (or the
 * SVG_TILE tiles with block 0) and key blocks of svg_key_block(g) keys, edge blocks counted whole. */
long long svg_blocks_computed(const SvgShape *g, AttnPattern p);

/* Layout permutation of one head's columns [col, col + width) of row-major [L][ld] arrays:
 * inverse = 0: dst[pos(i)] = src[i] (frame-major -> token-major); inverse = 1: dst[i] = src[pos(i)]. */
void svg_permute_rows(float *dst, const float *src, const SvgShape *g, int ld, int col, int width, int inverse);

/* The classification rule, from a head's profiled {spatial, temporal} MSEs: the lower one, spatial on a tie. */
AttnPattern svg_pattern_for_mse(const double mse[2]);

/* 1 when the plan asks for anything but dense attention (some head not ATTN_DENSE). */
int svg_plan_is_sparse(const AttentionPlan *plan);

/* Per-thread scratch svg_attention needs for L tokens of head_dim; it runs on as many threads as the scratch
 * it is given holds (at most omp_get_max_threads()). */
size_t svg_thread_floats(int L, int head_dim);

/* Profiles one head (columns [head·head_dim, (head+1)·head_dim) of q, k, v, each [L][heads·head_dim], frame-major)
 * on `rows` query rows svg_profile_row(seed, a, svg_profile_limit(L)), a < rows: mse[0] = spatial, mse[1] = temporal,
 * each the mean over the sampled rows and head_dim of (output under the profiling mask - exact output)².
 * scratch: svg_thread_floats(L, head_dim) floats. */
void svg_profile_head(const float *q, const float *k, const float *v, const SvgShape *g, int heads, int head_dim,
                      int head, int rows, unsigned long long seed, float *scratch, double mse[2]);

/* Self-attention of q, k, v ([L][heads·head_dim] each, frame-major, after RoPE) into out, per the plan:
 *   reads  plan->frames, tokens_per_frame (L = their product), pattern[heads] (ATTN_DENSE heads attend every key),
 *          block, band_tokens (> 0: the band half-width; <= 0: svg_band_for_sparsity(L, P, plan->sparsity, block)),
 *          profile_rows (> 0: classify every non-dense head as spatial or temporal first, overwriting pattern[h]) and
 *          profile_seed;
 *   writes pattern (when profiling), band_tokens (the band used), sink_tokens (= P), density[h] (svg_mask_density
 *          of the head's pattern, when density is non-NULL), flops_dense (4·L²·heads·head_dim) and flops_done
 *          (the blocks computed plus profiling).
 * k_perm, v_perm: [L][heads·head_dim] workspaces for the permuted K, V of temporal heads. scratch: at least
 * svg_thread_floats(L, head_dim) floats. Returns 0, or -1 (out untouched, every pattern set to ATTN_DENSE) when
 * the plan's shape does not match or the scratch holds less than one thread's share. */
int svg_attention(float *out, const float *q, const float *k, const float *v, int heads, int head_dim,
                  AttentionPlan *plan, float *k_perm, float *v_perm, float *scratch, size_t scratch_floats);

#endif
