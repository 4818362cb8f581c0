/* CUDA kernels of the DiT (models/cuda_kernels.cu), used by the CUDA engine (models/dit/engine_cuda.cu).
 *
 * Every function here mirrors a CPU kernel of models/kernels.h or a loop of models/dit/dit.c and computes the same math;
 * the parity tests (tests/test_cuda.c) hold them to the CPU path. Conventions:
 *   - Row-major activations, "rows x dim", as on the CPU.
 *   - T is the activation type of GEMM inputs: float (fp32 mode) or bf16 (bf16 mode). Kernels that produce a GEMM
 *     input write T; everything else (the residual stream, GEMM outputs, norms' statistics) stays float.
 *   - Each launcher enqueues on `st` and returns cudaGetLastError(), so the caller can note the first failure.
 *   - No launcher allocates or synchronises.
 */
#ifndef CACHEBENCH_CUDA_KERNELS_CUH
#define CACHEBENCH_CUDA_KERNELS_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stddef.h>

#include "models/svg_grid.h"

typedef __nv_bfloat16 bf16;

/* out[r][c] = row[c] for r < rows, c < n: the bias a GEMM then accumulates onto (beta = 1), as models/kernels.c
 * does. */
cudaError_t cuda_fill_rows(float *out, const float *row, size_t rows, int n, cudaStream_t st);

/* out = (T)in. */
template <typename T> cudaError_t cuda_convert(T *out, const float *in, size_t n, cudaStream_t st);
/* out = (T)silu(in), out = (T)gelu_tanh(in): the formulas of models/kernels.c. */
template <typename T> cudaError_t cuda_silu(T *out, const float *in, size_t n, cudaStream_t st);
template <typename T> cudaError_t cuda_gelu_tanh(T *out, const float *in, size_t n, cudaStream_t st);

/* out = a + b, out = a - b (element-wise; out may alias a or b). */
cudaError_t cuda_add(float *out, const float *a, const float *b, size_t n, cudaStream_t st);
cudaError_t cuda_sub(float *out, const float *a, const float *b, size_t n, cudaStream_t st);

/* Per row: y = LayerNorm(x) (two-pass mean and biased variance, eps), then y = y * weight + bias where given, then
 * y = y * (1 + scale) + shift where scale is given (shift must be given with it). One block per row. */
template <typename T>
cudaError_t cuda_layernorm_modulate(T *out, const float *in, const float *weight, const float *bias, const float *shift,
                                    const float *scale, int rows, int dim, float eps, cudaStream_t st);

/* Per row: y = x * rsqrt(mean(x^2) + eps) * weight over the whole dim (Wan's q/k norm, before the head split), then,
 * when cos/sin are given ([rows][head_dim/2]), the RoPE rotation of adjacent pairs within every head. */
template <typename T>
cudaError_t cuda_rmsnorm_rope(T *out, const float *in, const float *weight, const float *cos_t, const float *sin_t,
                              int rows, int dim, int head_dim, float eps, cudaStream_t st);

/* x[r][d] += y[r][d] * gate[d] (gate NULL means 1). */
cudaError_t cuda_gated_residual(float *x, const float *y, const float *gate, int rows, int dim, cudaStream_t st);

/* Head modulation: shift = head_mod[0] + e, scale = head_mod[1] + e (head_mod is [2][dim]). */
cudaError_t cuda_head_modulation(float *shift, float *scale, const float *head_mod, const float *e, int dim,
                                 cudaStream_t st);

/* x [C][F][H][W] -> patches [L][C*pt*ph*pw] ordered (c, pt, ph, pw), the Conv3d weight order (models/dit/dit.c). */
template <typename T>
cudaError_t cuda_patchify(T *patches, const float *x, int C, int F, int H, int W, int pt, int ph, int pw,
                          cudaStream_t st);
/* patches [L][pt*ph*pw*C] ordered (pt, ph, pw, c) -> out [C][F][H][W] (Wan's unpatchify). */
cudaError_t cuda_unpatchify(float *out, const float *patches, int C, int F, int H, int W, int pt, int ph, int pw,
                            cudaStream_t st);

