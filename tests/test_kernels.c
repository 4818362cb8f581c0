/* Tests of models/kernels.c against naive double-precision references written here (plain loops, no BLAS).
 * Inputs are seeded pseudo-random, never zero-filled, with sizes that are not multiples of any vector width
 * or of attention's query block (256 rows, fewer for long keys). Tolerances are stated next to each check
 * with the reason:
 * fp32 rounding is u = 2^-24 ~ 6e-8 per operation, and a K-term fp32 sum errs by at most ~K*u relative to
 * the sum of |terms| (typically ~sqrt(K)*u). */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "models/kernels.h"

#define U32 (1.0 / 16777216.0) /* 2^-24, fp32 unit roundoff */

/* ---------------------------------------------------------------------------------------------- */
/* helpers */

/* xorshift64*: deterministic, seedable. */
static double rnd_unit(uint64_t *s) {
    *s ^= *s >> 12, *s ^= *s << 25, *s ^= *s >> 27;
    return (double)((*s * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0);
}

/* n floats uniform in [lo, hi), nudged away from exact zero (zeros hide missing terms). */
static float *rand_floats(size_t n, double lo, double hi, uint64_t seed) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    float *p = malloc(n * sizeof(float) + 1);
    cr_assert(p);
    for (size_t i = 0; i < n; i++) {
        float v = (float)(lo + (hi - lo) * rnd_unit(&s));
        p[i] = v == 0.0f ? 1e-3f : v;
    }
    return p;
}

static double *alloc_doubles(size_t n) {
    double *p = calloc(n + 1, sizeof(double));
    cr_assert(p);
    return p;
}

static float *copy_floats(const float *src, size_t n) {
    float *p = malloc(n * sizeof(float) + 1);
    cr_assert(p);
    memcpy(p, src, n * sizeof(float));
    return p;
}

/* max |got - ref| / max |ref| */
static double max_rel_err(const float *got, const double *ref, size_t n) {
    double err = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++) {
        cr_assert(isfinite(got[i]), "non-finite output at %zu: %g", i, got[i]);
        err = fmax(err, fabs(got[i] - ref[i]));
        scale = fmax(scale, fabs(ref[i]));
    }
    return scale > 0.0 ? err / scale : err;
}

/* ---------------------------------------------------------------------------------------------- */
/* linear */

static void ref_linear(double *out, const float *in, const float *w, const float *b, int M, int K, int N) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double acc = b ? b[j] : 0.0;
            for (int k = 0; k < K; k++) acc += (double)in[(size_t)i * K + k] * w[(size_t)j * K + k];
            out[(size_t)i * N + j] = acc;
        }
}

static void check_linear(int M, int K, int N, int with_bias) {
    float *in = rand_floats((size_t)M * K, -1, 1, 1), *w = rand_floats((size_t)N * K, -1, 1, 2);
    float *b = with_bias ? rand_floats((size_t)N, -1, 1, 3) : NULL;
    float *out = malloc((size_t)M * N * sizeof(float));
    for (size_t i = 0; i < (size_t)M * N; i++) out[i] = NAN; /* out is write-only: stale NaNs must not leak */
    double *ref = alloc_doubles((size_t)M * N);
    linear(out, in, w, b, M, K, N);
    ref_linear(ref, in, w, b, M, K, N);
    /* K-term dot products of values in [-1,1]: worst case K*u*sum|terms| ~ K*u*K/4 against max|ref| ~ sqrt(K)
     * gives < 1e-5 for K <= 131; observed ~1e-7. */
    const double err = max_rel_err(out, ref, (size_t)M * N);
    cr_assert(err < 1e-5, "linear %dx%dx%d bias=%d: rel err %g", M, K, N, with_bias, err);
    free(in), free(w), free(b), free(out), free(ref);
}

Test(kernels, linear_with_bias) { check_linear(37, 70, 29, 1); }
Test(kernels, linear_without_bias) { check_linear(5, 131, 17, 0); }

