/* The umT5 encoder on one GPU (see models/t5/t5_cuda.h): the steps of t5_encode (models/t5/t5.c) with device
 * buffers, cuBLAS SGEMMs and a few kernels. Norms, GELU(tanh) and residual adds reuse the DiT's kernels of
 * models/cuda_kernels.cuh (same formulas as models/kernels.c); the dtype widening, gating product and biased softmax
 * are here.
 *
 * cuBLAS is dlopen'ed as models/dit/engine_cuda.cu does (a CUDA build must start without the CUDA libraries), with
 * its own minimal loader: the engine's is private to that file and loads GemmEx only, while this needs SGEMM and the
 * strided-batched SGEMM. Everything runs on the legacy default stream, so copies order with kernels and GEMMs. */
extern "C" {
#include "models/t5/t5_cuda.h"
}

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/cuda_kernels.cuh"

extern "C" {
#include "models/dit/engine_cuda.h" /* cuda_device_info: the engine's device check and its error wording */
}

#define T5_STR2(x) #x
#define T5_STR(x) T5_STR2(x)
#define T5_CUBLAS_LIBRARY "libcublas.so." T5_STR(CUBLAS_VER_MAJOR)

typedef struct {
    decltype(&cublasCreate_v2) create;
    decltype(&cublasDestroy_v2) destroy;
    decltype(&cublasSetMathMode) set_math_mode;
    decltype(&cublasGetStatusString) status_string;
    decltype(&cublasSgemm_v2) sgemm;
    decltype(&cublasSgemmStridedBatched) sgemm_batched;
} T5Blas;

typedef struct {
    T5Matrix q, k, v, o, gate, fc1, fc2;    /* data: device copies of the stored matrices */
    const float *norm1, *norm2, *rel_bias;
} DevLayer;

struct T5Cuda {
    const T5Encoder *enc;
    T5Blas api;
    cublasHandle_t blas;
    void *arena;                    /* every weight */
    DevLayer *layers;               /* host array [layers] of device pointers */
    const float *final_norm;
    float *widened;                 /* fp32 copy of the BF16/F16 matrix being multiplied (NULL when all are F32) */
    /* activations for up to cap tokens */
    int cap;
    float *x, *h, *q, *k, *v, *att, *g, *f, *y, *scores;
    int *bucket_of_rel;             /* [2 cap - 1] */
    int *host_buckets;
};

static int cuda_fail(cudaError_t rc, const char *what, Error *err) {
    cudaGetLastError(); /* clear a sticky launch error so the next call reports its own */
    return error_set(err, "CUDA umT5 encoder: %s: %s (%s)", what, cudaGetErrorName(rc), cudaGetErrorString(rc));
}

#define CU(call, what)                                                                                                \
    do {                                                                                                              \
        cudaError_t rc_ = (call);                                                                                     \
        if (rc_ != cudaSuccess) return cuda_fail(rc_, what, err);                                                     \
    } while (0)

static int load_blas(T5Blas *api, Error *err) {
    void *lib = dlopen(T5_CUBLAS_LIBRARY, RTLD_NOW | RTLD_LOCAL); /* never closed: see engine_cuda.cu */
    if (!lib) return error_set(err, "cannot load cuBLAS: %s", dlerror());
    struct {
        const char *name;
        void **slot;
    } syms[] = {{"cublasCreate_v2", (void **)&api->create},
                {"cublasDestroy_v2", (void **)&api->destroy},
                {"cublasSetMathMode", (void **)&api->set_math_mode},
                {"cublasGetStatusString", (void **)&api->status_string},
                {"cublasSgemm_v2", (void **)&api->sgemm},
                {"cublasSgemmStridedBatched", (void **)&api->sgemm_batched}};
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++)
        if (!(*syms[i].slot = dlsym(lib, syms[i].name)))
            return error_set(err, "%s: missing symbol %s", T5_CUBLAS_LIBRARY, syms[i].name);
    return 0;
}