/* out[i] = (x[i] - out[i]) / sigma: x0 prediction to velocity (models/kernels.h x0_to_velocity). */
cudaError_t cuda_x0_to_velocity(float *out, const float *x, float sigma, size_t n, cudaStream_t st);

/* VecOps guide and axpby (models/backend.h): out = vu + g (vc - vu) (out = vc when vu is NULL), adding to *bad (device)
 * the number of non-finite values written; out = a x + b y. Every operation rounds separately (no FMA contraction),
 * like the CPU. Element-wise: out may alias an input. */
cudaError_t cuda_guide(float *out, unsigned long long *bad, const float *vc, const float *vu, float g, size_t n,
                       cudaStream_t st);
cudaError_t cuda_axpby(float *out, float a, const float *x, float b, const float *y, size_t n, cudaStream_t st);

/* *result (device) = sum |a[i]| (b NULL) or sum |a[i] - b[i]|, accumulated in double. Deterministic: a fixed grid
 * writes CUDA_SUM_PARTIALS partial sums to `partials` (device, that many doubles), reduced in a fixed order. */
enum { CUDA_SUM_PARTIALS = 256 };
cudaError_t cuda_sum_abs(double *result, double *partials, const float *a, const float *b, size_t n, cudaStream_t st);

/* Fused attention, softmax(q k^T / sqrt(hd)) v per head, with an online softmax over key tiles (no Lq x Lk matrix in
 * memory). q [Lq][heads*hd], k, v [Lk][heads*hd], out [Lq][heads*hd]; FP32 accumulation.
 *   simple: CUDA cores, FP32 math on float or bf16 inputs; head_dim a multiple of 4, at most 128.
 *   mma:    bf16 tensor cores (mma.sync m16n8k16, sm_80+), FP32 accumulators; head_dim 16, 32, 64 or 128.
 * Lk >= 1. */
bool cuda_attention_simple_supports(int head_dim);
bool cuda_attention_mma_supports(int head_dim);
template <typename T>
cudaError_t cuda_attention_simple(T *out, const T *q, const T *k, const T *v, int Lq, int Lk, int heads, int head_dim,
                                  cudaStream_t st);
cudaError_t cuda_attention_mma(bf16 *out, const bf16 *q, const bf16 *k, const bf16 *v, int Lq, int Lk, int heads,
                               int head_dim, cudaStream_t st);

/* Sparse VideoGen attention (models/sparse_attention.h): q, k, v, out [L][heads*hd], frame-major, L = g.frames *
 * g.tokens_per_frame, band g.band; head h runs under heads_of->pattern[h] (an AttnPattern) and computes exactly the key
 * sets of svg_tile_keys (models/svg_grid.h), as the CPU's svg_attention does. Same precision rules and head_dim limits
 * as cuda_attention_simple; at most CUDA_SVG_MAX_HEADS heads. */
enum { CUDA_SVG_MAX_HEADS = 256 };
typedef struct {
    unsigned char pattern[CUDA_SVG_MAX_HEADS];
} CudaSvgHeads;
template <typename T>
cudaError_t cuda_svg_attention(T *out, const T *q, const T *k, const T *v, SvgShape g, int heads, int head_dim,
                               const CudaSvgHeads *heads_of, cudaStream_t st);
/* Profiling of every head whose pattern is not ATTN_DENSE on `rows` query rows (svg_profile_row(seed, a,
 * svg_profile_limit(L))) under the fixed profiling masks (svg_profile_mask): partials (device,
 * [heads][rows][2] doubles) receive per row the sum over head_dim of (spatial output - exact output)^2 and of
 * (temporal output - exact output)^2 (zeros for dense heads). mse = sum over rows / (rows * head_dim), as
 * svg_profile_head computes it. */
template <typename T>
cudaError_t cuda_svg_profile(double *partials, const T *q, const T *k, const T *v, SvgShape g, int heads,
                             int head_dim, int rows, unsigned long long seed, const CudaSvgHeads *heads_of,
                             cudaStream_t st);

#endif