/* ---------------------------------------------------------------------------------------------- */
/* norms */

static void ref_layernorm(double *out, const float *in, const float *w, const float *b, int rows, int dim, float eps) {
    for (int r = 0; r < rows; r++) {
        const float *x = in + (size_t)r * dim;
        double mean = 0.0, var = 0.0;
        for (int d = 0; d < dim; d++) mean += x[d];
        mean /= dim;
        for (int d = 0; d < dim; d++) var += (x[d] - mean) * (x[d] - mean);
        var /= dim; /* biased, like torch.nn.LayerNorm */
        for (int d = 0; d < dim; d++) {
            double v = (x[d] - mean) / sqrt(var + eps);
            if (w) v *= w[d];
            if (b) v += b[d];
            out[(size_t)r * dim + d] = v;
        }
    }
}

static void check_layernorm(int affine, int in_place) {
    const int rows = 13, dim = 77;
    const float eps = 1e-6f;
    float *in = rand_floats((size_t)rows * dim, -2, 2, 4);
    float *w = affine ? rand_floats(dim, 0.5, 1.5, 5) : NULL, *b = affine ? rand_floats(dim, -1, 1, 6) : NULL;
    double *ref = alloc_doubles((size_t)rows * dim);
    ref_layernorm(ref, in, w, b, rows, dim, eps);
    float *out = in_place ? in : malloc((size_t)rows * dim * sizeof(float));
    layernorm(out, in, w, b, rows, dim, eps);
    /* Outputs are O(1); mean and variance are 77-term fp32 sums: error ~ dim*u ~ 5e-6 worst case. */
    const double err = max_rel_err(out, ref, (size_t)rows * dim);
    cr_assert(err < 1e-5, "layernorm affine=%d in_place=%d: rel err %g", affine, in_place, err);
    if (!in_place) free(out);
    free(in), free(w), free(b), free(ref);
}

Test(kernels, layernorm_plain) { check_layernorm(0, 0); }
Test(kernels, layernorm_affine_in_place) { check_layernorm(1, 1); }

/* Rows with |mean| = 100 * std: the one-pass E[x^2] - E[x]^2 formula loses ~4 digits of the variance here
 * (1e4 * dim * u ~ 5e-2 relative); the two-pass one keeps the error at the mean's own rounding,
 * ~100 * sqrt(dim) * u ~ 5e-5 of the O(1) outputs. */
Test(kernels, layernorm_large_mean) {
    const int rows = 7, dim = 150;
    float *in = rand_floats((size_t)rows * dim, -1, 1, 7);
    for (int i = 0; i < rows * dim; i++) in[i] += 100.0f;
    double *ref = alloc_doubles((size_t)rows * dim);
    ref_layernorm(ref, in, NULL, NULL, rows, dim, 1e-6f);
    float *out = malloc((size_t)rows * dim * sizeof(float));
    layernorm(out, in, NULL, NULL, rows, dim, 1e-6f);
    const double err = max_rel_err(out, ref, (size_t)rows * dim);
    cr_assert(err < 5e-4, "layernorm with mean 100: rel err %g", err);
    free(in), free(out), free(ref);
}

Test(kernels, rmsnorm) {
    const int rows = 11, dim = 101;
    const float eps = 1e-6f;
    float *in = rand_floats((size_t)rows * dim, -3, 3, 8), *w = rand_floats(dim, 0.5, 1.5, 9);
    double *ref = alloc_doubles((size_t)rows * dim);
    for (int r = 0; r < rows; r++) {
        double ms = 0.0;
        for (int d = 0; d < dim; d++) ms += (double)in[r * dim + d] * in[r * dim + d];
        const double rs = 1.0 / sqrt(ms / dim + eps);
        for (int d = 0; d < dim; d++) ref[r * dim + d] = in[r * dim + d] * rs * w[d];
    }
    float *out = malloc((size_t)rows * dim * sizeof(float));
    rmsnorm(out, in, w, rows, dim, eps);
    /* 101-term sum of squares (all positive: relative error <= dim*u ~ 6e-6) then 3 roundings. */
    double err = max_rel_err(out, ref, (size_t)rows * dim);
    cr_assert(err < 1e-5, "rmsnorm: rel err %g", err);
    rmsnorm(in, in, w, rows, dim, eps); /* in place gives the same */
    err = max_rel_err(in, ref, (size_t)rows * dim);
    cr_assert(err < 1e-5, "rmsnorm in place: rel err %g", err);
    free(in), free(w), free(out), free(ref);
}

