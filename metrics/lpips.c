/* LPIPS v0.1 with the AlexNet backbone, as richzhang/PerceptualSimilarity's lpips.LPIPS(net='alex', version='0.1')
 * computes it for inputs in [0,1] (normalize=True):
 *   x -> 2x - 1 -> ScalingLayer (x - shift) / scale
 *   -> torchvision alexnet.features, tapped after each of its five ReLUs:
 *        conv1 64x3x11x11 s4 p2, ReLU [tap 0], maxpool 3 s2,
 *        conv2 192x64x5x5 p2,   ReLU [tap 1], maxpool 3 s2,
 *        conv3 384x192x3x3 p1,  ReLU [tap 2],
 *        conv4 256x384x3x3 p1,  ReLU [tap 3],
 *        conv5 256x256x3x3 p1,  ReLU [tap 4]
 *      (max pools without padding and with floor sizes, torch's ceil_mode=False)
 *   -> per tap: unit-normalise each pixel's channel vector, x / (sqrt(sum x²) + 1e-10); square the difference
 *      of the two images; 1x1 conv with linK (one output, no bias); mean over pixels
 *   -> sum of the five tap values.
 * The backbone runs in float32 like torch (im2col + cblas_sgemm); the head runs in double. */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "metrics/metrics.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the weight files are little-endian float32");

/* The weight tensors, named as the files in LPIPS_WEIGHTS_DIR (without ".f32"): torchvision's alexnet.features
 * state-dict keys, then LPIPS's linear heads. Keep in step with the list in metrics/lpips_embed.sh. */
enum { LPIPS_TAPS = 5, LPIPS_TENSORS = 15 };
typedef struct {
    const char *name;
    int shape[4];
} LpipsTensor;
static const LpipsTensor lpips_tensors[LPIPS_TENSORS] = {
    {"features.0.weight", {64, 3, 11, 11}},   {"features.0.bias", {64, 1, 1, 1}},
    {"features.3.weight", {192, 64, 5, 5}},   {"features.3.bias", {192, 1, 1, 1}},
    {"features.6.weight", {384, 192, 3, 3}},  {"features.6.bias", {384, 1, 1, 1}},
    {"features.8.weight", {256, 384, 3, 3}},  {"features.8.bias", {256, 1, 1, 1}},
    {"features.10.weight", {256, 256, 3, 3}}, {"features.10.bias", {256, 1, 1, 1}},
    {"lin0.weight", {1, 64, 1, 1}},           {"lin1.weight", {1, 192, 1, 1}},
    {"lin2.weight", {1, 384, 1, 1}},          {"lin3.weight", {1, 256, 1, 1}},
    {"lin4.weight", {1, 256, 1, 1}},
};
/* Tensor indices: conv l has its weight at 2l and bias at 2l+1; the head of tap l is at LPIPS_LIN + l. */
enum { LPIPS_LIN = 10 };

/* The conv of each tap; pool_before: a 3x3 stride-2 max pool precedes it. */
typedef struct {
    int cin, cout, k, stride, pad, pool_before;
} LpipsConv;
static const LpipsConv lpips_convs[LPIPS_TAPS] = {
    {3, 64, 11, 4, 2, 0}, {64, 192, 5, 1, 2, 1}, {192, 384, 3, 1, 1, 1}, {384, 256, 3, 1, 1, 0}, {256, 256, 3, 1, 1, 0},
};

static const float lpips_shift[3] = {-.030f, -.088f, -.188f};
static const float lpips_scale[3] = {.458f, .448f, .450f};

/* From the file metrics/lpips.mk generates (build/metrics/lpips_weights.c): the embedded set, complete or empty. */
extern const char lpips_embedded_reason[];            /* "" when a complete, size-checked set is embedded */
extern const char *const lpips_embedded_name[];       /* NULL-terminated */
extern const unsigned char *const lpips_embedded_data[];
extern const size_t lpips_embedded_bytes[];

struct LpipsNet {
    const float *tensor[LPIPS_TENSORS];
    float *owned;   /* the weights read by lpips_create_from_dir; NULL when tensor[] points into the binary */
};

static size_t tensor_count(const LpipsTensor *t) {
    return (size_t)t->shape[0] * t->shape[1] * t->shape[2] * t->shape[3];
}

static void tensor_shape_text(const LpipsTensor *t, char *buf, size_t size) {
    snprintf(buf, size, "[%d, %d, %d, %d]", t->shape[0], t->shape[1], t->shape[2], t->shape[3]);
}

int lpips_available(void) {
    return lpips_embedded_reason[0] == '\0';
}

const char *lpips_unavailable_reason(void) {
    return lpips_embedded_reason;
}

