/* Sparse VideoGen attention on the CPU (DESIGN §4 "svg"; svg-project/Sparse-VideoGen, its Wan2.1 path).
 *
 * Tokens are frame-major: token i = f·P + p for frame f < F and spatial position p < P (P = th·tw tokens per
 * frame), L = F·P. Each head runs under one pattern (AttnPattern in models/backend.h), defined through the index
 * of a token in the pattern's own order:
 *     spatial   pos(i) = i          = f·P + p   frame-major: a band around a query covers its own and the
 *                                               neighbouring frames
 *     temporal  pos(i) = p·F + f                token-major (the layout permutation): a band covers the same and
 *                                               nearby spatial positions in every frame
 *     dense     every key
 * Query i attends key j when
 *     |pos(i) - pos(j)| <= w      (the band, half-width w tokens)
 *  or j < P                       (the whole first frame: an attention sink kept by both patterns)
 *
 * Band width from the sparsity s (the fraction of (query, key) pairs to skip), svg_band_for_sparsity:
 *     w = ceil(L · (1 - sqrt(s)))
 * The pairs outside a band |pos(i) - pos(j)| <= w of an L×L grid are two triangles of side L - w: the masked
 * fraction is (1 - w/L)² = s. s = 0 gives w = L (dense); s = 1 gives w = 0 (the diagonal and the sink). The sink
 * adds back at most P/L of the pairs; svg_mask_density gives the exact density. The reference's sparsity_to_width
 * computes the same band as L·(1 - sqrt(1 - s_ref)) from s_ref = the fraction KEPT (its "--sparsity 0.25" for
 * Wan2.1 is our sparsity 0.75) and rounds w up to its 128-token tile; we keep w exact (partial tiles are masked).
 *
 * Block-sparse execution (svg_attention). Tiles of svg_tile(L) query rows × SVG_TILE_KEYS keys, in the pattern's
 * order. For the query tile [q0, q1) the band needs keys [q0 - w, q1 - 1 + w]; the key tiles that meet that
 * interval are computed (one GEMM over their contiguous run), with the mask applied exactly inside them (a key there is kept when it is in the row's band or
 * is a sink key). The sink keys outside those tiles are computed from the first frame's rows in their original
 * order: every pair there is attended, so no tile ever computed is fully masked, and no key is computed twice.
 * Temporal heads have their K and V rows permuted into token-major order (svg_permute_rows), so that both
 * patterns are bands; their query rows are gathered per tile and the output rows scattered back.
 *
 * Profiling (online, at every sparse call, as the reference does): for every non-dense head, `rows` query rows
 * evenly strided over the sequence (row r_a = floor((2a + 1)·L / (2·rows)), deterministic) get their exact
 * attention output and their output under the spatial and under the temporal mask; the head takes the pattern
 * with the lower mean squared error (spatial on a tie). The reference samples rows at random and profiles with a
 * fixed 1.5-frame block mask without the sink; we profile with the masks that will actually run.
 *
 * FLOPs (2 per multiply-add, like models/dit/dit.h): 4·head_dim per computed (query, key) pair (QKᵀ and PV), plus
 * 8·head_dim·rows·L per profiled head (one QKᵀ for the sampled rows, three PV: exact, spatial, temporal). */
#ifndef CACHEBENCH_SPARSE_ATTENTION_H
#define CACHEBENCH_SPARSE_ATTENTION_H

#include <stddef.h>

#include "models/backend.h"
#include "models/svg_grid.h" /* SvgShape, SvgTileKeys, svg_pos, svg_token, svg_mask, svg_tile_keys */

/* w = ceil(L·(1 - sqrt(s))), s clamped to [0, 1]. */
int svg_band_for_sparsity(int L, double sparsity);

/* Query rows per tile for a sequence of L tokens: SVG_TILE, or L when shorter. */
int svg_tile(int L);

/* Fraction of the L² (query, key) pairs the mask keeps, counted exactly in O(L). */
double svg_mask_density(const SvgShape *g, AttnPattern p);

/* FLOPs one head spends on its tiles under pattern p (4·head_dim per computed pair; profiling not included). */
double svg_pattern_flops(const SvgShape *g, AttnPattern p, int head_dim);

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
 * on `rows` evenly strided query rows: mse[0] = spatial, mse[1] = temporal, each the mean over the sampled rows and
 * head_dim of (masked output - exact output)². scratch: svg_thread_floats(L, head_dim) floats. */
void svg_profile_head(const float *q, const float *k, const float *v, const SvgShape *g, int heads, int head_dim,
                      int head, int rows, float *scratch, double mse[2]);

/* Self-attention of q, k, v ([L][heads·head_dim] each, frame-major, after RoPE) into out, per the plan:
 *   reads  plan->frames, tokens_per_frame (L = their product), pattern[heads] (ATTN_DENSE heads attend every key),
 *          band_tokens (> 0: the band half-width; <= 0: svg_band_for_sparsity(L, plan->sparsity)), profile_rows
 *          (> 0: classify every non-dense head as spatial or temporal first, overwriting pattern[h]);
 *   writes pattern (when profiling), band_tokens (the band used), sink_tokens (= P), density[h] (svg_mask_density
 *          of the head's pattern, when density is non-NULL), flops_dense (4·L²·heads·head_dim) and flops_done
 *          (the tiles computed plus profiling).
 * k_perm, v_perm: [L][heads·head_dim] workspaces for the permuted K, V of temporal heads. scratch: at least
 * svg_thread_floats(L, head_dim) floats. Returns 0, or -1 (out untouched, every pattern set to ATTN_DENSE) when
 * the plan's shape does not match or the scratch holds less than one thread's share. */
int svg_attention(float *out, const float *q, const float *k, const float *v, int heads, int head_dim,
                  AttentionPlan *plan, float *k_perm, float *v_perm, float *scratch, size_t scratch_floats);

#endif