static int blas_check(const T5Cuda *d, cublasStatus_t rc, const char *what, Error *err) {
    if (rc == CUBLAS_STATUS_SUCCESS) return 0;
    return error_set(err, "CUDA umT5 encoder: %s: %s", what, d->api.status_string(rc));
}

/* ---- kernels ---- */

enum { T5_THREADS = 256 };

static unsigned int t5_grid(size_t n) {
    size_t b = (n + T5_THREADS - 1) / T5_THREADS;
    return (unsigned int)(b < 65535 ? b : 65535);
}

/* dst = (float)src for BF16 (the upper half of an fp32) or F16. */
static __global__ void widen_kernel(float *dst, const uint16_t *src, size_t n, int is_bf16) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = is_bf16 ? __uint_as_float((unsigned int)src[i] << 16) : __half2float(__ushort_as_half(src[i]));
}

static __global__ void mul_kernel(float *a, const float *b, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        a[i] *= b[i];
}

/* Sum or max over the block (T5_THREADS threads); every thread gets the result. */
static __device__ float block_reduce(float v, float *red, bool is_max) {
    for (int o = 16; o > 0; o >>= 1) {
        float w = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? fmaxf(v, w) : v + w;
    }
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    if (threadIdx.x < 32) {
        v = threadIdx.x < T5_THREADS / 32 ? red[threadIdx.x] : (is_max ? -INFINITY : 0.0f);
        for (int o = 16; o > 0; o >>= 1) {
            float w = __shfl_xor_sync(0xffffffffu, v, o);
            v = is_max ? fmaxf(v, w) : v + w;
        }
        if (threadIdx.x == 0) red[0] = v;
    }
    __syncthreads();
    v = red[0];
    __syncthreads(); /* red is reused by the next reduction */
    return v;
}

/* Row i of head h (block (i, h)): s = softmax_j(s + bias[bucket(j - i)][h]) in place, as self_attention in t5.c. */
static __global__ void biased_softmax_kernel(float *scores, const float *rel_bias, const int *bucket_of_rel, int n,
                                             int heads) {
    __shared__ float red[32];
    const int i = blockIdx.x, h = blockIdx.y;
    float *row = scores + ((size_t)h * n + i) * n;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        row[j] += rel_bias[bucket_of_rel[j - i + n - 1] * heads + h];
        mx = fmaxf(mx, row[j]);
    }
    mx = block_reduce(mx, red, true);
    float sum = 0.0f;
    for (int j = threadIdx.x; j < n; j += blockDim.x) sum += row[j] = expf(row[j] - mx);
    sum = block_reduce(sum, red, false);
    for (int j = threadIdx.x; j < n; j += blockDim.x) row[j] /= sum;
}

/* ---- opening ---- */

static size_t aligned(size_t bytes) { return (bytes + 255) & ~(size_t)255; }

static size_t dtype_bytes(StDtype t) { return t == ST_F32 ? 4 : 2; }

static size_t matrix_bytes(const T5Matrix *m) { return (size_t)m->rows * m->cols * dtype_bytes(m->dtype); }

/* Copies size bytes from src to the arena at *offset (advanced); returns the device address. */
static void *place(char *arena, size_t *offset, const void *src, size_t size, Error *err, int *rc) {
    void *dst = arena + *offset;
    *offset += aligned(size);
    if (*rc == 0) {
        cudaError_t e = cudaMemcpy(dst, src, size, cudaMemcpyHostToDevice);
        if (e != cudaSuccess) *rc = cuda_fail(e, "uploading the weights", err);
    }
    return dst;
}

static T5Matrix place_matrix(char *arena, size_t *offset, const T5Matrix *m, Error *err, int *rc) {
    T5Matrix d = *m;
    d.data = place(arena, offset, m->data, matrix_bytes(m), err, rc);
    return d;
}