int lpips_create(LpipsNet **net, Error *err) {
    *net = NULL;
    if (!lpips_available()) return error_set(err, "LPIPS unavailable: %s", lpips_embedded_reason);
    LpipsNet *n = calloc(1, sizeof *n);
    if (!n) return error_set(err, "out of memory for the LPIPS network");
    for (int t = 0; t < LPIPS_TENSORS; t++) {
        const LpipsTensor *spec = &lpips_tensors[t];
        int e = 0;
        while (lpips_embedded_name[e] && strcmp(lpips_embedded_name[e], spec->name) != 0) e++;
        /* The build checked names and sizes already; checking again costs nothing and guards a stale table. */
        if (!lpips_embedded_name[e] || lpips_embedded_bytes[e] != tensor_count(spec) * sizeof(float)) {
            free(n);
            return error_set(err, "LPIPS: the embedded weights lack a valid %s.f32; rebuild", spec->name);
        }
        n->tensor[t] = (const float *)lpips_embedded_data[e];
    }
    *net = n;
    return 0;
}

/* Allocates net with room for every tensor in one block; tensor[] points into it. */
static int lpips_alloc(LpipsNet **net, Error *err) {
    size_t total = 0;
    for (int t = 0; t < LPIPS_TENSORS; t++) total += tensor_count(&lpips_tensors[t]);
    LpipsNet *n = calloc(1, sizeof *n);
    float *owned = malloc(total * sizeof(float));
    if (!n || !owned) {
        free(n);
        free(owned);
        return error_set(err, "out of memory for the LPIPS weights");
    }
    n->owned = owned;
    for (int t = 0; t < LPIPS_TENSORS; t++) {
        n->tensor[t] = owned;
        owned += tensor_count(&lpips_tensors[t]);
    }
    *net = n;
    return 0;
}

int lpips_create_synthetic(LpipsNet **net, uint64_t seed, Error *err) {
    *net = NULL;
    if (lpips_alloc(net, err) != 0) return -1;
    for (int t = 0; t < LPIPS_TENSORS; t++) {
        const LpipsTensor *spec = &lpips_tensors[t];
        size_t count = tensor_count(spec);
        float *x = (float *)(*net)->tensor[t];
        if (t < LPIPS_LIN && t % 2 == 0) {
            /* He-normal conv weights keep the ReLU activations' scale roughly constant through the five layers. */
            philox_normal(x, count, seed, (uint64_t)t);
            float std = sqrtf(2.0f / (float)(spec->shape[1] * spec->shape[2] * spec->shape[3]));
            for (size_t i = 0; i < count; i++) x[i] *= std;
        } else {
            /* Biases in [-0.05, 0.05); heads in [0, 0.1), non-negative like the trained ones. */
            philox_uniform(x, count, seed, (uint64_t)t);
            for (size_t i = 0; i < count; i++) x[i] = t < LPIPS_LIN ? 0.1f * x[i] - 0.05f : 0.1f * x[i];
        }
    }
    return 0;
}

int lpips_create_from_dir(LpipsNet **net, const char *dir, Error *err) {
    *net = NULL;
    LpipsNet *n;
    if (lpips_alloc(&n, err) != 0) return -1;
    for (int t = 0; t < LPIPS_TENSORS; t++) {
        const LpipsTensor *spec = &lpips_tensors[t];
        size_t count = tensor_count(spec);
        float *x = (float *)n->tensor[t];
        char path[4096], shape[64];
        snprintf(path, sizeof path, "%s/%s.f32", dir, spec->name);
        tensor_shape_text(spec, shape, sizeof shape);
        FILE *f = fopen(path, "rb");
        if (!f) {
            error_set(err, "%s: cannot open LPIPS weight %s: %s", path, shape, strerror(errno));
            lpips_destroy(n);
            return -1;
        }
        /* Exactly count floats: one more byte means the wrong tensor or a corrupt file. */
        size_t got = fread(x, sizeof(float), count, f);
        int extra = fgetc(f) != EOF;
        fclose(f);
        if (got != count || extra) {
            error_set(err, "%s: expected %zu bytes (float32 %s), the file is %s", path, count * sizeof(float), shape,
                      extra ? "longer" : "shorter");
            lpips_destroy(n);
            return -1;
        }
        for (size_t i = 0; i < count; i++) {
            if (!isfinite(x[i])) {
                error_set(err, "%s: value %zu is not finite", path, i);
                lpips_destroy(n);
                return -1;
            }
        }
    }
    *net = n;
    return 0;
}

void lpips_destroy(LpipsNet *net) {
    if (!net) return;
    free(net->owned);
    free(net);
}

