/* A naive, single-file reference of the Wan2.1 DiT forward pass in double precision, written straight from the
 * PyTorch module (wan/modules/model.py) with plain loops and no shared code with models/kernels.c, so the optimised
 * CPU path is checked against an independent reading of the architecture. */
#include "tests/ref_forward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double *dalloc(size_t n) { return calloc(n ? n : 1, sizeof(double)); }

/* y[M][N] = x[M][K] W[N][K]^T + b */
static void ref_linear(double *y, const double *x, const float *W, const float *b, int M, int K, int N) {
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double acc = b ? b[n] : 0.0;
            for (int k = 0; k < K; k++) acc += x[(size_t)m * K + k] * W[(size_t)n * K + k];
            y[(size_t)m * N + n] = acc;
        }
}

static void ref_layernorm(double *y, const double *x, const float *w, const float *b, int rows, int dim, double eps) {
    for (int r = 0; r < rows; r++) {
        const double *xr = x + (size_t)r * dim;
        double mean = 0, var = 0;
        for (int i = 0; i < dim; i++) mean += xr[i];
        mean /= dim;
        for (int i = 0; i < dim; i++) var += (xr[i] - mean) * (xr[i] - mean);
        var /= dim;
        for (int i = 0; i < dim; i++) {
            double v = (xr[i] - mean) / sqrt(var + eps);
            y[(size_t)r * dim + i] = w ? v * w[i] + b[i] : v;
        }
    }
}

static void ref_rmsnorm(double *x, const float *w, int rows, int dim, double eps) {
    for (int r = 0; r < rows; r++) {
        double *xr = x + (size_t)r * dim, ms = 0;
        for (int i = 0; i < dim; i++) ms += xr[i] * xr[i];
        double inv = 1.0 / sqrt(ms / dim + eps);
        for (int i = 0; i < dim; i++) xr[i] = xr[i] * inv * w[i];
    }
}

static double gelu(double x) { return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x))); }
static double silu(double x) { return x / (1.0 + exp(-x)); }

/* RoPE angle of complex pair p of head_dim/2 = c pairs for token (f, h, w): rope_params(1024, d_part) for the
 * three parts [c - 2(c/3), c/3, c/3], each with frequencies theta^(-2j/d_part). */
static double rope_angle(int p, int c, int f, int h, int w, double theta) {
    int part0 = c - 2 * (c / 3), part1 = c / 3;
    int j, pos, pairs;
    if (p < part0) j = p, pos = f, pairs = part0;
    else if (p < part0 + part1) j = p - part0, pos = h, pairs = part1;
    else j = p - part0 - part1, pos = w, pairs = c / 3;
    double d_part = 2.0 * pairs;
    return pos * (1.0 / pow(theta, (2.0 * j) / d_part));
}

static void ref_rope(double *x, int tf, int th, int tw, int heads, int hd, double theta) {
    int c = hd / 2;
    for (int fi = 0; fi < tf; fi++)
        for (int hi = 0; hi < th; hi++)
            for (int wi = 0; wi < tw; wi++) {
                size_t l = ((size_t)fi * th + hi) * tw + wi;
                for (int h = 0; h < heads; h++)
                    for (int p = 0; p < c; p++) {
                        double a = rope_angle(p, c, fi, hi, wi, theta);
                        double *z = x + (l * heads + h) * hd + 2 * p;
                        double re = z[0] * cos(a) - z[1] * sin(a), im = z[0] * sin(a) + z[1] * cos(a);
                        z[0] = re, z[1] = im;
                    }
            }
}

static void ref_attention(double *out, const double *q, const double *k, const double *v, int Lq, int Lk, int heads,
                          int hd) {
    int d = heads * hd;
    double *s = dalloc((size_t)Lk);
    for (int h = 0; h < heads; h++)
        for (int i = 0; i < Lq; i++) {
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < Lk; j++) {
                double acc = 0;
                for (int t = 0; t < hd; t++) acc += q[(size_t)i * d + h * hd + t] * k[(size_t)j * d + h * hd + t];
                s[j] = acc / sqrt((double)hd);
                if (s[j] > mx) mx = s[j];
            }
            for (int j = 0; j < Lk; j++) sum += (s[j] = exp(s[j] - mx));
            for (int t = 0; t < hd; t++) {
                double acc = 0;
                for (int j = 0; j < Lk; j++) acc += s[j] * v[(size_t)j * d + h * hd + t];
                out[(size_t)i * d + h * hd + t] = acc / sum;
            }
        }
    free(s);
}

