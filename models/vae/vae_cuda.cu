/* The VAE decoder's GPU backend: see models/vae/vae_cuda.h. Every operation mirrors the CPU backend of
 * models/vae/vae.c (same math, FP32); the streaming logic is vae.c's. Everything runs on the legacy default stream,
 * so copies, kernels and cuBLAS calls are ordered without explicit synchronisation. */
#include "models/vae/vae_cuda.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/dit/engine_cuda.h" /* cuda_device_info */
#include "models/vae/vae_backend.h"

typedef struct {
    decltype(&cublasCreate_v2) create;
    decltype(&cublasDestroy_v2) destroy;
    decltype(&cublasSgemm_v2) sgemm;
    decltype(&cublasGetStatusString) status_string;
} VaeBlas;

#define VB_STR2(x) #x
#define VB_STR(x) VB_STR2(x)

static int blas_load(VaeBlas *api, Error *err) {
    const char *name = "libcublas.so." VB_STR(CUBLAS_VER_MAJOR);
    void *lib = dlopen(name, RTLD_NOW | RTLD_LOCAL); /* kept for the life of the process, as the DiT engine does */
    if (!lib) return error_set(err, "cannot load cuBLAS: %s", dlerror());
    api->create = (decltype(api->create))dlsym(lib, "cublasCreate_v2");
    api->destroy = (decltype(api->destroy))dlsym(lib, "cublasDestroy_v2");
    api->sgemm = (decltype(api->sgemm))dlsym(lib, "cublasSgemm_v2");
    api->status_string = (decltype(api->status_string))dlsym(lib, "cublasGetStatusString");
    if (!api->create || !api->destroy || !api->sgemm || !api->status_string)
        return error_set(err, "%s: missing a cuBLAS symbol (cublasCreate_v2, cublasDestroy_v2, cublasSgemm_v2, "
                              "cublasGetStatusString)", name);
    return 0;
}

typedef struct {
    const VaeModel *m;
    float *weights;              /* device copy of m->arena */
    VaeBlas blas;
    cublasHandle_t handle;
    /* the first failure */
    const char *what;
    char detail[160];
} CudaVae;

static void note_cuda(CudaVae *c, cudaError_t rc, const char *what) {
    if (rc == cudaSuccess || c->what) return;
    c->what = what;
    snprintf(c->detail, sizeof c->detail, "%s (%s)", cudaGetErrorName(rc), cudaGetErrorString(rc));
}

static void note_blas(CudaVae *c, cublasStatus_t rc, const char *what) {
    if (rc == CUBLAS_STATUS_SUCCESS || c->what) return;
    c->what = what;
    snprintf(c->detail, sizeof c->detail, "cuBLAS %s", c->blas.status_string(rc));
}

/* The device copy of a model weight given by its host pointer. */
static const float *dev(const CudaVae *c, const float *host) { return c->weights + (host - c->m->arena); }

/* Row-major C[M][N] = alpha op(A) op(B) + beta C, as cblas_sgemm(CblasRowMajor, ...): column-major cuBLAS computes
 * C^T = op(B)^T op(A)^T, i.e. the same call with A and B swapped. */
static void gemm(CudaVae *c, bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc, const char *what) {
    note_blas(c,
              c->blas.sgemm(c->handle, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K,
                            &alpha, B, ldb, A, lda, &beta, C, ldc),
              what);
}

static unsigned blocks_for(size_t n, unsigned threads) { return (unsigned)((n + threads - 1) / threads); }

/* ---- kernels ---- */

/* out[o][p] = (accumulate ? out[o][p] : 0) + b[o] */
__global__ static void k_bias(float *out, const float *b, size_t P, size_t n, int accumulate) {
    const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float v = b[i / P];
    out[i] = accumulate ? out[i] + v : v;
}

typedef struct {
    const float *t[3];
} Taps;

