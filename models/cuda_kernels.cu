/* CUDA kernels of the DiT: the same math as models/kernels.c and the loops of models/dit/dit.c (see cuda_kernels.cuh).
 *
 * Written for clarity first; the GEMMs (cuBLAS) and attention carry the FLOPs, everything else here is a memory-bound
 * pass. Division and square roots use the IEEE-rounded operators (nvcc's default -prec-div/-prec-sqrt), and expf/exp2f
 * the accurate library versions (no --use_fast_math), so that fp32 mode agrees with the CPU to ~1e-6. */
#include "models/cuda_kernels.cuh"

#include <math.h>
#include <stdint.h>

/* ---------------------------------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------------------------------- */

enum { THREADS = 256 };

/* Enough blocks for a grid-stride loop over n items: one item per thread up to a cap, then each thread loops. */
static unsigned int grid_for(size_t n) {
    size_t b = (n + THREADS - 1) / THREADS;
    const size_t cap = (size_t)1 << 20;
    return (unsigned int)(b == 0 ? 1 : b < cap ? b : cap);
}

static __device__ __forceinline__ float load_f(const float *p) { return *p; }
static __device__ __forceinline__ float load_f(const bf16 *p) { return __bfloat162float(*p); }
static __device__ __forceinline__ void store_f(float *p, float v) { *p = v; }
static __device__ __forceinline__ void store_f(bf16 *p, float v) { *p = __float2bfloat16_rn(v); }

static __device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the total. `red` is 32 floats of
 * shared memory; the leading barrier lets a block call this twice in a row with the same `red`. */