extern "C" int t5_cuda_open(T5Cuda **out, const T5Encoder *enc, Error *err) {
    *out = NULL;
    const T5Config *c = &enc->cfg;
    if (c->dim % 2) /* cuda_rmsnorm_rope works on pairs */
        return error_set(err, "CUDA umT5 encoder: dim %d is odd (the CUDA norm kernel needs an even dim)", c->dim);
    CudaDeviceInfo info;
    if (cuda_device_info(&info, err)) return -1;
    if (info.major < 8) /* the kernels are compiled for sm_80, sm_90 and newer (models/cuda.mk) */
        return error_set(err, "CUDA device %s has compute capability %d.%d; the CUDA umT5 encoder needs 8.0 or newer",
                         info.name, info.major, info.minor);
    T5Cuda *d = (T5Cuda *)calloc(1, sizeof *d);
    if (!d) return error_set(err, "out of memory");
    d->enc = enc;
    d->layers = (DevLayer *)calloc((size_t)c->layers, sizeof *d->layers);
    if (!d->layers) {
        free(d);
        return error_set(err, "out of memory");
    }
    int rc = load_blas(&d->api, err);
    if (rc == 0) rc = blas_check(d, d->api.create(&d->blas), "cublasCreate", err);
    if (rc == 0) rc = blas_check(d, d->api.set_math_mode(d->blas, CUBLAS_DEFAULT_MATH), "cublasSetMathMode", err);

    size_t total = aligned((size_t)c->dim * sizeof(float)), widest = 0;
    const size_t vec = aligned((size_t)c->dim * sizeof(float)),
                 bias = aligned((size_t)c->buckets * c->heads * sizeof(float));
    for (int l = 0; l < c->layers; l++) {
        const T5Layer *L = &enc->layers[l];
        const T5Matrix *mats[7] = {&L->q, &L->k, &L->v, &L->o, &L->gate, &L->fc1, &L->fc2};
        for (int m = 0; m < 7; m++) {
            total += aligned(matrix_bytes(mats[m]));
            size_t floats = (size_t)mats[m]->rows * mats[m]->cols;
            if (mats[m]->dtype != ST_F32 && floats > widest) widest = floats;
        }
        total += 2 * vec + bias;
    }
    if (rc == 0 && cudaMalloc(&d->arena, total) != cudaSuccess) {
        cudaGetLastError();
        rc = error_set(err, "CUDA umT5 encoder: %.2f GB of weights do not fit on %s (%.2f GB of memory)", total / 1e9,
                       info.name, info.total_bytes / 1e9);
    }
    if (rc == 0 && widest && cudaMalloc((void **)&d->widened, widest * sizeof(float)) != cudaSuccess) {
        cudaGetLastError();
        rc = error_set(err, "CUDA umT5 encoder: no room for the %.0f MB fp32 weight scratch on %s after %.2f GB of "
                            "weights", widest * 4 / 1e6, info.name, total / 1e9);
    }
    if (rc == 0) {
        size_t offset = 0;
        char *arena = (char *)d->arena;
        for (int l = 0; l < c->layers; l++) {
            const T5Layer *L = &enc->layers[l];
            DevLayer *D = &d->layers[l];
            D->q = place_matrix(arena, &offset, &L->q, err, &rc);
            D->k = place_matrix(arena, &offset, &L->k, err, &rc);
            D->v = place_matrix(arena, &offset, &L->v, err, &rc);
            D->o = place_matrix(arena, &offset, &L->o, err, &rc);
            D->gate = place_matrix(arena, &offset, &L->gate, err, &rc);
            D->fc1 = place_matrix(arena, &offset, &L->fc1, err, &rc);
            D->fc2 = place_matrix(arena, &offset, &L->fc2, err, &rc);
            D->norm1 = (const float *)place(arena, &offset, L->norm1, (size_t)c->dim * sizeof(float), err, &rc);
            D->norm2 = (const float *)place(arena, &offset, L->norm2, (size_t)c->dim * sizeof(float), err, &rc);
            D->rel_bias = (const float *)place(arena, &offset, L->rel_bias,
                                               (size_t)c->buckets * c->heads * sizeof(float), err, &rc);
        }
        d->final_norm = (const float *)place(arena, &offset, enc->final_norm, (size_t)c->dim * sizeof(float), err,
                                             &rc);
    }
    if (rc) {
        t5_cuda_close(d);
        return -1;
    }
    *out = d;
    return 0;
}

