/* CPU fp32 kernels of the DiT (the specification every other backend is tested against).
 * Layouts are row-major; "rows x dim" activations; Linear weights are PyTorch's [out][in].
 * All functions are OpenMP-parallel where that pays; none allocates except attention's caller-given scratch. */
#ifndef CACHEBENCH_KERNELS_H
#define CACHEBENCH_KERNELS_H

#include <stddef.h>

/* out[M][N] = in[M][K] · weight[N][K]^T + bias[N] (bias may be NULL). out must not alias in. */
void linear(float *out, const float *in, const float *weight, const float *bias, int M, int K, int N);

/* Per-row LayerNorm over dim with optional affine (weight/bias NULL = none). In-place allowed. */
void layernorm(float *out, const float *in, const float *weight, const float *bias, int rows, int dim, float eps);

/* Per-row RMSNorm over dim: x * rsqrt(mean(x^2) + eps) * weight (weight NULL = ones). In-place allowed. */
void rmsnorm(float *out, const float *in, const float *weight, int rows, int dim, float eps);

/* out[r][d] = in[r][d] * (1 + scale[d]) + shift[d]. In-place allowed. */
void modulate(float *out, const float *in, const float *shift, const float *scale, int rows, int dim);

/* x[r][d] += y[r][d] * gate[d] (gate NULL means 1). */
void gated_residual(float *x, const float *y, const float *gate, int rows, int dim);

/* out[i] = (x[i] - out[i]) / sigma: a predicted x0 (in out) to the flow-matching velocity at x_t = x (config.h
 * DitPrediction). A division, not a multiplication by 1/sigma, as PyTorch computes it. */
void x0_to_velocity(float *out, const float *x, float sigma, size_t n);

/* In place, elementwise. */
void gelu_tanh(float *x, size_t n);
void silu(float *x, size_t n);

/* Wan 3D RoPE tables for a token grid (f, h, w), tokens in frame-major order (f, h, w).
 * cos/sin have [f*h*w][head_dim/2] entries. The head_dim/2 complex pairs are split as
 * c - 2*(c/3) for the frame index, c/3 for the row, c/3 for the column (c = head_dim/2),
 * each with inverse frequencies theta^(-2j/d_part) where d_part = 2 * (pairs in that part). */
void rope_tables(float *cos_out, float *sin_out, int f, int h, int w, int head_dim, float theta);

/* Rotates adjacent pairs (x[2j], x[2j+1]) of every head of every token: x is [L][heads][head_dim]. */
void rope_apply(float *x, const float *cos_t, const float *sin_t, int L, int heads, int head_dim);

/* Scaled dot-product attention, softmax(q k^T / sqrt(head_dim)) v, per head.
 * q: [Lq][heads*head_dim], k, v: [Lk][heads*head_dim], out: [Lq][heads*head_dim].
 * scratch must hold attention_scratch_floats(Lq, Lk, heads) floats. That size is for the caller's
 * omp_get_max_threads() and never decreases when Lq, Lk or heads grow, so one buffer sized for the
 * largest call (e.g. Lk = max(L, text_len)) serves self- and cross-attention. */
size_t attention_scratch_floats(int Lq, int Lk, int heads);
void attention(float *out, const float *q, const float *k, const float *v, int Lq, int Lk, int heads, int head_dim,
               float *scratch);

/* Wan's sinusoidal timestep embedding: [cos(t*w_j) for j<half, sin(t*w_j) for j<half],
 * w_j = 10000^(-j/half), computed in double precision. out has dim floats. */
void timestep_embedding(float *out, float t, int dim);

#endif
