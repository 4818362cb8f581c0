/* CPU fp32 kernels of the DiT: the specification every other backend is tested against.
 * Semantics follow Wan2.1's PyTorch WanModel (wan/modules/model.py); see models/kernels.h.
 *
 * Performance notes (why the code looks the way it does):
 * - Matrix products go to OpenBLAS (OpenMP build). Inside our own parallel regions OpenBLAS sees
 *   omp_in_parallel() and runs single-threaded, which is what attention wants (one GEMM per task).
 * - The build uses -O2 without -march, where GCC's "very cheap" vectoriser leaves most loops scalar;
 *   `#pragma omp simd` forces vectorisation of the hot elementwise loops (and reductions).
 * - expf from libm is scalar; SiLU and GELU use fast_expf below, a branch-free Cephes-style exp that
 *   vectorises and is accurate to ~2 ulp (well inside 1e-6 relative); softmax uses a cheaper 2^x.
 * - Small problems run serially: an OpenMP fork/join costs microseconds, more than a tiny kernel. */
#include "models/kernels.h"
#include "models/fast_math.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

FAST_SOFTMAX_ROW(softmax_row_unnormalised_base2, fast_exp2_nonpositive)

/* Elementwise/row kernels go parallel only from this many floats of work (~100 us serial). */
enum { PAR_MIN_FLOATS = 1 << 16 };
/* Query rows per attention task; the score block (rows x Lk floats) is the per-thread scratch. Each task's
 * GEMMs re-pack the head's K and V (Lk x hd), so more rows amortise that better: 256 rows run ~4% faster
 * than 64 on Zen 5, and the block size matters little beyond. Long keys shrink the block so that it stays
 * within ATTN_BLOCK_FLOATS (16 MiB per thread; Wan-1.3B's 32760 tokens get 128 rows). */
enum { ATTN_BLOCK_Q_MAX = 256, ATTN_BLOCK_Q_MIN = 32, ATTN_BLOCK_FLOATS = 1 << 22 };
/* Attention goes parallel from this many multiply-adds (Lq*Lk*heads*head_dim). */
#define ATTN_PAR_MIN_WORK (1 << 18)


/* ---------------------------------------------------------------------------------------------- */
/* linear */

void linear(float *out, const float *in, const float *weight, const float *bias, int M, int K, int N) {
    if (M <= 0 || N <= 0) return;
    float beta = 0.0f;
    if (bias) {
        /* Start from the bias and let the GEMM accumulate (beta = 1): OpenBLAS would otherwise make a
         * pass over C to zero it, so the bias costs nothing extra. */
#pragma omp parallel for schedule(static) if ((size_t)M * N >= PAR_MIN_FLOATS)
        for (int i = 0; i < M; i++) memcpy(out + (size_t)i * N, bias, (size_t)N * sizeof(float));
        beta = 1.0f;
    } else if (K <= 0) {
        memset(out, 0, (size_t)M * N * sizeof(float));
    }
    if (K <= 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, in, K, weight, K, beta, out, N);
}

/* ---------------------------------------------------------------------------------------------- */
/* norms and elementwise */

void layernorm(float *out, const float *in, const float *weight, const float *bias, int rows, int dim, float eps) {
    if (rows <= 0 || dim <= 0) return;
#pragma omp parallel for schedule(static) if ((size_t)rows * dim >= PAR_MIN_FLOATS)
    for (int r = 0; r < rows; r++) {
        const float *x = in + (size_t)r * dim;
        float *o = out + (size_t)r * dim;
        /* Two passes: the one-pass E[x^2] - E[x]^2 cancels catastrophically when |mean| >> std. */
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int d = 0; d < dim; d++) sum += x[d];
        const float mean = sum / (float)dim;
        float sq = 0.0f;
#pragma omp simd reduction(+ : sq)
        for (int d = 0; d < dim; d++) sq += (x[d] - mean) * (x[d] - mean);
        const float rstd = 1.0f / sqrtf(sq / (float)dim + eps); /* biased variance, like PyTorch */
        if (weight && bias) {
#pragma omp simd
            for (int d = 0; d < dim; d++) o[d] = (x[d] - mean) * rstd * weight[d] + bias[d];
        } else if (weight) {
#pragma omp simd
            for (int d = 0; d < dim; d++) o[d] = (x[d] - mean) * rstd * weight[d];
        } else if (bias) {
#pragma omp simd
            for (int d = 0; d < dim; d++) o[d] = (x[d] - mean) * rstd + bias[d];
        } else {
#pragma omp simd
            for (int d = 0; d < dim; d++) o[d] = (x[d] - mean) * rstd;
        }
    }
}