static void free_activations(T5Cuda *d) {
    float **bufs[] = {&d->x, &d->h, &d->q, &d->k, &d->v, &d->att, &d->g, &d->f, &d->y, &d->scores};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        cudaFree(*bufs[i]);
        *bufs[i] = NULL;
    }
    cudaFree(d->bucket_of_rel);
    d->bucket_of_rel = NULL;
    free(d->host_buckets);
    d->host_buckets = NULL;
    d->cap = 0;
}

extern "C" void t5_cuda_close(T5Cuda *d) {
    if (!d) return;
    free_activations(d);
    cudaFree(d->widened);
    cudaFree(d->arena);
    if (d->blas) d->api.destroy(d->blas);
    free(d->layers);
    free(d);
}

static int reserve(T5Cuda *d, int n, Error *err) {
    if (n <= d->cap) return 0;
    free_activations(d);
    const T5Config *c = &d->enc->cfg;
    const size_t nd = (size_t)n * c->dim, na = (size_t)n * c->dim_attn, nf = (size_t)n * c->dim_ffn;
    struct {
        float **buf;
        size_t floats;
    } want[] = {{&d->x, nd},      {&d->h, nd},   {&d->y, nd}, {&d->q, na},
                {&d->k, na},      {&d->v, na},   {&d->att, na}, {&d->g, nf},
                {&d->f, nf},      {&d->scores, (size_t)c->heads * n * n}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        cudaError_t e = cudaMalloc((void **)want[i].buf, want[i].floats * sizeof(float));
        if (e != cudaSuccess) {
            free_activations(d);
            return cuda_fail(e, "allocating the activations", err);
        }
    }
    cudaError_t e = cudaMalloc((void **)&d->bucket_of_rel, (size_t)(2 * n - 1) * sizeof(int));
    d->host_buckets = (int *)malloc((size_t)(2 * n - 1) * sizeof(int));
    if (e != cudaSuccess || !d->host_buckets) {
        free_activations(d);
        return e != cudaSuccess ? cuda_fail(e, "allocating the activations", err) : error_set(err, "out of memory");
    }
    d->cap = n;
    return 0;
}

/* ---- forward ---- */

/* out[M][N] = in[M][K] . W[N][K]^T, row-major, as t5_matmul: column-major out^T (N x M) = W^T(K x N)^T in^T. */
static int matmul(T5Cuda *d, float *out, const float *in, const T5Matrix *w, int M, const char *what, Error *err) {
    const float *weight = (const float *)w->data;
    if (w->dtype != ST_F32) {
        size_t n = (size_t)w->rows * w->cols;
        widen_kernel<<<t5_grid(n), T5_THREADS>>>(d->widened, (const uint16_t *)w->data, n, w->dtype == ST_BF16);
        CU(cudaGetLastError(), what);
        weight = d->widened;
    }
    const float one = 1.0f, zero = 0.0f;
    return blas_check(d, d->api.sgemm(d->blas, CUBLAS_OP_T, CUBLAS_OP_N, w->rows, M, w->cols, &one, weight, w->cols,
                                      in, w->cols, &zero, out, w->rows),
                      what, err);
}