/* The column block of models/vae/vae.c's im2col3x3: col[((t - k0) cin + ci) 9 + ky 3 + kx][(y - y0) W + x]. */
__global__ static void k_im2col(float *col, Taps taps, int k0, int cin, int H, int W, int upsample, int y0, int y1) {
    const size_t N = (size_t)(y1 - y0) * W;
    const size_t rows = (size_t)(3 - k0) * cin * 9; /* at most; the caller sizes the grid by its kt */
    const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= rows * N) return;
    const size_t r = i / N, n = i % N;
    const int tc = (int)(r / 9), kk = (int)(r % 9), dy = kk / 3 - 1, dx = kk % 3 - 1;
    const int y = y0 + (int)(n / W), x = (int)(n % W), sy = y + dy, sx = x + dx;
    float v = 0.0f;
    if (sy >= 0 && sy < H && sx >= 0 && sx < W) {
        const float *src = taps.t[k0 + tc / cin];
        const int ci = tc % cin;
        v = upsample ? src[(size_t)ci * (H / 2) * (W / 2) + (size_t)(sy >> 1) * (W >> 1) + (sx >> 1)]
                     : src[(size_t)ci * H * W + (size_t)sy * W + sx];
    }
    col[i] = v;
}

/* One thread per pixel: x / max(||x||, 1e-12) * sqrt(C) * gamma over the channels, then SiLU. */
__global__ static void k_rms_norm(float *out, const float *x, const float *gamma, int C, size_t P, int silu) {
    const size_t p = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (p >= P) return;
    float ss = 0.0f;
    for (int c = 0; c < C; c++) {
        const float v = x[c * P + p];
        ss += v * v;
    }
    const float inv = sqrtf((float)C) / fmaxf(sqrtf(ss), 1e-12f);
    for (int c = 0; c < C; c++) {
        float v = x[c * P + p] * inv * gamma[c];
        if (silu) v = v / (1.0f + expf(-v));
        out[c * P + p] = v;
    }
}

__global__ static void k_add(float *out, const float *x, size_t n) {
    const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) out[i] += x[i];
}

__global__ static void k_clamp(float *out, const float *x, size_t n) {
    const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) out[i] = fminf(fmaxf(x[i], -1.0f), 1.0f);
}

typedef struct {
    float mean[VAE_Z_DIM], inv_std[VAE_Z_DIM];
} LatentStats;

__global__ static void k_denormalise(float *z, LatentStats s, int C, size_t P) {
    const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < (size_t)C * P) z[i] = z[i] / s.inv_std[i / P] + s.mean[i / P];
}

/* rows [P][C] = bias[C] */
__global__ static void k_fill_rows(float *out, const float *bias, int C, size_t n) {
    const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) out[i] = bias[i % C];
}

/* out[o][p] = x[o][p] + b[o] */
__global__ static void k_add_bias(float *out, const float *x, const float *b, size_t P, size_t n) {
    const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) out[i] = x[i] + b[i / P];
}

/* In place softmax of each row of s [rows][n]; one block of 256 threads per row. */
__global__ static void k_softmax_rows(float *s, int n) {
    __shared__ float red[256];
    float *row = s + (size_t)blockIdx.x * n;
    float m = -INFINITY;
    for (int j = threadIdx.x; j < n; j += blockDim.x) m = fmaxf(m, row[j]);
    red[threadIdx.x] = m;
    __syncthreads();
    for (int h = blockDim.x / 2; h > 0; h /= 2) {
        if ((int)threadIdx.x < h) red[threadIdx.x] = fmaxf(red[threadIdx.x], red[threadIdx.x + h]);
        __syncthreads();
    }
    m = red[0];
    __syncthreads();
    float sum = 0.0f;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        const float e = expf(row[j] - m);
        row[j] = e;
        sum += e;
    }
    red[threadIdx.x] = sum;
    __syncthreads();
    for (int h = blockDim.x / 2; h > 0; h /= 2) {
        if ((int)threadIdx.x < h) red[threadIdx.x] += red[threadIdx.x + h];
        __syncthreads();
    }
    const float inv = 1.0f / red[0];
    for (int j = threadIdx.x; j < n; j += blockDim.x) row[j] *= inv;
}

/* ---- the operations of models/vae/vae_backend.h ---- */

enum { THREADS = 256 };