static __device__ float block_sum(float v, float *red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    return warp_sum(lane < warps ? red[lane] : 0.0f);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Element-wise
 * ------------------------------------------------------------------------------------------------------------- */

#define GRID_STRIDE(i, n) \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (size_t)blockDim.x * gridDim.x)

static __global__ void fill_rows_kernel(float *out, const float *row, size_t total, int n) {
    GRID_STRIDE(i, total) out[i] = row[i % (size_t)n];
}

cudaError_t cuda_fill_rows(float *out, const float *row, size_t rows, int n, cudaStream_t st) {
    const size_t total = rows * (size_t)n;
    if (total == 0) return cudaSuccess;
    fill_rows_kernel<<<grid_for(total), THREADS, 0, st>>>(out, row, total, n);
    return cudaGetLastError();
}

template <typename T> static __global__ void convert_kernel(T *out, const float *in, size_t n) {
    GRID_STRIDE(i, n) store_f(out + i, in[i]);
}

template <typename T> cudaError_t cuda_convert(T *out, const float *in, size_t n, cudaStream_t st) {
    if (n == 0) return cudaSuccess;
    convert_kernel<T><<<grid_for(n), THREADS, 0, st>>>(out, in, n);
    return cudaGetLastError();
}

template <typename T> static __global__ void silu_kernel(T *out, const float *in, size_t n) {
    GRID_STRIDE(i, n) {
        const float x = in[i];
        store_f(out + i, x / (1.0f + expf(-x)));
    }
}

/* 0.5 x (1 + tanh(u)) written as x / (1 + exp(-2u)), exactly as models/kernels.c. */
template <typename T> static __global__ void gelu_tanh_kernel(T *out, const float *in, size_t n) {
    const float k0 = 0.7978845608028654f; /* sqrt(2/pi) */
    GRID_STRIDE(i, n) {
        const float v = in[i];
        const float u = k0 * (v + 0.044715f * v * v * v);
        store_f(out + i, v / (1.0f + expf(-2.0f * u)));
    }
}

template <typename T> cudaError_t cuda_silu(T *out, const float *in, size_t n, cudaStream_t st) {
    if (n == 0) return cudaSuccess;
    silu_kernel<T><<<grid_for(n), THREADS, 0, st>>>(out, in, n);
    return cudaGetLastError();
}

template <typename T> cudaError_t cuda_gelu_tanh(T *out, const float *in, size_t n, cudaStream_t st) {
    if (n == 0) return cudaSuccess;
    gelu_tanh_kernel<T><<<grid_for(n), THREADS, 0, st>>>(out, in, n);
    return cudaGetLastError();
}

static __global__ void add_kernel(float *out, const float *a, const float *b, size_t n, float sign) {
    GRID_STRIDE(i, n) out[i] = a[i] + sign * b[i]; /* sign is +-1: the product is exact, so this is a + b or a - b */
}

cudaError_t cuda_add(float *out, const float *a, const float *b, size_t n, cudaStream_t st) {
    if (n == 0) return cudaSuccess;
    add_kernel<<<grid_for(n), THREADS, 0, st>>>(out, a, b, n, 1.0f);
    return cudaGetLastError();
}

cudaError_t cuda_sub(float *out, const float *a, const float *b, size_t n, cudaStream_t st) {
    if (n == 0) return cudaSuccess;
    add_kernel<<<grid_for(n), THREADS, 0, st>>>(out, a, b, n, -1.0f);
    return cudaGetLastError();
}

static __global__ void gated_residual_kernel(float *x, const float *y, const float *gate, size_t total, int dim) {
    GRID_STRIDE(i, total) x[i] += gate ? y[i] * gate[i % (size_t)dim] : y[i];
}

cudaError_t cuda_gated_residual(float *x, const float *y, const float *gate, int rows, int dim, cudaStream_t st) {
    const size_t total = (size_t)rows * (size_t)dim;
    if (total == 0) return cudaSuccess;
    gated_residual_kernel<<<grid_for(total), THREADS, 0, st>>>(x, y, gate, total, dim);
    return cudaGetLastError();
}

static __global__ void head_modulation_kernel(float *shift, float *scale, const float *hm, const float *e, int dim) {
    GRID_STRIDE(i, (size_t)dim) {
        shift[i] = hm[i] + e[i];
        scale[i] = hm[dim + i] + e[i];
    }
}

cudaError_t cuda_head_modulation(float *shift, float *scale, const float *head_mod, const float *e, int dim,
                                 cudaStream_t st) {
    if (dim <= 0) return cudaSuccess;
    head_modulation_kernel<<<grid_for((size_t)dim), THREADS, 0, st>>>(shift, scale, head_mod, e, dim);
    return cudaGetLastError();
}

/* ---------------------------------------------------------------------------------------------------------------
 * Norms (one block per row)
 * ------------------------------------------------------------------------------------------------------------- */

template <typename T>
static __global__ void layernorm_modulate_kernel(T *out, const float *in, const float *weight, const float *bias,
                                                 const float *shift, const float *scale, int dim, float eps) {
    __shared__ float red[32];
    const float *x = in + (size_t)blockIdx.x * dim;
    T *o = out + (size_t)blockIdx.x * dim;
    /* Two passes, like the CPU: E[x^2] - E[x]^2 cancels catastrophically when |mean| >> std. */
    float s = 0.0f;
    for (int d = threadIdx.x; d < dim; d += blockDim.x) s += x[d];
    const float mean = block_sum(s, red) / (float)dim;
    float sq = 0.0f;
    for (int d = threadIdx.x; d < dim; d += blockDim.x) sq += (x[d] - mean) * (x[d] - mean);
    const float rstd = 1.0f / sqrtf(block_sum(sq, red) / (float)dim + eps);
    for (int d = threadIdx.x; d < dim; d += blockDim.x) {
        float y = (x[d] - mean) * rstd;
        if (weight) y = y * weight[d];
        if (bias) y = y + bias[d];
        if (scale) y = y * (1.0f + scale[d]) + shift[d];
        store_f(o + d, y);
    }
}

template <typename T>
cudaError_t cuda_layernorm_modulate(T *out, const float *in, const float *weight, const float *bias, const float *shift,
                                    const float *scale, int rows, int dim, float eps, cudaStream_t st) {
    if (rows <= 0 || dim <= 0) return cudaSuccess;
    layernorm_modulate_kernel<T><<<rows, THREADS, 0, st>>>(out, in, weight, bias, shift, scale, dim, eps);
    return cudaGetLastError();
}

/* Each thread owns whole (even, odd) pairs, so the RoPE rotation needs no communication. */
template <typename T>
static __global__ void rmsnorm_rope_kernel(T *out, const float *in, const float *weight, const float *cos_t,
                                           const float *sin_t, int dim, int head_dim, float eps) {
    __shared__ float red[32];
    const size_t row = blockIdx.x;
    const float *x = in + row * dim;
    T *o = out + row * dim;
    float sq = 0.0f;
    for (int d = threadIdx.x; d < dim; d += blockDim.x) sq += x[d] * x[d];
    const float rs = 1.0f / sqrtf(block_sum(sq, red) / (float)dim + eps);
    const int half = head_dim / 2;
    for (int p = threadIdx.x; p < dim / 2; p += blockDim.x) {
        const int d = 2 * p;
        float re = x[d] * rs, im = x[d + 1] * rs;
        if (weight) {
            re = re * weight[d];
            im = im * weight[d + 1];
        }
        if (cos_t) {
            const int j = p % half; /* pair index within the head: (d % head_dim) / 2 */
            const float c = cos_t[row * half + j], s = sin_t[row * half + j];
            const float r2 = re * c - im * s, i2 = re * s + im * c;
            re = r2, im = i2;
        }
        store_f(o + d, re);
        store_f(o + d + 1, im);
    }
}

template <typename T>
cudaError_t cuda_rmsnorm_rope(T *out, const float *in, const float *weight, const float *cos_t, const float *sin_t,
                              int rows, int dim, int head_dim, float eps, cudaStream_t st) {
    if (rows <= 0 || dim <= 0) return cudaSuccess;
    if (dim % 2 || head_dim % 2 || dim % head_dim) return cudaErrorInvalidValue;
    rmsnorm_rope_kernel<T><<<rows, THREADS, 0, st>>>(out, in, weight, cos_t, sin_t, dim, head_dim, eps);
    return cudaGetLastError();
}

/* ---------------------------------------------------------------------------------------------------------------
 * Patches (index maps of models/dit/dit.c patchify / unpatchify, one thread per patch element)
 * ------------------------------------------------------------------------------------------------------------- */

template <typename T>
static __global__ void patchify_kernel(T *patches, const float *x, int C, int F, int H, int W, int pt, int ph, int pw,
                                       size_t total) {
    const int th = H / ph, tw = W / pw, P = pt * ph * pw;
    GRID_STRIDE(i, total) {
        const size_t l = i / ((size_t)C * P);
        const int rem = (int)(i % ((size_t)C * P));
        const int ch = rem / P, a = rem % P / (ph * pw), b = rem / pw % ph, c = rem % pw;
        const int fi = (int)(l / ((size_t)th * tw)), hi = (int)(l / tw % th), wi = (int)(l % tw);
        const size_t src = (((size_t)ch * F + fi * pt + a) * H + hi * ph + b) * W + wi * pw + c;
        store_f(patches + i, x[src]);
    }
}

template <typename T>
cudaError_t cuda_patchify(T *patches, const float *x, int C, int F, int H, int W, int pt, int ph, int pw,
                          cudaStream_t st) {
    const size_t total = (size_t)C * F * H * W;
    if (total == 0) return cudaSuccess;
    patchify_kernel<T><<<grid_for(total), THREADS, 0, st>>>(patches, x, C, F, H, W, pt, ph, pw, total);
    return cudaGetLastError();
}

static __global__ void unpatchify_kernel(float *out, const float *patches, int C, int F, int H, int W, int pt, int ph,
                                         int pw, size_t total) {
    const int th = H / ph, tw = W / pw, P = pt * ph * pw;
    GRID_STRIDE(i, total) {
        const size_t l = i / ((size_t)C * P);
        const int rem = (int)(i % ((size_t)C * P));
        const int a = rem / (ph * pw * C), b = rem / (pw * C) % ph, dw = rem / C % pw, ch = rem % C;
        const int fi = (int)(l / ((size_t)th * tw)), hi = (int)(l / tw % th), wi = (int)(l % tw);
        out[(((size_t)ch * F + fi * pt + a) * H + hi * ph + b) * W + wi * pw + dw] = patches[i];
    }
}

cudaError_t cuda_unpatchify(float *out, const float *patches, int C, int F, int H, int W, int pt, int ph, int pw,
                            cudaStream_t st) {
    const size_t total = (size_t)C * F * H * W;
    if (total == 0) return cudaSuccess;
    unpatchify_kernel<<<grid_for(total), THREADS, 0, st>>>(out, patches, C, F, H, W, pt, ph, pw, total);
    return cudaGetLastError();
}

/* ---------------------------------------------------------------------------------------------------------------
 * Sampler update and reductions
 * ------------------------------------------------------------------------------------------------------------- */

/* The guided velocity with every operation rounded on its own (__f*_rn are never contracted into an FMA), which is
 * what the CPU build computes, so both backends agree bit for bit on the update. */
static __device__ __forceinline__ float guided(const float *vc, const float *vu, float g, size_t i) {
    return vu ? __fadd_rn(vu[i], __fmul_rn(g, __fsub_rn(vc[i], vu[i]))) : vc[i];
}

static __global__ void x0_to_velocity_kernel(float *out, const float *x, float sigma, size_t n) {
    GRID_STRIDE(i, n) out[i] = (x[i] - out[i]) / sigma;
}

cudaError_t cuda_x0_to_velocity(float *out, const float *x, float sigma, size_t n, cudaStream_t st) {
    if (n == 0) return cudaSuccess;
    x0_to_velocity_kernel<<<grid_for(n), THREADS, 0, st>>>(out, x, sigma, n);
    return cudaGetLastError();
}

static __global__ void guide_kernel(float *out, unsigned long long *bad, const float *vc, const float *vu, float g,
                                    size_t n) {
    unsigned int count = 0;
    GRID_STRIDE(i, n) {
        const float v = guided(vc, vu, g, i);
        count += isfinite(v) ? 0u : 1u;
        out[i] = v;
    }
    for (int o = 16; o > 0; o >>= 1) count += __shfl_xor_sync(0xffffffffu, count, o);
    if ((threadIdx.x & 31) == 0 && count) atomicAdd(bad, (unsigned long long)count); /* integers: order-free */
}

static __global__ void axpby_kernel(float *out, float a, const float *x, float b, const float *y, size_t n) {
    GRID_STRIDE(i, n) out[i] = __fadd_rn(__fmul_rn(a, x[i]), __fmul_rn(b, y[i]));
}

cudaError_t cuda_guide(float *out, unsigned long long *bad, const float *vc, const float *vu, float g, size_t n,
                       cudaStream_t st) {
    if (n == 0) return cudaSuccess;
    guide_kernel<<<grid_for(n), THREADS, 0, st>>>(out, bad, vc, vu, g, n);
    return cudaGetLastError();
}

cudaError_t cuda_axpby(float *out, float a, const float *x, float b, const float *y, size_t n, cudaStream_t st) {
    if (n == 0) return cudaSuccess;
    axpby_kernel<<<grid_for(n), THREADS, 0, st>>>(out, a, x, b, y, n);
    return cudaGetLastError();
}

/* Fixed-shape tree in shared memory: the same inputs always add in the same order. */
static __device__ double block_sum_double(double v, double *red) {
    red[threadIdx.x] = v;
    __syncthreads();
    for (int w = THREADS / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) red[threadIdx.x] += red[threadIdx.x + w];
        __syncthreads();
    }
    return red[0];
}