/* Activation sizes through the backbone for an input of height x width. */
typedef struct {
    int h[LPIPS_TAPS], w[LPIPS_TAPS];            /* tap (conv output) sizes */
    int in_h[LPIPS_TAPS], in_w[LPIPS_TAPS];      /* conv input sizes (after the pool, if any) */
} LpipsGeometry;

static int pooled(int n) {
    return n >= 3 ? (n - 3) / 2 + 1 : 0;
}

/* 0 when every layer has at least one output pixel. */
static int lpips_geometry(int height, int width, LpipsGeometry *g) {
    int h = height, w = width;
    for (int l = 0; l < LPIPS_TAPS; l++) {
        const LpipsConv *c = &lpips_convs[l];
        if (c->pool_before) {
            h = pooled(h);
            w = pooled(w);
        }
        g->in_h[l] = h;
        g->in_w[l] = w;
        if (h < 1 || w < 1 || h + 2 * c->pad < c->k || w + 2 * c->pad < c->k) return -1;
        h = (h + 2 * c->pad - c->k) / c->stride + 1;
        w = (w + 2 * c->pad - c->k) / c->stride + 1;
        g->h[l] = h;
        g->w[l] = w;
    }
    return 0;
}

/* col[(ci*k + ky)*k + kx][oy*ow + ox] = in[ci][oy*stride - pad + ky][ox*stride - pad + kx], zero outside. */
static void im2col(float *col, const float *in, int cin, int h, int w, const LpipsConv *c, int oh, int ow) {
    int k = c->k;
    /* Threads only pay off on large copies (64x64 frames need ~100k values per layer). */
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)cin * k * k * oh * ow >= ((size_t)1 << 20))
    for (int ci = 0; ci < cin; ci++) {
        for (int kk = 0; kk < k * k; kk++) {
            int ky = kk / k, kx = kk % k;
            float *dst = col + ((size_t)ci * k * k + kk) * oh * ow;
            for (int oy = 0; oy < oh; oy++) {
                int iy = oy * c->stride - c->pad + ky;
                for (int ox = 0; ox < ow; ox++) {
                    int ix = ox * c->stride - c->pad + kx;
                    int inside = iy >= 0 && iy < h && ix >= 0 && ix < w;
                    dst[oy * ow + ox] = inside ? in[((size_t)ci * h + iy) * w + ix] : 0.0f;
                }
            }
        }
    }
}

/* out[cout][oh*ow] = relu(W[cout][cin*k*k] · col + bias): every conv of the backbone is followed by a ReLU. */
static void conv_relu(float *out, const float *in, int h, int w, const LpipsConv *c, const float *weight,
                      const float *bias, int oh, int ow, float *col) {
    int n = oh * ow, kdim = c->cin * c->k * c->k;
    im2col(col, in, c->cin, h, w, c, oh, ow);
    for (int co = 0; co < c->cout; co++)
        for (int p = 0; p < n; p++) out[(size_t)co * n + p] = bias[co];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->cout, n, kdim, 1.0f, weight, kdim, col, n, 1.0f, out, n);
    for (size_t i = 0; i < (size_t)c->cout * n; i++) out[i] = out[i] > 0.0f ? out[i] : 0.0f;
}

/* 3x3 max pool, stride 2, no padding (torch MaxPool2d(3, 2)). */
static void maxpool3s2(float *out, const float *in, int channels, int h, int w) {
    int oh = pooled(h), ow = pooled(w);
    for (int ch = 0; ch < channels; ch++) {
        const float *src = in + (size_t)ch * h * w;
        float *dst = out + (size_t)ch * oh * ow;
        for (int oy = 0; oy < oh; oy++) {
            for (int ox = 0; ox < ow; ox++) {
                float m = src[(2 * oy) * w + 2 * ox];
                for (int dy = 0; dy < 3; dy++)
                    for (int dx = 0; dx < 3; dx++) {
                        float v = src[(2 * oy + dy) * w + 2 * ox + dx];
                        m = v > m ? v : m;
                    }
                dst[oy * ow + ox] = m;
            }
        }
    }
}

/* Buffers for one forward pass, carved out of one allocation. */
typedef struct {
    float *input;                  /* [3][H][W] */
    float *tap[2][LPIPS_TAPS];     /* per image, the ReLU outputs */
    float *pool;                   /* the largest pooled activation */
    float *col;                    /* the largest im2col matrix */
    float *block;
} LpipsBuffers;