void ref_forward(const DitModel *m, int F, int H, int W, const float *x, float timestep, const float *text,
                 double *out) {
    const DitConfig *c = &m->cfg;
    const DitWeights *wt = &m->w;
    const int pt = c->patch_t, ph = c->patch_h, pw = c->patch_w, P = pt * ph * pw;
    const int tf = F / pt, th = H / ph, tw = W / pw, L = tf * th * tw, d = c->dim, T = c->text_len;
    const int heads = c->num_heads, hd = d / heads;

    /* Patch embedding as the Conv3d it is: sum over (channel, kernel offsets). */
    double *xt = dalloc((size_t)L * d);
    for (int fi = 0; fi < tf; fi++)
        for (int hi = 0; hi < th; hi++)
            for (int wi = 0; wi < tw; wi++) {
                size_t l = ((size_t)fi * th + hi) * tw + wi;
                for (int o = 0; o < d; o++) {
                    double acc = wt->patch_b[o];
                    for (int ch = 0; ch < c->in_dim; ch++)
                        for (int a = 0; a < pt; a++)
                            for (int b = 0; b < ph; b++)
                                for (int e = 0; e < pw; e++)
                                    acc += wt->patch_w[((((size_t)o * c->in_dim + ch) * pt + a) * ph + b) * pw + e] *
                                           x[(((size_t)ch * F + fi * pt + a) * H + hi * ph + b) * W + wi * pw + e];
                    xt[l * d + o] = acc;
                }
            }

    /* Time embedding. */
    int half = c->freq_dim / 2;
    double *sinus = dalloc((size_t)c->freq_dim), *h1 = dalloc((size_t)d), *e = dalloc((size_t)d);
    double *se = dalloc((size_t)d), *e0 = dalloc((size_t)6 * d);
    for (int j = 0; j < half; j++) {
        double arg = (double)timestep * pow(10000.0, -(double)j / half);
        sinus[j] = cos(arg), sinus[half + j] = sin(arg);
    }
    /* The model's Linear runs in fp32 on an fp32 sinusoid, so round the sinusoid like the module does. */
    for (int j = 0; j < c->freq_dim; j++) sinus[j] = (float)sinus[j];
    ref_linear(h1, sinus, wt->time1_w, wt->time1_b, 1, c->freq_dim, d);
    for (int i = 0; i < d; i++) h1[i] = silu(h1[i]);
    ref_linear(e, h1, wt->time2_w, wt->time2_b, 1, d, d);
    for (int i = 0; i < d; i++) se[i] = silu(e[i]);
    ref_linear(e0, se, wt->proj_w, wt->proj_b, 1, d, 6 * d);

    /* Text embedding over all rows (zero padding included). */
    double *txt = dalloc((size_t)T * c->text_dim), *tmid = dalloc((size_t)T * d), *ctx = dalloc((size_t)T * d);
    for (size_t i = 0; i < (size_t)T * c->text_dim; i++) txt[i] = text[i];
    ref_linear(tmid, txt, wt->text1_w, wt->text1_b, T, c->text_dim, d);
    for (size_t i = 0; i < (size_t)T * d; i++) tmid[i] = gelu(tmid[i]);
    ref_linear(ctx, tmid, wt->text2_w, wt->text2_b, T, d, d);

    double *nrm = dalloc((size_t)L * d), *q = dalloc((size_t)L * d), *k = dalloc((size_t)L * d);
    double *v = dalloc((size_t)L * d), *att = dalloc((size_t)L * d), *y = dalloc((size_t)L * d);
    double *hid = dalloc((size_t)L * c->ffn_dim), *ck = dalloc((size_t)T * d), *cv = dalloc((size_t)T * d);
    double *mod = dalloc((size_t)6 * d);
    for (int layer = 0; layer < c->num_layers; layer++) {
        const DitBlockWeights *b = &wt->blocks[layer];
        for (int i = 0; i < 6 * d; i++) mod[i] = b->modulation[i] + e0[i];
        ref_layernorm(nrm, xt, NULL, NULL, L, d, c->eps);
        for (int l = 0; l < L; l++)
            for (int i = 0; i < d; i++) nrm[(size_t)l * d + i] = nrm[(size_t)l * d + i] * (1 + mod[d + i]) + mod[i];
        ref_linear(q, nrm, b->sa_q_w, b->sa_q_b, L, d, d);
        ref_linear(k, nrm, b->sa_k_w, b->sa_k_b, L, d, d);
        ref_linear(v, nrm, b->sa_v_w, b->sa_v_b, L, d, d);
        ref_rmsnorm(q, b->sa_norm_q, L, d, c->eps);
        ref_rmsnorm(k, b->sa_norm_k, L, d, c->eps);
        ref_rope(q, tf, th, tw, heads, hd, c->rope_theta);
        ref_rope(k, tf, th, tw, heads, hd, c->rope_theta);
        ref_attention(att, q, k, v, L, L, heads, hd);
        ref_linear(y, att, b->sa_o_w, b->sa_o_b, L, d, d);
        for (int l = 0; l < L; l++)
            for (int i = 0; i < d; i++) xt[(size_t)l * d + i] += y[(size_t)l * d + i] * mod[2 * d + i];

        ref_layernorm(nrm, xt, b->norm3_w, b->norm3_b, L, d, c->eps);
        ref_linear(q, nrm, b->ca_q_w, b->ca_q_b, L, d, d);
        ref_rmsnorm(q, b->ca_norm_q, L, d, c->eps);
        ref_linear(ck, ctx, b->ca_k_w, b->ca_k_b, T, d, d);
        ref_rmsnorm(ck, b->ca_norm_k, T, d, c->eps);
        ref_linear(cv, ctx, b->ca_v_w, b->ca_v_b, T, d, d);
        ref_attention(att, q, ck, cv, L, T, heads, hd);
        ref_linear(y, att, b->ca_o_w, b->ca_o_b, L, d, d);
        for (size_t i = 0; i < (size_t)L * d; i++) xt[i] += y[i];

        ref_layernorm(nrm, xt, NULL, NULL, L, d, c->eps);
        for (int l = 0; l < L; l++)
            for (int i = 0; i < d; i++)
                nrm[(size_t)l * d + i] = nrm[(size_t)l * d + i] * (1 + mod[4 * d + i]) + mod[3 * d + i];
        ref_linear(hid, nrm, b->ffn1_w, b->ffn1_b, L, d, c->ffn_dim);
        for (size_t i = 0; i < (size_t)L * c->ffn_dim; i++) hid[i] = gelu(hid[i]);
        ref_linear(y, hid, b->ffn2_w, b->ffn2_b, L, c->ffn_dim, d);
        for (int l = 0; l < L; l++)
            for (int i = 0; i < d; i++) xt[(size_t)l * d + i] += y[(size_t)l * d + i] * mod[5 * d + i];
    }

    /* Head: modulation from e (not e0), then unpatchify 'fhwpqrc->cfphqwr'. */
    ref_layernorm(nrm, xt, NULL, NULL, L, d, c->eps);
    for (int l = 0; l < L; l++)
        for (int i = 0; i < d; i++) {
            double shift = wt->head_modulation[i] + e[i], scale = wt->head_modulation[d + i] + e[i];
            nrm[(size_t)l * d + i] = nrm[(size_t)l * d + i] * (1 + scale) + shift;
        }
    int out_w = c->out_dim * P;
    double *po = dalloc((size_t)L * out_w);
    ref_linear(po, nrm, wt->head_w, wt->head_b, L, d, out_w);
    for (int fi = 0; fi < tf; fi++)
        for (int hi = 0; hi < th; hi++)
            for (int wi = 0; wi < tw; wi++) {
                size_t l = ((size_t)fi * th + hi) * tw + wi;
                for (int a = 0; a < pt; a++)
                    for (int b = 0; b < ph; b++)
                        for (int e2 = 0; e2 < pw; e2++)
                            for (int ch = 0; ch < c->out_dim; ch++)
                                out[(((size_t)ch * F + fi * pt + a) * H + hi * ph + b) * W + wi * pw + e2] =
                                    po[l * out_w + ((a * ph + b) * pw + e2) * c->out_dim + ch];
            }

    if (c->prediction == DIT_PREDICT_X0) { /* the head predicted x0: the model returns v = (x_t - x0) / sigma */
        const double sigma = fmax(timestep / 1000.0, c->sigma_min);
        for (size_t i = 0; i < (size_t)c->out_dim * F * H * W; i++) out[i] = (x[i] - out[i]) / sigma;
    }

    double *bufs[] = {xt, sinus, h1, e, se, e0, txt, tmid, ctx, nrm, q, k, v, att, y, hid, ck, cv, mod, po};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
}