static __global__ void sum_abs_kernel(double *partials, const float *a, const float *b, size_t n) {
    __shared__ double red[THREADS];
    double s = 0.0;
    if (b) {
        GRID_STRIDE(i, n) s += fabs((double)a[i] - (double)b[i]);
    } else {
        GRID_STRIDE(i, n) s += fabs((double)a[i]);
    }
    const double total = block_sum_double(s, red);
    if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

static __global__ void sum_partials_kernel(double *result, const double *partials) {
    __shared__ double red[THREADS];
    double s = 0.0;
    for (int i = threadIdx.x; i < CUDA_SUM_PARTIALS; i += THREADS) s += partials[i];
    const double total = block_sum_double(s, red);
    if (threadIdx.x == 0) *result = total;
}

cudaError_t cuda_sum_abs(double *result, double *partials, const float *a, const float *b, size_t n, cudaStream_t st) {
    sum_abs_kernel<<<CUDA_SUM_PARTIALS, THREADS, 0, st>>>(partials, a, b, n);
    sum_partials_kernel<<<1, THREADS, 0, st>>>(result, partials);
    return cudaGetLastError();
}

/* ---------------------------------------------------------------------------------------------------------------
 * Attention, simple: CUDA cores, FP32 math
 *
 * One block of 4 warps per (tile of 64 query rows, head); each warp owns 16 query rows. Keys stream through shared
 * memory 32 at a time. For a key tile, lane j computes the scores of key j against the warp's 16 rows (K row j from
 * shared memory, Q rows broadcast), the rows' running max and sum are updated with warp shuffles (online softmax),
 * the probabilities go to a per-warp 16 x 32 block of shared memory, and lane j accumulates output dims j, j+32, ...
 * of the 16 rows. Shared memory: Q 64 x hd, K 32 x (hd+4) (padded: conflict-free float4 reads by 32 lanes on 32
 * rows), V 32 x hd, P 4 x 16 x 32 floats: 74 KiB at hd = 128.
 *
 * The dense kernel and the Sparse VideoGen kernel share the pieces below; they differ only in which rows they load
 * (a row map: tile row -> token row, < 0 for none) and which (query, key) pairs they keep.
 * ------------------------------------------------------------------------------------------------------------- */

enum { SA_BQ = 64, SA_BK = 32, SA_WARPS = 4, SA_ROWS = 16 };
static_assert((int)SA_BQ == (int)SVG_TILE, "the sparse kernel's query tiles must be models/svg_grid.h's, whose key sets it runs");

static size_t attention_simple_smem(int hd) {
    return ((size_t)SA_BQ * hd + (size_t)SA_BK * (hd + 4) + (size_t)SA_BK * hd + SA_WARPS * SA_ROWS * SA_BK) *
           sizeof(float);
}

typedef struct {
    float *Qs;  /* [SA_BQ][hd] */
    float *Ks;  /* [SA_BK][kst] */
    float *Vs;  /* [SA_BK][hd] */
    float *Pw;  /* this warp's [SA_ROWS][SA_BK] */
    const float *Qw; /* this warp's first query row in Qs */
    int kst;
} SaTiles;

static __device__ SaTiles sa_tiles(float *smem, int hd, int warp) {
    SaTiles s;
    s.kst = hd + 4;
    s.Qs = smem;
    s.Ks = s.Qs + SA_BQ * hd;
    s.Vs = s.Ks + SA_BK * s.kst;
    s.Pw = s.Vs + SA_BK * hd + warp * SA_ROWS * SA_BK;
    s.Qw = s.Qs + warp * SA_ROWS * hd;
    return s;
}

/* Qs row r = q row row_of(r) (zeros when < 0: padding rows, unused). */
template <typename T, typename RowOf>
static __device__ void sa_load_q(const SaTiles &s, const T *q, size_t ld, size_t col, int hd, RowOf row_of) {
    for (int i = threadIdx.x; i < SA_BQ * hd; i += blockDim.x) {
        const int r = i / hd, d = i - r * hd, t = row_of(r);
        s.Qs[i] = t >= 0 ? load_f(q + (size_t)t * ld + col + d) : 0.0f;
    }
}

/* Ks, Vs row r = k, v row row_of(r); zeros when < 0 (0 * garbage could be NaN). Between two __syncthreads(). */
template <typename T, typename RowOf>
static __device__ void sa_load_kv(const SaTiles &s, const T *k, const T *v, size_t ld, size_t col, int hd,
                                  RowOf row_of) {
    for (int i = threadIdx.x; i < SA_BK * hd; i += blockDim.x) {
        const int r = i / hd, d = i - r * hd, t = row_of(r);
        const size_t g = (size_t)t * ld + col + d;
        s.Ks[r * s.kst + d] = t >= 0 ? load_f(k + g) : 0.0f;
        s.Vs[i] = t >= 0 ? load_f(v + g) : 0.0f;
    }
}

/* The warp's 16 rows against the K/V tile in shared memory: scores, the online-softmax update in base 2
 * (scale_log2 = log2(e) / sqrt(hd)) and the PV accumulation. keep(r) says whether the warp's row r attends this lane's
 * key. A row that has kept no key yet has m = -inf: p is then 0 and alpha 1, never exp2f(-inf - -inf) = NaN. */
template <int CH, typename Keep>
static __device__ __forceinline__ void sa_tile_step(const SaTiles &s, int hd, int lane, float scale_log2, Keep keep,
                                                    float (&o)[SA_ROWS][CH], float (&m)[SA_ROWS],
                                                    float (&l)[SA_ROWS]) {
    float sc[SA_ROWS];
#pragma unroll
    for (int r = 0; r < SA_ROWS; r++) sc[r] = 0.0f;
    const float *kr = s.Ks + lane * s.kst;
    for (int d = 0; d < hd; d += 4) {
        const float4 kv = *(const float4 *)(kr + d);
#pragma unroll
        for (int r = 0; r < SA_ROWS; r++) {
            const float4 qv = *(const float4 *)(s.Qw + r * hd + d);
            sc[r] += qv.x * kv.x + qv.y * kv.y + qv.z * kv.z + qv.w * kv.w;
        }
    }
#pragma unroll
    for (int r = 0; r < SA_ROWS; r++) {
        const float sr = keep(r) ? sc[r] * scale_log2 : -INFINITY;
        const float mnew = fmaxf(m[r], warp_max(sr));
        const float p = sr == -INFINITY ? 0.0f : exp2f(sr - mnew);
        const float alpha = mnew == -INFINITY ? 1.0f : exp2f(m[r] - mnew);
        l[r] = l[r] * alpha + warp_sum(p);
        m[r] = mnew;
#pragma unroll
        for (int c = 0; c < CH; c++) o[r][c] *= alpha;
        s.Pw[r * SA_BK + lane] = p;
    }
    __syncwarp();

    for (int j = 0; j < SA_BK; j += 4) {
        float vv[4][CH];
#pragma unroll
        for (int t = 0; t < 4; t++)
#pragma unroll
            for (int c = 0; c < CH; c++) {
                const int d = lane + 32 * c;
                vv[t][c] = d < hd ? s.Vs[(j + t) * hd + d] : 0.0f;
            }
#pragma unroll
        for (int r = 0; r < SA_ROWS; r++) {
            const float4 p4 = *(const float4 *)(s.Pw + r * SA_BK + j);
#pragma unroll
            for (int c = 0; c < CH; c++)
                o[r][c] += p4.x * vv[0][c] + p4.y * vv[1][c] + p4.z * vv[2][c] + p4.w * vv[3][c];
        }
    }
    __syncwarp(); /* Pw is rewritten by the next tile */
}

template <int CH>
static __device__ __forceinline__ void sa_init(float (&o)[SA_ROWS][CH], float (&m)[SA_ROWS], float (&l)[SA_ROWS]) {
#pragma unroll
    for (int r = 0; r < SA_ROWS; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
#pragma unroll
        for (int c = 0; c < CH; c++) o[r][c] = 0.0f;
    }
}

/* out row row_of(r) = o[r] / l[r] for the warp's rows r (skipped when row_of(r) < 0). */
template <int CH, typename T, typename RowOf>
static __device__ __forceinline__ void sa_store(T *out, size_t ld, size_t col, int hd, int lane,
                                                const float (&o)[SA_ROWS][CH], const float (&l)[SA_ROWS],
                                                RowOf row_of) {
#pragma unroll
    for (int r = 0; r < SA_ROWS; r++) {
        const int row = row_of(r);
        if (row < 0) continue;
        const float inv = 1.0f / l[r];
#pragma unroll
        for (int c = 0; c < CH; c++) {
            const int d = lane + 32 * c;
            if (d < hd) store_f(out + (size_t)row * ld + col + d, o[r][c] * inv);
        }
    }
}

/* CH = ceil(hd / 32): output dims per lane. */
template <int CH, typename T>
static __global__ void __launch_bounds__(SA_WARPS * 32)
    attention_simple_kernel(T *out, const T *q, const T *k, const T *v, int Lq, int Lk, int heads, int hd,
                            float scale_log2) {
    extern __shared__ float4 smem4[]; /* float4: 16-byte alignment for the vector reads */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const SaTiles s = sa_tiles((float *)smem4, hd, warp);
    const int q0 = blockIdx.x * SA_BQ, row0 = q0 + warp * SA_ROWS;
    const size_t ld = (size_t)heads * hd, col = (size_t)blockIdx.y * hd;

    sa_load_q(s, q, ld, col, hd, [=](int r) { return q0 + r < Lq ? q0 + r : -1; });
    float o[SA_ROWS][CH], m[SA_ROWS], l[SA_ROWS];
    sa_init<CH>(o, m, l);
    for (int k0 = 0; k0 < Lk; k0 += SA_BK) {
        __syncthreads(); /* Q is loaded, and every warp is done with the previous K/V tile */
        sa_load_kv(s, k, v, ld, col, hd, [=](int r) { return k0 + r < Lk ? k0 + r : -1; });
        __syncthreads();
        const bool valid = k0 + lane < Lk;
        sa_tile_step<CH>(s, hd, lane, scale_log2, [=](int) { return valid; }, o, m, l);
    }
    sa_store<CH>(out, ld, col, hd, lane, o, l, [=](int r) { return row0 + r < Lq ? row0 + r : -1; });
}

bool cuda_attention_simple_supports(int head_dim) { return head_dim > 0 && head_dim % 4 == 0 && head_dim <= 128; }

/* Kernels above the default 48 KiB of dynamic shared memory must opt in. */
template <typename Kernel> static cudaError_t allow_smem(Kernel kernel, size_t smem) {
    if (smem <= 48 * 1024) return cudaSuccess;
    return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
}

static float softmax_scale_log2(int hd) { return 1.4426950408889634f / sqrtf((float)hd); }

template <int CH, typename T>
static cudaError_t launch_attention_simple(T *out, const T *q, const T *k, const T *v, int Lq, int Lk, int heads,
                                           int hd, cudaStream_t st) {
    const size_t smem = attention_simple_smem(hd);
    cudaError_t rc = allow_smem(attention_simple_kernel<CH, T>, smem);
    if (rc != cudaSuccess) return rc;
    const dim3 grid((unsigned)((Lq + SA_BQ - 1) / SA_BQ), (unsigned)heads);
    attention_simple_kernel<CH, T>
        <<<grid, SA_WARPS * 32, smem, st>>>(out, q, k, v, Lq, Lk, heads, hd, softmax_scale_log2(hd));
    return cudaGetLastError();
}

template <typename T>
cudaError_t cuda_attention_simple(T *out, const T *q, const T *k, const T *v, int Lq, int Lk, int heads, int head_dim,
                                  cudaStream_t st) {
    if (!cuda_attention_simple_supports(head_dim) || heads <= 0) return cudaErrorInvalidValue;
    if (Lq <= 0) return cudaSuccess;
    if (Lk <= 0) /* softmax over nothing: zeros, as the CPU defines it */
        return cudaMemsetAsync(out, 0, (size_t)Lq * heads * head_dim * sizeof(T), st);
    switch ((head_dim + 31) / 32) {
    case 1: return launch_attention_simple<1, T>(out, q, k, v, Lq, Lk, heads, head_dim, st);
    case 2: return launch_attention_simple<2, T>(out, q, k, v, Lq, Lk, heads, head_dim, st);
    case 3: return launch_attention_simple<3, T>(out, q, k, v, Lq, Lk, heads, head_dim, st);
    default: return launch_attention_simple<4, T>(out, q, k, v, Lq, Lk, heads, head_dim, st);
    }
}

/* ---------------------------------------------------------------------------------------------------------------
 * Sparse VideoGen attention (models/sparse_attention.h for the definitions)
 *
 * The simple kernel over the key sets of models/svg_grid.h: a block takes query tile [q0, q0 + 64) in its head's
 * pattern order (spatial: frame-major; temporal: token-major), so that both patterns are bands. Its K/V tiles are the
 * band keys [band_lo, band_hi) in pattern order, then the sink ranges outside them, all masked exactly (a key is kept
 * when it is within the row's band or at a sink position < P).
 * The layout permutation costs no copies: rows are gathered through svg_token() as the tiles load. Dense heads run
 * every key. Blocks of a head whose band is narrow stop after ~(64 + 2w)/32 key tiles instead of L/32: that is the
 * work skipped.
 * ------------------------------------------------------------------------------------------------------------- */

template <int CH, typename T>
static __global__ void __launch_bounds__(SA_WARPS * 32)
    svg_attention_kernel(T *out, const T *q, const T *k, const T *v, SvgShape g, int heads, int hd,
                         CudaSvgHeads heads_of, float scale_log2) {
    extern __shared__ float4 smem4[];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const SaTiles s = sa_tiles((float *)smem4, hd, warp);
    const AttnPattern p = (AttnPattern)heads_of.pattern[blockIdx.y];
    const int P = g.tokens_per_frame, L = g.frames * P, w = g.band;
    const int q0 = blockIdx.x * SA_BQ, q1 = min(q0 + SA_BQ, L), row0 = q0 + warp * SA_ROWS;
    const size_t ld = (size_t)heads * hd, col = (size_t)blockIdx.y * hd;
    const bool banded = p != ATTN_DENSE && w < L - 1;
    SvgTileKeys tk;
    svg_tile_keys(&g, p, q0, q1, &tk);

    sa_load_q(s, q, ld, col, hd, [&](int r) { return q0 + r < L ? svg_token(&g, p, q0 + r) : -1; });
    float o[SA_ROWS][CH], m[SA_ROWS], l[SA_ROWS];
    sa_init<CH>(o, m, l);
    for (int k0 = tk.band_lo; k0 < tk.band_hi; k0 += SA_BK) {
        __syncthreads();
        sa_load_kv(s, k, v, ld, col, hd, [&](int r) { return k0 + r < tk.band_hi ? svg_token(&g, p, k0 + r) : -1; });
        __syncthreads();
        const int kp = k0 + lane; /* this lane's key, in pattern order */
        const bool in_tile = kp < tk.band_hi, sink = in_tile && kp < P;
        sa_tile_step<CH>(s, hd, lane, scale_log2,
                         [&](int r) {
                             const int dist = row0 + r - kp;
                             return in_tile && (!banded || sink || (dist <= w && -dist <= w));
                         },
                         o, m, l);
    }
    for (int r = 0; r < tk.nsink; r++) {
        const int hi = tk.sink_hi[r];
        for (int j0 = tk.sink_lo[r]; j0 < hi; j0 += SA_BK) {
            __syncthreads();
            sa_load_kv(s, k, v, ld, col, hd, [&](int t) { return j0 + t < hi ? svg_token(&g, p, j0 + t) : -1; });
            __syncthreads();
            const bool valid = j0 + lane < hi && j0 + lane < P;
            sa_tile_step<CH>(s, hd, lane, scale_log2, [&](int) { return valid; }, o, m, l);
        }
    }
    sa_store<CH>(out, ld, col, hd, lane, o, l,
                 [&](int r) { return row0 + r < L ? svg_token(&g, p, row0 + r) : -1; });
}

template <int CH, typename T>
static cudaError_t launch_svg_attention(T *out, const T *q, const T *k, const T *v, const SvgShape &g, int heads,
                                        int hd, const CudaSvgHeads &heads_of, cudaStream_t st) {
    const size_t smem = attention_simple_smem(hd);
    cudaError_t rc = allow_smem(svg_attention_kernel<CH, T>, smem);
    if (rc != cudaSuccess) return rc;
    const int L = g.frames * g.tokens_per_frame;
    const dim3 grid((unsigned)((L + SA_BQ - 1) / SA_BQ), (unsigned)heads);
    svg_attention_kernel<CH, T>
        <<<grid, SA_WARPS * 32, smem, st>>>(out, q, k, v, g, heads, hd, heads_of, softmax_scale_log2(hd));
    return cudaGetLastError();
}

static bool svg_args_ok(const SvgShape &g, int heads, int head_dim) {
    return cuda_attention_simple_supports(head_dim) && heads > 0 && heads <= CUDA_SVG_MAX_HEADS && g.frames > 0 &&
           g.tokens_per_frame > 0 && (long)g.frames * g.tokens_per_frame <= INT32_MAX / 2 && g.band >= 0;
}

template <typename T>
cudaError_t cuda_svg_attention(T *out, const T *q, const T *k, const T *v, SvgShape g, int heads, int head_dim,
                               const CudaSvgHeads *heads_of, cudaStream_t st) {
    if (!svg_args_ok(g, heads, head_dim) || !heads_of) return cudaErrorInvalidValue;
    switch ((head_dim + 31) / 32) {
    case 1: return launch_svg_attention<1, T>(out, q, k, v, g, heads, head_dim, *heads_of, st);
    case 2: return launch_svg_attention<2, T>(out, q, k, v, g, heads, head_dim, *heads_of, st);
    case 3: return launch_svg_attention<3, T>(out, q, k, v, g, heads, head_dim, *heads_of, st);
    default: return launch_svg_attention<4, T>(out, q, k, v, g, heads, head_dim, *heads_of, st);
    }
}

/* Profiling: one block of PR_THREADS per (sampled row a, head). The row's scores stream through shared memory
 * PR_THREADS keys at a time (thread t scores key j0 + t); three online softmaxes run side by side over them: exact,
 * spatial mask, temporal mask (each with its own running max, so a mask whose keys all score far below the row's best
 * keeps its precision; the CPU needs a recomputation fallback for that). Thread d < hd accumulates output dim d of the
 * three. Every thread computes the tile maxima and sums itself from shared memory, in the same order, so all agree.
 * The block's two sums of squared differences (masked - exact) are reduced in a fixed order. */
enum { PR_THREADS = 128 };

template <typename T>
static __global__ void __launch_bounds__(PR_THREADS)
    svg_profile_kernel(double *partials, const T *q, const T *k, const T *v, SvgShape g, int heads, int hd, int rows,
                       unsigned long long seed, CudaSvgHeads heads_of, float scale_log2) {
    __shared__ float Qs[128], S[3][PR_THREADS], Pr[3][PR_THREADS];
    __shared__ double red[2][PR_THREADS];
    const int a = blockIdx.x, h = blockIdx.y, t = threadIdx.x;
    double *part = partials + ((size_t)h * rows + a) * 2;
    if (heads_of.pattern[h] == ATTN_DENSE) { /* nothing to classify */
        if (t == 0) part[0] = part[1] = 0.0;
        return;
    }
    const int L = g.frames * g.tokens_per_frame, i = svg_profile_row(seed, a, svg_profile_limit(L));
    const size_t ld = (size_t)heads * hd, col = (size_t)h * hd;
    if (t < hd) Qs[t] = load_f(q + (size_t)i * ld + col + t);
    __syncthreads();
    float m[3], l[3], o[3];
    for (int x = 0; x < 3; x++) m[x] = -INFINITY, l[x] = 0.0f, o[x] = 0.0f;
    for (int j0 = 0; j0 < L; j0 += PR_THREADS) {
        const int j = j0 + t;
        float sc = -INFINITY;
        if (j < L) {
            const T *kr = k + (size_t)j * ld + col;
            float dot = 0.0f;
            for (int d = 0; d < hd; d++) dot += Qs[d] * load_f(kr + d);
            sc = dot * scale_log2;
        }
        S[0][t] = sc;
        S[1][t] = j < L && svg_profile_mask(&g, ATTN_SPATIAL, i, j) ? sc : -INFINITY;
        S[2][t] = j < L && svg_profile_mask(&g, ATTN_TEMPORAL, i, j) ? sc : -INFINITY;
        __syncthreads();
        float mnew[3];
        for (int x = 0; x < 3; x++) {
            float mx = m[x];
            for (int jj = 0; jj < PR_THREADS; jj++) mx = fmaxf(mx, S[x][jj]);
            mnew[x] = mx;
            Pr[x][t] = S[x][t] == -INFINITY ? 0.0f : exp2f(S[x][t] - mx);
        }
        __syncthreads();
        const int n = min(PR_THREADS, L - j0);
        for (int x = 0; x < 3; x++) {
            const float alpha = mnew[x] == -INFINITY ? 1.0f : exp2f(m[x] - mnew[x]);
            l[x] *= alpha, o[x] *= alpha, m[x] = mnew[x];
        }
        for (int jj = 0; jj < n; jj++) {
            const float vv = t < hd ? load_f(v + (size_t)(j0 + jj) * ld + col + t) : 0.0f;
            for (int x = 0; x < 3; x++) l[x] += Pr[x][jj], o[x] += Pr[x][jj] * vv;
        }
        __syncthreads(); /* S and Pr are rewritten by the next tile */
    }
    const double exact = (double)(o[0] / l[0]);
    const double ds = (double)(o[1] / l[1]) - exact, dt = (double)(o[2] / l[2]) - exact;
    red[0][t] = t < hd ? ds * ds : 0.0;
    red[1][t] = t < hd ? dt * dt : 0.0;
    __syncthreads();
    if (t == 0) {
        double s0 = 0.0, s1 = 0.0;
        for (int d = 0; d < hd; d++) s0 += red[0][d], s1 += red[1][d];
        part[0] = s0, part[1] = s1;
    }
}

template <typename T>
cudaError_t cuda_svg_profile(double *partials, const T *q, const T *k, const T *v, SvgShape g, int heads,
                             int head_dim, int rows, unsigned long long seed, const CudaSvgHeads *heads_of,
                             cudaStream_t st) {
    if (!svg_args_ok(g, heads, head_dim) || !heads_of || rows <= 0 || rows > g.frames * g.tokens_per_frame ||
        rows > 65535)
        return cudaErrorInvalidValue;
    const dim3 grid((unsigned)rows, (unsigned)heads);
    svg_profile_kernel<T><<<grid, PR_THREADS, 0, st>>>(partials, q, k, v, g, heads, head_dim, rows, seed, *heads_of,
                                                       softmax_scale_log2(head_dim));
    return cudaGetLastError();
}

/* ---------------------------------------------------------------------------------------------------------------
 * Attention, mma: bf16 tensor cores (FlashAttention-2 structure, without its pipelining)
 *
 * One block of 4 warps per (tile of 64 query rows, head); each warp owns 16 query rows = one m16 tile. Keys stream
 * through shared memory 64 at a time (K and V tiles, bf16, rows padded by 8 elements: conflict-free fragment reads).
 * Per key tile a warp computes S = Q K^T (16 x 64) with mma.sync.m16n8k16 (A = Q from registers, B = K^T read from
 * the K rows), applies the online softmax on the accumulators, converts P to bf16 in registers (the m16n8 C layout of
 * two adjacent S tiles is exactly the m16k16 A layout) and accumulates O += P V (B = V read from the V rows).
 *
 * Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type"), with g = lane / 4 and
 * t = lane % 4, each 32-bit register holding two bf16 (lower index in the low half):
 *   A (16 x 16, row): reg0 = A[g][2t..2t+1], reg1 = A[g+8][2t..2t+1], reg2 = A[g][2t+8..], reg3 = A[g+8][2t+8..]
 *   B (16 x 8, col):  reg0 = B[2t..2t+1][g],  reg1 = B[2t+8..2t+9][g]
 *   C (16 x 8, f32):  c0, c1 = C[g][2t..2t+1], c2, c3 = C[g+8][2t..2t+1]
 * Each thread holds two rows (g and g+8) of the warp's 16: the row max and sum are reduced over the 4 threads of a
 * quad (shuffles with xor 1 and 2); the running sum l stays per thread and is reduced once at the end.
 * ------------------------------------------------------------------------------------------------------------- */

enum { MA_BQ = 64, MA_BK = 64, MA_WARPS = 4 };

static __device__ __forceinline__ uint32_t pack_bf16(bf16 lo, bf16 hi) {
    return (uint32_t)__bfloat16_as_ushort(lo) | ((uint32_t)__bfloat16_as_ushort(hi) << 16);
}

static __device__ __forceinline__ uint32_t pack_f32(float lo, float hi) {
    return pack_bf16(__float2bfloat16_rn(lo), __float2bfloat16_rn(hi));
}

static __device__ __forceinline__ uint32_t lds32(const bf16 *p) { return *(const uint32_t *)p; }

/* c += A (16x16) B (16x8) */
static __device__ __forceinline__ void mma_16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap(); /* bf16 mma needs sm_80; the host side refuses older devices before launching */
#else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

/* rows [r0, r0 + 64) of one head into dst [64][HD + 8]; rows past `rows` are zeros. 16-byte chunks: HD % 8 == 0 and
 * ld % 8 == 0 keep every chunk aligned. */
template <int HD>
static __device__ __forceinline__ void load_tile_bf16(bf16 *dst, const bf16 *src, int r0, int rows, size_t ld,
                                                      size_t col) {
    constexpr int S = HD + 8, CHUNKS = HD / 8;
    for (int i = threadIdx.x; i < MA_BK * CHUNKS; i += blockDim.x) {
        const int r = i / CHUNKS, c = (i % CHUNKS) * 8;
        uint4 val = make_uint4(0u, 0u, 0u, 0u);
        if (r0 + r < rows) val = *(const uint4 *)(src + (size_t)(r0 + r) * ld + col + c);
        *(uint4 *)(dst + r * S + c) = val;
    }
}

template <int HD>
static __global__ void __launch_bounds__(MA_WARPS * 32)
    attention_mma_kernel(bf16 *out, const bf16 *q, const bf16 *k, const bf16 *v, int Lq, int Lk, int heads,
                         float scale_log2) {
    static_assert(HD % 16 == 0 && HD <= 128, "head_dim must be a multiple of 16, at most 128");
    static_assert(MA_BQ == MA_BK, "Q is staged through the K tile");
    constexpr int S = HD + 8;
    __shared__ __align__(16) bf16 Ks[MA_BK * S];
    __shared__ __align__(16) bf16 Vs[MA_BK * S];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int q0 = blockIdx.x * MA_BQ;
    const size_t ld = (size_t)heads * HD, col = (size_t)blockIdx.y * HD;
    const int r0 = warp * 16 + g; /* this thread's rows in the tile: r0 and r0 + 8 */

    load_tile_bf16<HD>(Ks, q, q0, Lq, ld, col);
    __syncthreads();
    uint32_t qa[HD / 16][4];
#pragma unroll
    for (int kc = 0; kc < HD / 16; kc++) {
        qa[kc][0] = lds32(Ks + r0 * S + kc * 16 + 2 * t);
        qa[kc][1] = lds32(Ks + (r0 + 8) * S + kc * 16 + 2 * t);
        qa[kc][2] = lds32(Ks + r0 * S + kc * 16 + 8 + 2 * t);
        qa[kc][3] = lds32(Ks + (r0 + 8) * S + kc * 16 + 8 + 2 * t);
    }

    float o[HD / 8][4];
#pragma unroll
    for (int nt = 0; nt < HD / 8; nt++) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.0f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;

    for (int k0 = 0; k0 < Lk; k0 += MA_BK) {
        __syncthreads(); /* every warp has its Q fragments / is done with the previous tile */
        load_tile_bf16<HD>(Ks, k, k0, Lk, ld, col);
        load_tile_bf16<HD>(Vs, v, k0, Lk, ld, col);
        __syncthreads();

        /* S = Q K^T: B[kk][n] = K[key n][dim kk], so B's column n is K's row n (contiguous dims). */
        float s[MA_BK / 8][4];
#pragma unroll
        for (int nt = 0; nt < MA_BK / 8; nt++) {
            s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
            for (int kc = 0; kc < HD / 16; kc++) {
                const bf16 *kp = Ks + (nt * 8 + g) * S + kc * 16 + 2 * t;
                mma_16816(s[nt], qa[kc], lds32(kp), lds32(kp + 8));
            }
        }

        /* Online softmax (base 2). Key k0 is valid and every quad sees all 64 keys of its rows, so the reduced tile
         * max is finite; masked keys get -inf and then p = 0. */
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < MA_BK / 8; nt++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int key = k0 + nt * 8 + 2 * t + (i & 1);
                const float x = key < Lk ? s[nt][i] * scale_log2 : -INFINITY;
                s[nt][i] = x;
                if (i < 2) mx0 = fmaxf(mx0, x);
                else mx1 = fmaxf(mx1, x);
            }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
        const float a0 = exp2f(m0 - mn0), a1 = exp2f(m1 - mn1);
        m0 = mn0, m1 = mn1;
        float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
        for (int nt = 0; nt < MA_BK / 8; nt++) {
            s[nt][0] = exp2f(s[nt][0] - mn0);
            s[nt][1] = exp2f(s[nt][1] - mn0);
            s[nt][2] = exp2f(s[nt][2] - mn1);
            s[nt][3] = exp2f(s[nt][3] - mn1);
            sum0 += s[nt][0] + s[nt][1];
            sum1 += s[nt][2] + s[nt][3];
        }
        l0 = l0 * a0 + sum0;
        l1 = l1 * a1 + sum1;
#pragma unroll
        for (int nt = 0; nt < HD / 8; nt++) {
            o[nt][0] *= a0, o[nt][1] *= a0;
            o[nt][2] *= a1, o[nt][3] *= a1;
        }

        /* O += P V over the tile's 64 keys in 4 chunks of 16. A = P: keys 16kc..16kc+7 are S tile 2kc, keys
         * 16kc+8..16kc+15 are S tile 2kc+1. B[kk][n] = V[key kk][dim n]: two keys (rows 2t, 2t+1) per register. */
#pragma unroll
        for (int kc = 0; kc < MA_BK / 16; kc++) {
            const uint32_t pa[4] = {pack_f32(s[2 * kc][0], s[2 * kc][1]), pack_f32(s[2 * kc][2], s[2 * kc][3]),
                                    pack_f32(s[2 * kc + 1][0], s[2 * kc + 1][1]),
                                    pack_f32(s[2 * kc + 1][2], s[2 * kc + 1][3])};
#pragma unroll
            for (int nt = 0; nt < HD / 8; nt++) {
                const bf16 *vp = Vs + (kc * 16 + 2 * t) * S + nt * 8 + g;
                mma_16816(o[nt], pa, pack_bf16(vp[0], vp[S]), pack_bf16(vp[8 * S], vp[9 * S]));
            }
        }
    }

    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float inv0 = 1.0f / l0, inv1 = 1.0f / l1;
    const int row0 = q0 + r0, row1 = row0 + 8;
#pragma unroll
    for (int nt = 0; nt < HD / 8; nt++) {
        const size_t c = col + nt * 8 + 2 * t;
        if (row0 < Lq)
            *(__nv_bfloat162 *)(out + (size_t)row0 * ld + c) = __floats2bfloat162_rn(o[nt][0] * inv0, o[nt][1] * inv0);
        if (row1 < Lq)
            *(__nv_bfloat162 *)(out + (size_t)row1 * ld + c) = __floats2bfloat162_rn(o[nt][2] * inv1, o[nt][3] * inv1);
    }
}

