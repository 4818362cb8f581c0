/* The compute seam of the VAE decoder: models/vae/vae.c holds the streaming logic (caches, the order of frames, the
 * first-frame rule) once and runs its numerics through these operations, on the CPU (vae.c) or the GPU
 * (vae_cuda.cu). Buffers are the backend's (device memory on the GPU); weights are given as the model's host
 * pointers (VaeConv.w/b, gammas), which a GPU backend maps to its uploaded copy of m->arena.
 * Operations return nothing: a GPU backend remembers its first failure and reports it through check. */
#ifndef CACHEBENCH_VAE_BACKEND_H
#define CACHEBENCH_VAE_BACKEND_H

#include <stddef.h>

#include "core/error.h"
#include "models/vae/vae.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    /* zeroed floats; NULL when out of memory */
    float *(*alloc)(void *ctx, size_t floats);
    void (*release)(void *ctx, float *p);
    void (*copy)(void *ctx, float *dst, const float *src, size_t n);
    /* out[r][i] = (accumulate ? out[r][i] : 0) + b[r] for r < rows, i < n (b: a model weight) */
    void (*bias)(void *ctx, float *out, const float *b, int rows, size_t n, int accumulate);
    /* row-major C[M][N] += A[M][K] B[K][N] (A: a model weight) */
    void (*gemm)(void *ctx, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc);
    /* the im2col block of a 3x3 conv for output rows [y0, y1): col[((t - k0) cin + ci) 9 + ky 3 + kx][p] from
     * taps[k0..kt) ([cin][H][W] frames, or (H/2)x(W/2) read with nearest x2 upsampling when upsample) */
    void (*im2col)(void *ctx, float *col, const float *const *taps, int k0, int kt, int cin, int H, int W,
                   int upsample, int y0, int y1);
    /* out = x / max(||x|| over channels, 1e-12) * sqrt(C) * gamma per pixel, then SiLU when silu; ss: P floats */
    void (*rms_norm)(void *ctx, float *out, const float *x, const float *gamma, int C, size_t P, float *ss, int silu);
    /* out += x */
    void (*add)(void *ctx, float *out, const float *x, size_t n);
    /* floats of attention scratch for P pixels of C channels */
    size_t (*attention_scratch)(int P, int C);
    /* out = x + proj(attention(to_qkv(norm(x)))) over one frame's P pixels; q, k, v, att: P*C floats each */
    void (*attention)(void *ctx, const VaeBlock *k, const float *x, float *out, int P, float *xn, float *ss, float *q,
                      float *kk, float *v, float *att, float *scratch);
    /* dst = host_z / (1/std) + mean per channel (host_z [C][P] on the host) */
    void (*denormalise)(void *ctx, float *dst, const float *host_z, int C, size_t P);
    /* host = clamp(x, -1, 1) */
    void (*clamp_to_host)(void *ctx, float *host, const float *x, size_t n);
    /* 0, or -1 with the first failure since creation */
    int (*check)(void *ctx, Error *err);
    void (*destroy)(void *ctx);
} VaeOps;

/* The decoder of vae_decoder_new on the given backend; it owns ctx (destroyed by vae_decoder_free, or here on
 * failure). */
int vae_decoder_create(VaeDecoder **out, const VaeModel *m, int H, int W, const VaeOps *ops, void *ctx, Error *err);

/* WanVAE's latent statistics (VAE_Z_DIM each). */
extern const float VAE_LATENT_MEAN[VAE_Z_DIM];
extern const float VAE_LATENT_STD[VAE_Z_DIM];

#ifdef __cplusplus
}
#endif

#endif