/* ---------------------------------------------------------------------------------------------- */
/* elementwise */

Test(kernels, modulate) {
    const int rows = 9, dim = 50;
    float *in = rand_floats((size_t)rows * dim, -2, 2, 10);
    float *shift = rand_floats(dim, -1, 1, 11), *scale = rand_floats(dim, -0.5, 0.5, 12);
    double *ref = alloc_doubles((size_t)rows * dim);
    for (int r = 0; r < rows; r++)
        for (int d = 0; d < dim; d++) ref[r * dim + d] = in[r * dim + d] * (1.0 + scale[d]) + shift[d];
    float *out = malloc((size_t)rows * dim * sizeof(float));
    modulate(out, in, shift, scale, rows, dim);
    /* Three roundings; relative to the largest output (single elements may cancel): 3u ~ 2e-7. */
    double err = max_rel_err(out, ref, (size_t)rows * dim);
    cr_assert(err < 1e-6, "modulate: rel err %g", err);
    modulate(in, in, shift, scale, rows, dim);
    err = max_rel_err(in, ref, (size_t)rows * dim);
    cr_assert(err < 1e-6, "modulate in place: rel err %g", err);
    free(in), free(shift), free(scale), free(out), free(ref);
}

Test(kernels, gated_residual) {
    const int rows = 6, dim = 45;
    const size_t n = (size_t)rows * dim;
    float *x = rand_floats(n, -2, 2, 13), *y = rand_floats(n, -2, 2, 14), *gate = rand_floats(dim, -1, 1, 15);
    float *x2 = copy_floats(x, n);
    double *ref = alloc_doubles(n), *ref2 = alloc_doubles(n);
    for (int r = 0; r < rows; r++)
        for (int d = 0; d < dim; d++) {
            ref[r * dim + d] = x[r * dim + d] + (double)y[r * dim + d] * gate[d];
            ref2[r * dim + d] = (double)x[r * dim + d] + y[r * dim + d];
        }
    gated_residual(x, y, gate, rows, dim);
    gated_residual(x2, y, NULL, rows, dim);
    /* Two roundings relative to the largest output: 2u. */
    double err = max_rel_err(x, ref, n);
    cr_assert(err < 1e-6, "gated_residual: rel err %g", err);
    err = max_rel_err(x2, ref2, n);
    cr_assert(err < 1e-6, "gated_residual (gate NULL): rel err %g", err);
    free(x), free(x2), free(y), free(gate), free(ref), free(ref2);
}

Test(kernels, x0_to_velocity) {
    const size_t n = 1000;
    float *out = rand_floats(n, -1.5, 1.5, 16), *x = rand_floats(n, -3, 3, 17);
    double *ref = alloc_doubles(n);
    const float sigma = 0.37f;
    for (size_t i = 0; i < n; i++) ref[i] = ((double)x[i] - out[i]) / sigma;
    x0_to_velocity(out, x, sigma, n);
    /* One rounding of the difference and one of the quotient, relative to the largest output: 2u. */
    const double err = max_rel_err(out, ref, n);
    cr_assert(err < 1e-6, "x0_to_velocity: rel err %g", err);
    free(out), free(x), free(ref);
}

/* gelu_tanh(x) = 0.5 x (1 + tanh(u)), u = sqrt(2/pi)(x + 0.044715 x^3), evaluated in double as the
 * identical x / (1 + exp(-2u)) (the literal form rounds 1 + tanh(u) to 0 in double for x < -9). */