bool cuda_attention_mma_supports(int head_dim) {
    return head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128;
}

template <int HD>
static cudaError_t launch_attention_mma(bf16 *out, const bf16 *q, const bf16 *k, const bf16 *v, int Lq, int Lk,
                                        int heads, cudaStream_t st) {
    const dim3 grid((unsigned)((Lq + MA_BQ - 1) / MA_BQ), (unsigned)heads);
    const float scale_log2 = 1.4426950408889634f / sqrtf((float)HD);
    attention_mma_kernel<HD><<<grid, MA_WARPS * 32, 0, st>>>(out, q, k, v, Lq, Lk, heads, scale_log2);
    return cudaGetLastError();
}

cudaError_t cuda_attention_mma(bf16 *out, const bf16 *q, const bf16 *k, const bf16 *v, int Lq, int Lk, int heads,
                               int head_dim, cudaStream_t st) {
    if (!cuda_attention_mma_supports(head_dim) || heads <= 0) return cudaErrorInvalidValue;
    if (Lq <= 0) return cudaSuccess;
    if (Lk <= 0) return cudaMemsetAsync(out, 0, (size_t)Lq * heads * head_dim * sizeof(bf16), st);
    switch (head_dim) {
    case 16: return launch_attention_mma<16>(out, q, k, v, Lq, Lk, heads, st);
    case 32: return launch_attention_mma<32>(out, q, k, v, Lq, Lk, heads, st);
    case 64: return launch_attention_mma<64>(out, q, k, v, Lq, Lk, heads, st);
    default: return launch_attention_mma<128>(out, q, k, v, Lq, Lk, heads, st);
    }
}