/* att[i] = softmax_j(q_i . k_j + bias) v per head; q, k, v, att: [n][heads hd] (row stride heads hd). */
static int attention(T5Cuda *d, const DevLayer *L, int n, Error *err) {
    const T5Config *c = &d->enc->cfg;
    const int heads = c->heads, hd = c->dim_attn / heads, stride = c->dim_attn;
    const float one = 1.0f, zero = 0.0f;
    /* scores_h, row-major [n][n], is column-major S^T = K_h^T Q_h (K_h, Q_h: column-major hd x n, ld stride) */
    if (blas_check(d, d->api.sgemm_batched(d->blas, CUBLAS_OP_T, CUBLAS_OP_N, n, n, hd, &one, d->k, stride, hd, d->q,
                                           stride, hd, &zero, d->scores, n, (long long)n * n, heads),
                   "attention scores", err))
        return -1;
    biased_softmax_kernel<<<dim3((unsigned)n, (unsigned)heads), T5_THREADS>>>(d->scores, L->rel_bias,
                                                                              d->bucket_of_rel, n, heads);
    CU(cudaGetLastError(), "attention softmax");
    /* att_h column-major (hd x n, ld stride) = V_h (hd x n, ld stride) P^T, P^T being row-major P seen column-major */
    return blas_check(d, d->api.sgemm_batched(d->blas, CUBLAS_OP_N, CUBLAS_OP_N, hd, n, n, &one, d->v, stride, hd,
                                              d->scores, n, (long long)n * n, &zero, d->att, stride, hd, heads),
                      "attention output", err);
}

extern "C" int t5_cuda_encode(T5Cuda *d, const int *ids, int n, float *out, Error *err) {
    const T5Config *c = &d->enc->cfg;
    if (t5_embed(d->enc, ids, n, out, err)) return -1; /* checks the ids; the embedding stays on the host */
    if (reserve(d, n, err)) return -1;
    const size_t nd = (size_t)n * c->dim, nf = (size_t)n * c->dim_ffn;
    for (int r = -(n - 1); r <= n - 1; r++)
        d->host_buckets[r + n - 1] = t5_relative_bucket(r, c->buckets, T5_MAX_DISTANCE);
    CU(cudaMemcpy(d->bucket_of_rel, d->host_buckets, (size_t)(2 * n - 1) * sizeof(int), cudaMemcpyHostToDevice),
       "uploading the relative buckets");
    CU(cudaMemcpy(d->x, out, nd * sizeof(float), cudaMemcpyHostToDevice), "uploading the token embeddings");
    for (int l = 0; l < c->layers; l++) {
        const DevLayer *L = &d->layers[l];
        CU(cuda_rmsnorm_rope<float>(d->h, d->x, L->norm1, NULL, NULL, n, c->dim, c->dim, T5_NORM_EPS, 0), "norm1");
        if (matmul(d, d->q, d->h, &L->q, n, "q", err) || matmul(d, d->k, d->h, &L->k, n, "k", err) ||
            matmul(d, d->v, d->h, &L->v, n, "v", err) || attention(d, L, n, err) ||
            matmul(d, d->y, d->att, &L->o, n, "o", err))
            return error_prefix(err, "layer %d", l);
        CU(cuda_add(d->x, d->x, d->y, nd, 0), "attention residual");
        CU(cuda_rmsnorm_rope<float>(d->h, d->x, L->norm2, NULL, NULL, n, c->dim, c->dim, T5_NORM_EPS, 0), "norm2");
        if (matmul(d, d->g, d->h, &L->gate, n, "gate", err) || matmul(d, d->f, d->h, &L->fc1, n, "fc1", err))
            return error_prefix(err, "layer %d", l);
        CU(cuda_gelu_tanh<float>(d->g, d->g, nf, 0), "gelu");
        mul_kernel<<<t5_grid(nf), T5_THREADS>>>(d->g, d->f, nf);
        CU(cudaGetLastError(), "gating");
        if (matmul(d, d->y, d->g, &L->fc2, n, "fc2", err)) return error_prefix(err, "layer %d", l);
        CU(cuda_add(d->x, d->x, d->y, nd, 0), "ffn residual");
    }
    CU(cuda_rmsnorm_rope<float>(d->h, d->x, d->final_norm, NULL, NULL, n, c->dim, c->dim, T5_NORM_EPS, 0),
       "final norm");
    /* synchronous: also reports a failure of any kernel queued before it */
    CU(cudaMemcpy(out, d->h, nd * sizeof(float), cudaMemcpyDeviceToHost), "downloading the output");
    return 0;
}