/* weight NULL means all ones. Wan applies this to q and k over the full model dim (before the head split). */
void rmsnorm(float *out, const float *in, const float *weight, int rows, int dim, float eps) {
    if (rows <= 0 || dim <= 0) return;
#pragma omp parallel for schedule(static) if ((size_t)rows * dim >= PAR_MIN_FLOATS)
    for (int r = 0; r < rows; r++) {
        const float *x = in + (size_t)r * dim;
        float *o = out + (size_t)r * dim;
        float sq = 0.0f;
#pragma omp simd reduction(+ : sq)
        for (int d = 0; d < dim; d++) sq += x[d] * x[d];
        const float rs = 1.0f / sqrtf(sq / (float)dim + eps);
        if (weight) {
#pragma omp simd
            for (int d = 0; d < dim; d++) o[d] = x[d] * rs * weight[d];
        } else {
#pragma omp simd
            for (int d = 0; d < dim; d++) o[d] = x[d] * rs;
        }
    }
}

void modulate(float *out, const float *in, const float *shift, const float *scale, int rows, int dim) {
    if (rows <= 0 || dim <= 0) return;
#pragma omp parallel for schedule(static) if ((size_t)rows * dim >= PAR_MIN_FLOATS)
    for (int r = 0; r < rows; r++) {
        const float *x = in + (size_t)r * dim;
        float *o = out + (size_t)r * dim;
#pragma omp simd
        for (int d = 0; d < dim; d++) o[d] = x[d] * (1.0f + scale[d]) + shift[d];
    }
}

void x0_to_velocity(float *out, const float *x, float sigma, size_t n) {
#pragma omp parallel for schedule(static) if (n >= PAR_MIN_FLOATS)
    for (size_t i = 0; i < n; i++) out[i] = (x[i] - out[i]) / sigma;
}

void gated_residual(float *x, const float *y, const float *gate, int rows, int dim) {
    if (rows <= 0 || dim <= 0) return;
#pragma omp parallel for schedule(static) if ((size_t)rows * dim >= PAR_MIN_FLOATS)
    for (int r = 0; r < rows; r++) {
        float *xr = x + (size_t)r * dim;
        const float *yr = y + (size_t)r * dim;
        if (gate) {
#pragma omp simd
            for (int d = 0; d < dim; d++) xr[d] += yr[d] * gate[d];
        } else {
#pragma omp simd
            for (int d = 0; d < dim; d++) xr[d] += yr[d];
        }
    }
}

/* This thread's share [*begin, *end) of n floats, cut at multiples of 16 floats (64 bytes) so that threads
 * do not write the same cache line of an aligned array. */
static void thread_span(size_t n, size_t *begin, size_t *end) {
    const size_t nt = (size_t)omp_get_num_threads(), t = (size_t)omp_get_thread_num();
    const size_t chunk = ((n + nt - 1) / nt + 15) / 16 * 16;
    *begin = t * chunk < n ? t * chunk : n;
    *end = *begin + chunk < n ? *begin + chunk : n;
}

/* 0.5 x (1 + tanh(u)) is rewritten as x / (1 + exp(-2u)), the same function: it avoids libm tanhf
 * (scalar) and the cancellation in 1 + tanh(u) for negative u. Saturates cleanly: exp -> inf gives -0. */
KERNEL_CLONES static void gelu_tanh_span(float *x, size_t n) {
    const float k0 = 0.7978845608028654f; /* sqrt(2/pi) */
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        const float v = x[i];
        const float u = k0 * (v + 0.044715f * v * v * v);
        x[i] = v / (1.0f + fast_expf(-2.0f * u));
    }
}