static int lpips_buffers(LpipsBuffers *b, int height, int width, const LpipsGeometry *g) {
    size_t input = (size_t)3 * height * width, taps = 0, pool = 0, col = 0;
    for (int l = 0; l < LPIPS_TAPS; l++) {
        const LpipsConv *c = &lpips_convs[l];
        size_t out = (size_t)g->h[l] * g->w[l];
        taps += (size_t)c->cout * out;
        if (c->pool_before) {
            size_t p = (size_t)c->cin * g->in_h[l] * g->in_w[l];
            pool = p > pool ? p : pool;
        }
        size_t cl = (size_t)c->cin * c->k * c->k * out;
        col = cl > col ? cl : col;
    }
    b->block = malloc(sizeof(float) * (input + 2 * taps + pool + col));
    if (!b->block) return -1;
    float *next = b->block;
    b->input = next;
    next += input;
    for (int img = 0; img < 2; img++) {
        for (int l = 0; l < LPIPS_TAPS; l++) {
            b->tap[img][l] = next;
            next += (size_t)lpips_convs[l].cout * g->h[l] * g->w[l];
        }
    }
    b->pool = next;
    next += pool;
    b->col = next;
    return 0;
}

/* The five ReLU outputs of AlexNet for one RGB8 frame, after [0,1] -> [-1,1] and the scaling layer
 * (float32 operations in torch's order). */
static void lpips_features(const LpipsNet *net, const uint8_t *rgb, int height, int width, const LpipsGeometry *g,
                           LpipsBuffers *b, float *taps[LPIPS_TAPS]) {
    size_t plane = (size_t)height * width;
    for (size_t p = 0; p < plane; p++) {
        for (int ch = 0; ch < 3; ch++) {
            float x = (float)rgb[3 * p + ch] / 255.0f;
            x = 2.0f * x - 1.0f;
            b->input[ch * plane + p] = (x - lpips_shift[ch]) / lpips_scale[ch];
        }
    }
    const float *cur = b->input;
    int h = height, w = width;
    for (int l = 0; l < LPIPS_TAPS; l++) {
        const LpipsConv *c = &lpips_convs[l];
        if (c->pool_before) {
            maxpool3s2(b->pool, cur, c->cin, h, w);
            cur = b->pool;
        }
        conv_relu(taps[l], cur, g->in_h[l], g->in_w[l], c, net->tensor[2 * l], net->tensor[2 * l + 1], g->h[l],
                  g->w[l], b->col);
        cur = taps[l];
        h = g->h[l];
        w = g->w[l];
    }
}

/* Spatial mean of lin · (a/|a| - b/|b|)² for one tap, [channels][pixels] activations. */
static double lpips_tap_distance(const float *a, const float *b, const float *lin, int channels, int pixels) {
    double total = 0.0;
    for (int p = 0; p < pixels; p++) {
        double na = 0.0, nb = 0.0;
        for (int ch = 0; ch < channels; ch++) {
            double x = a[(size_t)ch * pixels + p], y = b[(size_t)ch * pixels + p];
            na += x * x;
            nb += y * y;
        }
        /* normalize_tensor: the epsilon goes after the square root, so an all-zero pixel stays zero. */
        double da = sqrt(na) + 1e-10, db = sqrt(nb) + 1e-10, sum = 0.0;
        for (int ch = 0; ch < channels; ch++) {
            double d = a[(size_t)ch * pixels + p] / da - b[(size_t)ch * pixels + p] / db;
            sum += lin[ch] * (d * d);
        }
        total += sum;
    }
    return total / pixels;
}

int lpips_fits(int height, int width) {
    LpipsGeometry g;
    return height > 0 && width > 0 && lpips_geometry(height, width, &g) == 0;
}

int lpips_frame_u8(LpipsNet *net, const uint8_t *a, const uint8_t *b, int height, int width, double *out, Error *err) {
    LpipsGeometry g;
    if (height <= 0 || width <= 0 || lpips_geometry(height, width, &g) != 0)
        return error_set(err, "LPIPS (AlexNet) needs frames of at least 31x31, got %dx%d", width, height);
    LpipsBuffers buf;
    if (lpips_buffers(&buf, height, width, &g) != 0)
        return error_set(err, "out of memory for LPIPS of a %dx%d frame", width, height);
    lpips_features(net, a, height, width, &g, &buf, buf.tap[0]);
    lpips_features(net, b, height, width, &g, &buf, buf.tap[1]);
    double total = 0.0;
    for (int l = 0; l < LPIPS_TAPS; l++)
        total += lpips_tap_distance(buf.tap[0][l], buf.tap[1][l], net->tensor[LPIPS_LIN + l], lpips_convs[l].cout,
                                    g.h[l] * g.w[l]);
    free(buf.block);
    *out = total;
    return 0;
}