static double ref_gelu(double x) {
    const double u = sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x);
    return x / (1.0 + exp(-2.0 * u));
}

Test(kernels, gelu_tanh) {
    const size_t n = 1001;
    float *x = rand_floats(n, -9, 9, 16);
    float *in = copy_floats(x, n);
    gelu_tanh(x, n);
    for (size_t i = 0; i < n; i++) {
        const double v = in[i], u = sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v), ref = ref_gelu(v);
        /* Per element. The fp32 u carries ~4 roundings, which exp(-2u) amplifies by |2u| (its condition
         * number): 8|u|u relative, plus ~1e-6 for fast exp, the add and the divide. */
        const double tol = (1e-6 + 8.0 * fabs(u) * U32) * fabs(ref) + 1e-37;
        cr_assert(fabs(x[i] - ref) <= tol, "gelu(%.9g) = %.9g, ref %.9g", v, x[i], ref);
    }
    free(x), free(in);
}

/* At +-10 against the literal tanh formula (double), and far out of range: finite, no NaN. */
Test(kernels, gelu_tanh_extremes) {
    float x[] = {10.0f, -10.0f, 30.0f, -30.0f, 1e4f, -1e4f, 1e30f, -1e30f, 3e38f, -3e38f};
    const size_t n = sizeof x / sizeof x[0];
    float in[sizeof x / sizeof x[0]];
    memcpy(in, x, sizeof x);
    gelu_tanh(x, n);
    for (size_t i = 0; i < n; i++) {
        cr_assert(isfinite(x[i]), "gelu(%g) = %g", in[i], x[i]);
        const double v = in[i];
        if (fabs(v) <= 10.0) {
            const double lit = 0.5 * v * (1.0 + tanh(sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
            /* Literal formula: 10 at +10, 0 at -10 (true value -1.3e-37): both within 1e-6 + 1e-30. */
            cr_assert(fabs(x[i] - lit) <= 1e-6 * fabs(lit) + 1e-30, "gelu(%g) = %.9g, literal %.9g", v, x[i], lit);
        } else if (v > 0) {
            cr_assert(x[i] == in[i], "gelu(%g) = %g, want x", v, x[i]);
        } else {
            cr_assert(fabs(x[i]) < 1e-30, "gelu(%g) = %g, want ~0", v, x[i]);
        }
    }
}

/* Dense sweep over [-80, 80]: x is exact, so the only error is exp's (fast_expf, whose argument spans
 * [-80, 80] here) plus an add and a divide. Per element 1e-6 relative: this pins the fast exp's accuracy. */
Test(kernels, silu) {
    const size_t n = 4001;
    float *x = malloc(n * sizeof(float)), *in = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) in[i] = x[i] = -80.0f + 160.0f * (float)i / (float)(n - 1) + 1e-3f;
    silu(x, n);
    for (size_t i = 0; i < n; i++) {
        const double v = in[i], ref = v / (1.0 + exp(-v));
        cr_assert(fabs(x[i] - ref) <= 1e-6 * fabs(ref) + 1e-37, "silu(%.9g) = %.9g, ref %.9g", v, x[i], ref);
    }
    float ext[] = {-100.0f, 100.0f, -1e30f, 1e30f};
    silu(ext, 4);
    cr_assert(fabs(ext[0]) < 1e-37 && ext[1] == 100.0f && fabs(ext[2]) < 1e-30 && ext[3] == 1e30f,
              "silu extremes: %g %g %g %g", ext[0], ext[1], ext[2], ext[3]);
    free(x), free(in);
}

/* ---------------------------------------------------------------------------------------------- */
/* timestep embedding */

Test(kernels, timestep_embedding) {
    const int dim = 256, half = dim / 2;
    const float ts[] = {0.0f, 999.0f, 500.5f};
    float out[256];
    for (int k = 0; k < 3; k++) {
        timestep_embedding(out, ts[k], dim);
        for (int j = 0; j < half; j++) {
            const double a = (double)ts[k] * pow(10000.0, -(double)j / half);
            /* Computed in double then rounded once to float: |error| <= half an ulp of 1, 3e-8. */
            cr_assert(fabs(out[j] - cos(a)) < 1e-7, "t=%g cos[%d] = %.9g, ref %.9g", ts[k], j, out[j], cos(a));
            cr_assert(fabs(out[half + j] - sin(a)) < 1e-7, "t=%g sin[%d] = %.9g, ref %.9g", ts[k], j, out[half + j],
                      sin(a));
        }
    }
    timestep_embedding(out, 0.0f, dim);
    for (int j = 0; j < half; j++) cr_assert(out[j] == 1.0f && out[half + j] == 0.0f, "t=0 entry %d", j);
}

/* ---------------------------------------------------------------------------------------------- */
/* RoPE */

/* Wan's construction, literally: d = head_dim; freqs = cat([rope_params(1024, d - 4*(d//6)),
 * rope_params(1024, 2*(d//6)), rope_params(1024, 2*(d//6))], dim=1), rope_params(n, dp) =
 * outer(arange(n), 1 / theta^(arange(0, dp, 2) / dp)); then rope_apply splits the c = d/2 columns into
 * c - 2*(c//3), c//3, c//3 and indexes them by frame, row and column. Returns angles [L][c]. */
static double *ref_rope_angles(int f, int h, int w, int d, double theta) {
    const int c = d / 2, npos = 1024;
    const int dparts[3] = {d - 4 * (d / 6), 2 * (d / 6), 2 * (d / 6)};
    double *freqs = alloc_doubles((size_t)npos * c); /* [1024][c], the concatenated table */
    int col = 0;
    for (int part = 0; part < 3; part++) {
        const int dp = dparts[part];
        for (int j = 0; j < dp / 2; j++, col++)
            for (int pos = 0; pos < npos; pos++)
                freqs[(size_t)pos * c + col] = pos * (1.0 / pow(theta, (double)(2 * j) / dp));
    }
    cr_assert(col == c, "rope parts do not add up to head_dim/2");
    const int split[3] = {c - 2 * (c / 3), c / 3, c / 3};
    double *ang = alloc_doubles((size_t)f * h * w * c);
    for (int fi = 0; fi < f; fi++)
        for (int hi = 0; hi < h; hi++)
            for (int wi = 0; wi < w; wi++) {
                const size_t l = ((size_t)fi * h + hi) * w + wi;
                for (int p = 0; p < c; p++) {
                    const int pos = p < split[0] ? fi : p < split[0] + split[1] ? hi : wi;
                    ang[l * c + p] = freqs[(size_t)pos * c + p];
                }
            }
    free(freqs);
    return ang;
}

static void check_rope_tables(int head_dim, int f, int h, int w, int part0, int part1) {
    const int c = head_dim / 2;
    cr_assert(c - 2 * (c / 3) == part0 && c / 3 == part1, "part sizes for head_dim %d", head_dim);
    const size_t L = (size_t)f * h * w;
    float *cs = malloc(L * c * sizeof(float)), *sn = malloc(L * c * sizeof(float));
    rope_tables(cs, sn, f, h, w, head_dim, 10000.0f);
    double *ang = ref_rope_angles(f, h, w, head_dim, 10000.0);
    for (size_t i = 0; i < L * c; i++) {
        /* cos/sin of double angles rounded once to float: half an ulp of 1 (3e-8). */
        cr_assert(fabs(cs[i] - cos(ang[i])) < 1e-7 && fabs(sn[i] - sin(ang[i])) < 1e-7,
                  "head_dim %d entry %zu (token %zu pair %zu): cos %.9g ref %.9g sin %.9g ref %.9g", head_dim, i, i / c,
                  i % c, cs[i], cos(ang[i]), sn[i], sin(ang[i]));
    }
    free(cs), free(sn), free(ang);
}

Test(kernels, rope_tables_head_dim_32) { check_rope_tables(32, 3, 4, 5, 6, 5); }
Test(kernels, rope_tables_head_dim_128) { check_rope_tables(128, 4, 6, 7, 22, 21); }

Test(kernels, rope_apply) {
    const int f = 2, h = 3, w = 5, heads = 3, hd = 32, c = hd / 2;
    const int L = f * h * w;
    const size_t n = (size_t)L * heads * hd;
    float *cs = malloc((size_t)L * c * sizeof(float)), *sn = malloc((size_t)L * c * sizeof(float));
    rope_tables(cs, sn, f, h, w, hd, 10000.0f);
    float *x = rand_floats(n, -2, 2, 17), *in = copy_floats(x, n);
    double *ref = alloc_doubles(n);
    for (int l = 0; l < L; l++)
        for (int hh = 0; hh < heads; hh++)
            for (int p = 0; p < c; p++) {
                const size_t i = ((size_t)l * heads + hh) * hd + 2 * p;
                const double re = in[i], im = in[i + 1], co = cs[l * c + p], si = sn[l * c + p];
                ref[i] = re * co - im * si;
                ref[i + 1] = re * si + im * co;
            }
    rope_apply(x, cs, sn, L, heads, hd);
    /* Two products and an add per output: 3u of the pair's magnitude. */
    const double err = max_rel_err(x, ref, n);
    cr_assert(err < 1e-6, "rope_apply: rel err %g", err);
    free(cs), free(sn), free(x), free(in), free(ref);
}

/* Property: a rotation keeps |(x[2p], x[2p+1])|. cos^2 + sin^2 = 1 within ~2u after rounding to float,
 * the rotation adds ~3u per component: 1e-6 relative on the squared norm. */
Test(kernels, rope_preserves_pair_norm) {
    const int f = 3, h = 4, w = 4, heads = 2, hd = 128, c = hd / 2;
    const int L = f * h * w;
    const size_t n = (size_t)L * heads * hd;
    float *cs = malloc((size_t)L * c * sizeof(float)), *sn = malloc((size_t)L * c * sizeof(float));
    rope_tables(cs, sn, f, h, w, hd, 10000.0f);
    float *x = rand_floats(n, -3, 3, 18), *in = copy_floats(x, n);
    rope_apply(x, cs, sn, L, heads, hd);
    for (size_t i = 0; i < n; i += 2) {
        const double before = (double)in[i] * in[i] + (double)in[i + 1] * in[i + 1];
        const double after = (double)x[i] * x[i] + (double)x[i + 1] * x[i + 1];
        cr_assert(fabs(after - before) <= 1e-6 * before, "pair %zu: |x|^2 %.9g -> %.9g", i / 2, before, after);
    }
    free(cs), free(sn), free(x), free(in);
}

/* ---------------------------------------------------------------------------------------------- */
/* attention */

static void ref_attention(double *out, const float *q, const float *k, const float *v, int Lq, int Lk, int heads,
                          int hd) {
    const int ld = heads * hd;
    double *s = alloc_doubles((size_t)Lk);
    for (int hh = 0; hh < heads; hh++)
        for (int i = 0; i < Lq; i++) {
            double m = -INFINITY, sum = 0.0;
            for (int j = 0; j < Lk; j++) {
                double acc = 0.0;
                for (int d = 0; d < hd; d++)
                    acc += (double)q[(size_t)i * ld + hh * hd + d] * k[(size_t)j * ld + hh * hd + d];
                s[j] = acc / sqrt((double)hd);
                m = fmax(m, s[j]);
            }
            for (int j = 0; j < Lk; j++) sum += (s[j] = exp(s[j] - m));
            for (int d = 0; d < hd; d++) {
                double acc = 0.0;
                for (int j = 0; j < Lk; j++) acc += s[j] * v[(size_t)j * ld + hh * hd + d];
                out[(size_t)i * ld + hh * hd + d] = acc / sum;
            }
        }
    free(s);
}

/* Runs attention with exactly attention_scratch_floats() of scratch followed by a canary, checks the canary,
 * and returns the max error relative to max|ref|. qk_scale multiplies q and k (logit magnitude ~ qk_scale^2). */
static double run_attention_case(int Lq, int Lk, int heads, int hd, float qk_scale, uint64_t seed) {
    const int ld = heads * hd;
    float *q = rand_floats((size_t)Lq * ld, -1, 1, seed), *k = rand_floats((size_t)Lk * ld, -1, 1, seed + 1);
    float *v = rand_floats((size_t)Lk * ld, -1, 1, seed + 2);
    for (size_t i = 0; i < (size_t)Lq * ld; i++) q[i] *= qk_scale;
    for (size_t i = 0; i < (size_t)Lk * ld; i++) k[i] *= qk_scale;
    const size_t ns = attention_scratch_floats(Lq, Lk, heads), canary = 64;
    float *scratch = malloc((ns + canary) * sizeof(float));
    for (size_t i = 0; i < ns + canary; i++) scratch[i] = 12345.0f;
    float *out = malloc((size_t)Lq * ld * sizeof(float));
    for (size_t i = 0; i < (size_t)Lq * ld; i++) out[i] = NAN;
    double *ref = alloc_doubles((size_t)Lq * ld);
    attention(out, q, k, v, Lq, Lk, heads, hd, scratch);
    ref_attention(ref, q, k, v, Lq, Lk, heads, hd);
    for (size_t i = ns; i < ns + canary; i++) cr_assert(scratch[i] == 12345.0f, "attention wrote past its scratch");
    /* Each output is a convex combination of v's column: it must lie within that column's range. */
    for (int hh = 0; hh < heads; hh++)
        for (int d = 0; d < hd; d++) {
            float lo = INFINITY, hi = -INFINITY;
            for (int j = 0; j < Lk; j++) {
                lo = fminf(lo, v[(size_t)j * ld + hh * hd + d]);
                hi = fmaxf(hi, v[(size_t)j * ld + hh * hd + d]);
            }
            for (int i = 0; i < Lq; i++) {
                const float o = out[(size_t)i * ld + hh * hd + d];
                cr_assert(isfinite(o) && o >= lo - 1e-5f && o <= hi + 1e-5f, "out[%d][%d] = %g outside [%g, %g]", i,
                          hh * hd + d, o, lo, hi);
            }
        }
    const double err = max_rel_err(out, ref, (size_t)Lq * ld);
    free(q), free(k), free(v), free(scratch), free(out), free(ref);
    return err;
}

/* Tolerance 1e-5 for O(1) logits: logits carry ~hd*u, softmax weights ~1e-7 (exp) relative, and the
 * Lk-term weighted sum of v at most Lk*u ~ 1.2e-5 worst case (Lk = 200), ~sqrt(Lk)*u typically; observed ~1e-7. */
Test(kernels, attention_self) {
    const double err = run_attention_case(67, 67, 3, 16, 1.0f, 19);
    cr_assert(err < 1e-5, "self attention 67x67x3x16: rel err %g", err);
}

Test(kernels, attention_cross) {
    double err = run_attention_case(67, 45, 3, 16, 1.0f, 20);
    cr_assert(err < 1e-5, "cross attention Lq=67 Lk=45: rel err %g", err);
    err = run_attention_case(260, 200, 2, 24, 1.0f, 21); /* two query blocks, the last of 4 rows */
    cr_assert(err < 1e-5, "cross attention Lq=260 Lk=200: rel err %g", err);
    err = run_attention_case(5, 16, 4, 32, 1.0f, 22); /* a few queries over the tiny model's 16 text tokens */
    cr_assert(err < 1e-5, "cross attention Lq=5 Lk=16: rel err %g", err);
}

/* Several threads (make test pins OMP_NUM_THREADS=1): per-thread scratch slices and the task split. */
Test(kernels, attention_threads) {
    omp_set_num_threads(3);
    const double err = run_attention_case(300, 77, 2, 8, 1.0f, 23);
    cr_assert(err < 1e-5, "attention with 3 threads: rel err %g", err);
}

/* Long keys shrink the query block (17000 keys -> 128 rows: 300 = 128 + 128 + 44). Lk-term sums of
 * positive weights and of v: worst case Lk*u ~ 1e-3, typically sqrt(Lk)*u ~ 1e-5; tolerance 1e-4. */
Test(kernels, attention_long_keys) {
    const double err = run_attention_case(300, 17000, 1, 8, 1.0f, 25);
    cr_assert(err < 1e-4, "attention Lq=300 Lk=17000: rel err %g", err);
}

/* The softmax's exp, isolated: hd = 1, two keys k = (1, 0), v = (1, 0), so out_i = 1 / (1 + exp(-q_i)) for
 * logits q_i swept over [-80, 80]. The logit itself carries ~2 roundings (scale and log2 e), which exp
 * amplifies by |q|: tolerance (1e-6 + 4|q|u) relative per element. */
Test(kernels, attention_softmax_weights) {
    const int Lq = 1601;
    float *q = malloc(Lq * sizeof(float)), *out = malloc(Lq * sizeof(float));
    const float k[2] = {1.0f, 0.0f}, v[2] = {1.0f, 0.0f};
    for (int i = 0; i < Lq; i++) q[i] = -80.0f + 160.0f * (float)i / (float)(Lq - 1) + 1e-3f;
    float *scratch = malloc(attention_scratch_floats(Lq, 2, 1) * sizeof(float));
    attention(out, q, k, v, Lq, 2, 1, 1, scratch);
    for (int i = 0; i < Lq; i++) {
        const double ref = 1.0 / (1.0 + exp(-(double)q[i]));
        cr_assert(fabs(out[i] - ref) <= (1e-6 + 4.0 * fabs(q[i]) * U32) * ref, "q=%.9g: weight %.9g, ref %.9g", q[i],
                  out[i], ref);
    }
    free(q), free(out), free(scratch);
}

/* The model sizes one buffer for self- and cross-attention with the larger Lk: the scratch size must not
 * drop when any argument grows (the query block shrinks for long keys, around Lk = 16384, 32768, ...). */
Test(kernels, attention_scratch_monotone) {
    const int lqs[] = {1, 67, 300, 32760};
    for (int a = 0; a < 4; a++) {
        size_t prev = 0;
        for (int lk = 1; lk <= 70000; lk++) {
            const size_t n = attention_scratch_floats(lqs[a], lk, 12);
            cr_assert(n >= prev, "scratch(Lq=%d, Lk=%d) = %zu < %zu at Lk-1", lqs[a], lk, n, prev);
            cr_assert(attention_scratch_floats(lqs[a] + 1, lk, 12) >= n, "scratch shrinks with Lq at Lq=%d Lk=%d",
                      lqs[a], lk);
            cr_assert(attention_scratch_floats(lqs[a], lk, 13) >= n, "scratch shrinks with heads at Lq=%d Lk=%d",
                      lqs[a], lk);
            prev = n;
        }
    }
}

/* Stability: q and k scaled by 30 make logits of several hundred (exp would overflow without the max
 * subtraction) and the softmax nearly one-hot. The logits' own fp32 error grows with them: ~hd*u*sum|q_d k_d|
 * ~ 16 * 6e-8 * 900*16/4/4 ~ 5e-4 absolute in a logit (worst case), i.e. a 5e-4 relative change of a
 * softmax weight; tolerance 1e-3 relative to max|out| (observed ~1e-5). */
Test(kernels, attention_large_logits) {
    const double err = run_attention_case(67, 45, 3, 16, 30.0f, 24);
    cr_assert(err < 1e-3, "attention with logits ~1e3: rel err %g", err);
}