KERNEL_CLONES static void silu_span(float *x, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + fast_expf(-x[i]));
}

void gelu_tanh(float *x, size_t n) {
#pragma omp parallel if (n >= PAR_MIN_FLOATS)
    {
        size_t b, e;
        thread_span(n, &b, &e);
        gelu_tanh_span(x + b, e - b);
    }
}

void silu(float *x, size_t n) {
#pragma omp parallel if (n >= PAR_MIN_FLOATS)
    {
        size_t b, e;
        thread_span(n, &b, &e);
        silu_span(x + b, e - b);
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* RoPE */

/* Wan rope_params(1024, d_part) for one pair: 1 / theta^(2j / d_part), in double like Wan. */
static double rope_freq(double theta, int j, int pairs_in_part) {
    return 1.0 / pow(theta, (double)(2 * j) / (double)(2 * pairs_in_part));
}

/* One-off per generation (f*h*w*head_dim/2 sin/cos in double), so it favours clarity over speed. */
void rope_tables(float *cos_out, float *sin_out, int f, int h, int w, int head_dim, float theta) {
    const int c = head_dim / 2;
    const int part_hw = c / 3, part_f = c - 2 * part_hw;
    const long L = (long)f * h * w;
#pragma omp parallel for schedule(static) if (L * c >= PAR_MIN_FLOATS / 16)
    for (long l = 0; l < L; l++) {
        const int fi = (int)(l / ((long)h * w)), hi = (int)(l / w % h), wi = (int)(l % w);
        for (int p = 0; p < c; p++) {
            double angle;
            if (p < part_f) angle = fi * rope_freq(theta, p, part_f);
            else if (p < part_f + part_hw) angle = hi * rope_freq(theta, p - part_f, part_hw);
            else angle = wi * rope_freq(theta, p - part_f - part_hw, part_hw);
            cos_out[l * c + p] = (float)cos(angle);
            sin_out[l * c + p] = (float)sin(angle);
        }
    }
}

void rope_apply(float *x, const float *cos_t, const float *sin_t, int L, int heads, int head_dim) {
    const int c = head_dim / 2;
    const size_t row = (size_t)heads * head_dim;
#pragma omp parallel for schedule(static) if ((size_t)L * row >= PAR_MIN_FLOATS)
    for (int l = 0; l < L; l++) {
        const float *cs = cos_t + (size_t)l * c, *sn = sin_t + (size_t)l * c;
        for (int hh = 0; hh < heads; hh++) {
            float *xh = x + (size_t)l * row + (size_t)hh * head_dim;
#pragma omp simd
            for (int p = 0; p < c; p++) {
                const float re = xh[2 * p], im = xh[2 * p + 1];
                xh[2 * p] = re * cs[p] - im * sn[p];
                xh[2 * p + 1] = re * sn[p] + im * cs[p];
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* attention */

static int attn_block_rows(int Lq, int Lk) {
    int bq = ATTN_BLOCK_Q_MAX;
    while (bq > ATTN_BLOCK_Q_MIN && (long)bq * Lk > ATTN_BLOCK_FLOATS) bq /= 2;
    return Lq < bq ? Lq : bq;
}

/* Threads attention will use: no more than there are (head, query block) tasks. */
static int attn_threads(int Lq, int Lk, int heads) {
    const int bq = attn_block_rows(Lq, Lk);
    const long tasks = (long)heads * ((Lq + bq - 1) / bq);
    const int mt = omp_get_max_threads();
    return tasks < mt ? (int)(tasks > 0 ? tasks : 1) : mt;
}

/* Floats one thread uses: a block-rows x Lk score block plus the block's row sums. */
static size_t attn_thread_floats(int Lq, int Lk) {
    const size_t bq = (size_t)attn_block_rows(Lq, Lk);
    return bq * (size_t)Lk + bq;
}

/* Sized for the calling thread's omp_get_max_threads(), which must not grow before attention() runs.
 * Monotone: what suffices for (Lq, Lk, heads) suffices for any smaller Lq, Lk or heads, so one buffer
 * serves self- and cross-attention. (The block shrinks where Lk crosses ATTN_BLOCK_FLOATS / rows, which
 * makes the per-thread use drop there; hence the max over those crossing points below Lk.) */
size_t attention_scratch_floats(int Lq, int Lk, int heads) {
    if (Lq <= 0 || Lk <= 0 || heads <= 0) return 0;
    size_t per_thread = attn_thread_floats(Lq, Lk);
    for (int b = ATTN_BLOCK_Q_MAX; b > ATTN_BLOCK_Q_MIN; b /= 2) {
        const int k_b = ATTN_BLOCK_FLOATS / b; /* the longest Lk that still gets b rows */
        if (k_b < Lk) {
            const size_t at_k_b = attn_thread_floats(Lq, k_b);
            per_thread = at_k_b > per_thread ? at_k_b : per_thread;
        }
    }
    return (size_t)attn_threads(Lq, Lk, heads) * per_thread;
}


/* Per (head, block of query rows): S = (Q_b K^T) * log2(e) / sqrt(hd) by one GEMM into the thread's
 * scratch, S <- 2^(S - rowmax) (= exp of the true logits minus their max), O_b = S V by a second GEMM
 * written straight into out (ld = heads*hd), then O_b rows scaled by 1/rowsum (hd multiplies per row
 * instead of Lk). Tasks are ordered head-major so
 * that concurrent threads share one head's K and V in cache. */
void attention(float *out, const float *q, const float *k, const float *v, int Lq, int Lk, int heads, int head_dim,
               float *scratch) {
    if (Lq <= 0 || heads <= 0 || head_dim <= 0) return;
    const int ld = heads * head_dim;
    if (Lk <= 0) { /* softmax over nothing: define the result as zeros rather than NaN */
        memset(out, 0, (size_t)Lq * ld * sizeof(float));
        return;
    }
    const int bq = attn_block_rows(Lq, Lk);
    const int nblk = (Lq + bq - 1) / bq;
    const int ntasks = heads * nblk;
    const size_t per_thread = attn_thread_floats(Lq, Lk);
    /* log2(e) rides on the GEMM's alpha for free; it adds one rounding to the logits, like the 1/sqrt(hd). */
    const float scale = (float)(1.4426950408889634 / sqrt((double)head_dim));
    const double work = (double)Lq * Lk * heads * head_dim;
#pragma omp parallel num_threads(attn_threads(Lq, Lk, heads)) if (work >= ATTN_PAR_MIN_WORK)
    {
        float *S = scratch + (size_t)omp_get_thread_num() * per_thread;
        float *rowsum = S + (size_t)bq * Lk;
#pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < ntasks; t++) {
            const int hh = t / nblk, q0 = (t % nblk) * bq;
            const int rows = Lq - q0 < bq ? Lq - q0 : bq;
            const size_t col = (size_t)hh * head_dim;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, Lk, head_dim, scale, q + (size_t)q0 * ld + col,
                        ld, k + col, ld, 0.0f, S, Lk);
            for (int i = 0; i < rows; i++) rowsum[i] = softmax_row_unnormalised_base2(S + (size_t)i * Lk, Lk);
            float *o = out + (size_t)q0 * ld + col;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, head_dim, Lk, 1.0f, S, Lk, v + col, ld, 0.0f,
                        o, ld);
            for (int i = 0; i < rows; i++) {
                const float inv = 1.0f / rowsum[i];
                float *oi = o + (size_t)i * ld;
#pragma omp simd
                for (int d = 0; d < head_dim; d++) oi[d] *= inv;
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* timestep embedding */

/* Wan sinusoidal_embedding_1d: positions in float64, w_j = 10000^(-j/half). Odd dim: last entry 0
 * (Wan asserts an even dim). */
void timestep_embedding(float *out, float t, int dim) {
    const int half = dim / 2;
    for (int j = 0; j < half; j++) {
        const double a = (double)t * pow(10000.0, -(double)j / (double)half);
        out[j] = (float)cos(a);
        out[half + j] = (float)sin(a);
    }
    if (dim % 2) out[dim - 1] = 0.0f;
}