static float *op_alloc(void *ctx, size_t floats) {
    CudaVae *c = (CudaVae *)ctx;
    float *p = NULL;
    cudaError_t rc = cudaMalloc((void **)&p, (floats ? floats : 1) * sizeof(float));
    if (rc == cudaSuccess) rc = cudaMemset(p, 0, (floats ? floats : 1) * sizeof(float));
    if (rc != cudaSuccess) {
        cudaGetLastError();
        cudaFree(p);
        note_cuda(c, rc, "allocating the decoder state");
        return NULL;
    }
    return p;
}

static void op_release(void *ctx, float *p) {
    (void)ctx;
    cudaFree(p);
}

static void op_copy(void *ctx, float *dst, const float *src, size_t n) {
    note_cuda((CudaVae *)ctx, cudaMemcpy(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice), "cache copy");
}

static void op_bias(void *ctx, float *out, const float *b, int rows, size_t n, int accumulate) {
    CudaVae *c = (CudaVae *)ctx;
    const size_t total = (size_t)rows * n;
    k_bias<<<blocks_for(total, THREADS), THREADS>>>(out, dev(c, b), n, total, accumulate);
    note_cuda(c, cudaGetLastError(), "conv bias");
}

static void op_gemm(void *ctx, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C,
                    int ldc) {
    CudaVae *c = (CudaVae *)ctx;
    gemm(c, false, false, M, N, K, 1.0f, dev(c, A), lda, B, ldb, 1.0f, C, ldc, "conv (cuBLAS)");
}

static void op_im2col(void *ctx, float *col, const float *const *taps, int k0, int kt, int cin, int H, int W,
                      int upsample, int y0, int y1) {
    /* Taps shifted so that k_im2col's tap index (k0 + shift) + tc / cin addresses them for kt 1 or 3. */
    Taps tp = {{NULL, NULL, NULL}};
    const int shift = 3 - kt;
    for (int t = 0; t < kt; t++) tp.t[t + shift] = taps[t];
    const size_t n = (size_t)(kt - k0) * cin * 9 * (size_t)(y1 - y0) * W;
    k_im2col<<<blocks_for(n, THREADS), THREADS>>>(col, tp, k0 + shift, cin, H, W, upsample, y0, y1);
    note_cuda((CudaVae *)ctx, cudaGetLastError(), "im2col");
}

static void op_rms_norm(void *ctx, float *out, const float *x, const float *gamma, int C, size_t P, float *ss,
                        int silu) {
    (void)ss;
    CudaVae *c = (CudaVae *)ctx;
    k_rms_norm<<<blocks_for(P, THREADS), THREADS>>>(out, x, dev(c, gamma), C, P, silu);
    note_cuda(c, cudaGetLastError(), "RMS norm");
}

static void op_add(void *ctx, float *out, const float *x, size_t n) {
    k_add<<<blocks_for(n, THREADS), THREADS>>>(out, x, n);
    note_cuda((CudaVae *)ctx, cudaGetLastError(), "residual add");
}

static size_t op_attention_scratch(int P, int C) {
    (void)C;
    return (size_t)P * P;
}

static void op_attention(void *ctx, const VaeBlock *k, const float *x, float *out, int P, float *xn, float *ss,
                         float *q, float *kk, float *v, float *att, float *scores) {
    (void)ss;
    CudaVae *c = (CudaVae *)ctx;
    const int C = k->cin;
    k_rms_norm<<<blocks_for((size_t)P, THREADS), THREADS>>>(xn, x, dev(c, k->gamma1), C, (size_t)P, 0);
    note_cuda(c, cudaGetLastError(), "attention norm");
    float *qkv[3] = {q, kk, v};
    const float *wqkv = dev(c, k->conv1.w), *bqkv = dev(c, k->conv1.b);
    for (int j = 0; j < 3; j++) {
        k_fill_rows<<<blocks_for((size_t)P * C, THREADS), THREADS>>>(qkv[j], bqkv + (size_t)j * C, C, (size_t)P * C);
        note_cuda(c, cudaGetLastError(), "attention qkv bias");
        gemm(c, true, true, P, C, C, 1.0f, xn, P, wqkv + (size_t)j * C * C, C, 1.0f, qkv[j], C, "attention qkv");
    }
    gemm(c, false, true, P, P, C, 1.0f / sqrtf((float)C), q, C, kk, C, 0.0f, scores, P, "attention scores");
    k_softmax_rows<<<P, 256>>>(scores, P);
    note_cuda(c, cudaGetLastError(), "attention softmax");
    gemm(c, false, false, P, C, P, 1.0f, scores, P, v, C, 0.0f, att, C, "attention values");
    k_add_bias<<<blocks_for((size_t)C * P, THREADS), THREADS>>>(out, x, dev(c, k->conv2.b), (size_t)P, (size_t)C * P);
    note_cuda(c, cudaGetLastError(), "attention residual");
    gemm(c, false, true, C, P, C, 1.0f, dev(c, k->conv2.w), C, att, C, 1.0f, out, P, "attention projection");
}