/* ---------------------------------------------------------------------------------------------------------------
 * Explicit instantiations (the two activation types)
 * ------------------------------------------------------------------------------------------------------------- */

#define INSTANTIATE(T)                                                                                              \
    template cudaError_t cuda_convert<T>(T *, const float *, size_t, cudaStream_t);                                 \
    template cudaError_t cuda_silu<T>(T *, const float *, size_t, cudaStream_t);                                    \
    template cudaError_t cuda_gelu_tanh<T>(T *, const float *, size_t, cudaStream_t);                               \
    template cudaError_t cuda_layernorm_modulate<T>(T *, const float *, const float *, const float *, const float *, \
                                                    const float *, int, int, float, cudaStream_t);                  \
    template cudaError_t cuda_rmsnorm_rope<T>(T *, const float *, const float *, const float *, const float *, int,  \
                                              int, int, float, cudaStream_t);                                       \
    template cudaError_t cuda_patchify<T>(T *, const float *, int, int, int, int, int, int, int, cudaStream_t);     \
    template cudaError_t cuda_attention_simple<T>(T *, const T *, const T *, const T *, int, int, int, int,         \
                                                  cudaStream_t);                                                    \
    template cudaError_t cuda_svg_attention<T>(T *, const T *, const T *, const T *, SvgShape, int, int,            \
                                               const CudaSvgHeads *, cudaStream_t);                                 \
    template cudaError_t cuda_svg_profile<T>(double *, const T *, const T *, const T *, SvgShape, int, int, int,    \
                                             unsigned long long, const CudaSvgHeads *, cudaStream_t);
INSTANTIATE(float)
INSTANTIATE(bf16)