static void op_denormalise(void *ctx, float *dst, const float *host_z, int C, size_t P) {
    CudaVae *c = (CudaVae *)ctx;
    note_cuda(c, cudaMemcpy(dst, host_z, (size_t)C * P * sizeof(float), cudaMemcpyHostToDevice), "latent upload");
    LatentStats s;
    for (int i = 0; i < VAE_Z_DIM; i++) {
        s.mean[i] = VAE_LATENT_MEAN[i];
        s.inv_std[i] = 1.0f / VAE_LATENT_STD[i];
    }
    k_denormalise<<<blocks_for((size_t)C * P, THREADS), THREADS>>>(dst, s, C, P);
    note_cuda(c, cudaGetLastError(), "de-normalisation");
}

static void op_clamp_to_host(void *ctx, float *host, const float *x, size_t n) {
    CudaVae *c = (CudaVae *)ctx;
    /* x is the decoder's scratch (tmp_b), free until the next frame: clamp in place, then download. */
    k_clamp<<<blocks_for(n, THREADS), THREADS>>>((float *)x, x, n);
    note_cuda(c, cudaGetLastError(), "clamp");
    note_cuda(c, cudaMemcpy(host, x, n * sizeof(float), cudaMemcpyDeviceToHost), "frame download");
}

static int op_check(void *ctx, Error *err) {
    CudaVae *c = (CudaVae *)ctx;
    if (!c->what) return 0;
    return error_set(err, "CUDA VAE decoder: %s failed: %s", c->what, c->detail);
}

static void op_destroy(void *ctx) {
    CudaVae *c = (CudaVae *)ctx;
    if (!c) return;
    cudaFree(c->weights);
    if (c->handle) c->blas.destroy(c->handle);
    free(c);
}

static const VaeOps CUDA_OPS = {op_alloc,       op_release,   op_copy,
                                op_bias,        op_gemm,      op_im2col,
                                op_rms_norm,    op_add,       op_attention_scratch,
                                op_attention,   op_denormalise, op_clamp_to_host,
                                op_check,       op_destroy};

extern "C" int vae_decoder_new_cuda(VaeDecoder **d, const VaeModel *m, int H, int W, Error *err) {
    *d = NULL;
    CudaDeviceInfo info;
    if (cuda_device_info(&info, err)) return -1;
    CudaVae *c = (CudaVae *)calloc(1, sizeof *c);
    if (!c) return error_set(err, "out of memory");
    c->m = m;
    if (blas_load(&c->blas, err)) {
        free(c);
        return -1;
    }
    cublasStatus_t bs = c->blas.create(&c->handle);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        c->handle = NULL;
        op_destroy(c);
        return error_set(err, "cuBLAS initialisation failed on %s", info.name);
    }
    cudaError_t rc = cudaMalloc((void **)&c->weights, m->arena_floats * sizeof(float));
    if (rc == cudaSuccess)
        rc = cudaMemcpy(c->weights, m->arena, m->arena_floats * sizeof(float), cudaMemcpyHostToDevice);
    if (rc != cudaSuccess) {
        cudaGetLastError();
        op_destroy(c);
        return error_set(err, "cannot upload %zu VAE weights to %s: %s", m->arena_floats, info.name,
                         cudaGetErrorString(rc));
    }
    return vae_decoder_create(d, m, H, W, &CUDA_OPS, c, err);
}
