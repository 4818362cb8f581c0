/* Wan2.1 VAE decoder, CPU fp32: see models/vae/vae.h. Specification: Wan-Video/Wan2.1 wan/modules/vae.py
 * (CausalConv3d, RMS_norm, Resample, ResidualBlock, AttentionBlock, Decoder3d, WanVAE_.decode, WanVAE). */
#include "models/vae/vae.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "models/kernels.h"
#include "models/safetensors.h"
#include "models/vae/vae_backend.h"
#ifdef CACHEBENCH_CUDA
#include "models/vae/vae_cuda.h"
#endif

/* WanVAE.__init__: the latent statistics the DiT's latents were normalised with. */
const float VAE_LATENT_MEAN[VAE_Z_DIM] = {-0.7571f, -0.7089f, -0.9113f, 0.1075f, -0.1745f, 0.9653f,
                                             -0.1517f, 1.5508f,  0.4134f,  -0.0715f, 0.5517f, -0.3632f,
                                             -0.1922f, -0.9497f, 0.2503f,  -0.2921f};
const float VAE_LATENT_STD[VAE_Z_DIM] = {2.8184f, 1.4541f, 2.3275f, 2.6558f, 1.2196f, 1.7708f, 2.6052f, 2.0743f,
                                            3.2687f, 2.1526f, 2.8652f, 1.5579f, 1.6382f, 1.1253f, 2.8251f, 1.9160f};

/* im2col tiles hold at most this many floats (16 MiB), or one output row where a row needs more. */
enum { COL_BUDGET_FLOATS = 1 << 22 };
/* Elementwise work goes parallel from this many floats. */
enum { PAR_MIN_FLOATS = 1 << 15 };

/* ---------------------------------------------------------------------------------------------- */
/* config */

VaeConfig vae_config_wan21(void) {
    VaeConfig c = {.z_dim = VAE_Z_DIM,
                   .dim = 96,
                   .num_stages = 4,
                   .dim_mult = {1, 2, 4, 4},
                   .num_res_blocks = 2,
                   .temporal_upsample = {1, 1, 0}};
    return c;
}

int vae_config_check(const VaeConfig *c, Error *err) {
    if (c->z_dim != VAE_Z_DIM)
        return error_set(err, "VAE z_dim is %d; only the Wan2.1 latent (%d channels) has known statistics", c->z_dim,
                         VAE_Z_DIM);
    if (c->dim < 1 || c->dim > 4096) return error_set(err, "VAE dim %d is outside 1..4096", c->dim);
    if (c->num_stages < 1 || c->num_stages > VAE_MAX_STAGES)
        return error_set(err, "VAE has %d stages; 1..%d are supported", c->num_stages, VAE_MAX_STAGES);
    if (c->num_res_blocks < 0 || c->num_res_blocks > 16)
        return error_set(err, "VAE num_res_blocks %d is outside 0..16", c->num_res_blocks);
    for (int i = 0; i < c->num_stages; i++) {
        if (c->dim_mult[i] < 1 || c->dim_mult[i] > 64)
            return error_set(err, "VAE dim_mult[%d] = %d is outside 1..64", i, c->dim_mult[i]);
        /* The upsampler of each stage halves the channels for the next stage (Decoder3d: in_dim // 2). */
        if (i < c->num_stages - 1 && (c->dim * c->dim_mult[c->num_stages - 1 - i]) % 2)
            return error_set(err, "VAE stage %d has an odd width %d; its upsampler halves it", i,
                             c->dim * c->dim_mult[c->num_stages - 1 - i]);
    }
    return 0;
}

/* Decoder3d's dims: [dim * dim_mult[-1]] + [dim * m for m in reversed(dim_mult)]. */
static int stage_width(const VaeConfig *c, int i) { return c->dim * c->dim_mult[c->num_stages - 1 - i]; }

int vae_spatial_scale(const VaeConfig *cfg) { return 1 << (cfg->num_stages - 1); }

int vae_num_frames(const VaeConfig *cfg, int F) {
    if (F <= 0) return 0;
    int k = 0;
    for (int i = 0; i < cfg->num_stages - 1; i++) k += cfg->temporal_upsample[i] != 0;
    return 1 + (F - 1) * (1 << k);
}

/* ---------------------------------------------------------------------------------------------- */
/* network structure */

static VaeConv make_conv(int cin, int cout, int kt, int ks) {
    VaeConv c = {.cin = cin, .cout = cout, .kt = kt, .ks = ks};
    return c;
}

static int build_blocks(VaeModel *m, const VaeConfig *cfg, Error *err) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    if (vae_config_check(cfg, err)) return -1;
    const int n = cfg->num_stages, nrb = cfg->num_res_blocks, mid = stage_width(cfg, 0);
    int count = 3;
    for (int i = 0; i < n; i++) count += nrb + 1 + (i < n - 1);
    m->blocks = calloc((size_t)count, sizeof *m->blocks);
    if (!m->blocks) return error_set(err, "out of memory for %d VAE blocks", count);
    m->num_blocks = count;
    m->conv2 = make_conv(cfg->z_dim, cfg->z_dim, 1, 1);
    m->conv_in = make_conv(cfg->z_dim, mid, 3, 3);

    int b = 0, level = 0;
    for (int j = 0; j < 3; j++) {
        VaeBlock *k = &m->blocks[b++];
        k->kind = j == 1 ? VAE_BLOCK_ATTENTION : VAE_BLOCK_RESIDUAL;
        k->cin = k->cout = mid;
        snprintf(k->name, sizeof k->name, "decoder.middle.%d", j);
    }
    int up_index = 0, in_dim = mid;
    for (int i = 0; i < n; i++) {
        const int out_dim = stage_width(cfg, i);
        if (i >= 1) in_dim /= 2; /* the previous stage's upsampler halved it */
        for (int r = 0; r < nrb + 1; r++) {
            VaeBlock *k = &m->blocks[b++];
            k->kind = VAE_BLOCK_RESIDUAL;
            k->cin = in_dim;
            k->cout = out_dim;
            k->level = level;
            snprintf(k->name, sizeof k->name, "decoder.upsamples.%d", up_index++);
            in_dim = out_dim;
        }
        if (i < n - 1) {
            VaeBlock *k = &m->blocks[b++];
            k->kind = cfg->temporal_upsample[i] ? VAE_BLOCK_UPSAMPLE3D : VAE_BLOCK_UPSAMPLE2D;
            k->cin = out_dim;
            k->cout = out_dim / 2;
            k->level = level++;
            snprintf(k->name, sizeof k->name, "decoder.upsamples.%d", up_index++);
        }
    }
    for (int j = 0; j < count; j++) {
        VaeBlock *k = &m->blocks[j];
        switch (k->kind) {
        case VAE_BLOCK_RESIDUAL:
            k->conv1 = make_conv(k->cin, k->cout, 3, 3);
            k->conv2 = make_conv(k->cout, k->cout, 3, 3);
            k->has_shortcut = k->cin != k->cout;
            if (k->has_shortcut) k->shortcut = make_conv(k->cin, k->cout, 1, 1);
            break;
        case VAE_BLOCK_ATTENTION:
            k->conv1 = make_conv(k->cin, 3 * k->cin, 1, 1);
            k->conv2 = make_conv(k->cin, k->cin, 1, 1);
            break;
        case VAE_BLOCK_UPSAMPLE3D:
            k->conv2 = make_conv(k->cin, 2 * k->cin, 3, 1);
            /* fall through */
        case VAE_BLOCK_UPSAMPLE2D:
            k->conv1 = make_conv(k->cin, k->cout, 1, 3);
            break;
        }
    }
    m->head = make_conv(stage_width(cfg, n - 1), 3, 3, 3);
    return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* tensor enumeration: every checkpoint tensor the decoder needs, with its official shape */

typedef int (*TensorFn)(void *user, const char *name, int ndim, const int64_t *shape, const float **slot,
                        const VaeConv *relayout);

/* A conv's weight and bias. ndim 5 for CausalConv3d, 4 for Conv2d. */
static int visit_conv(VaeConv *c, const char *prefix, int ndim, TensorFn fn, void *user) {
    char name[96];
    int64_t shape[5] = {c->cout, c->cin, c->kt, c->ks, c->ks};
    if (ndim == 4) {
        shape[2] = shape[3] = c->ks;
    }
    snprintf(name, sizeof name, "%s.weight", prefix);
    if (fn(user, name, ndim, shape, &c->w, c->kt > 1 ? c : NULL)) return -1;
    snprintf(name, sizeof name, "%s.bias", prefix);
    return fn(user, name, 1, shape, &c->b, NULL);
}

static int visit_gamma(const float **slot, int C, int ndim, const char *name, TensorFn fn, void *user) {
    int64_t shape[4] = {C, 1, 1, 1};
    return fn(user, name, ndim, shape, slot, NULL);
}

static int for_each_tensor(VaeModel *m, TensorFn fn, void *user) {
    char p[96], g[112];
    if (visit_conv(&m->conv2, "conv2", 5, fn, user) || visit_conv(&m->conv_in, "decoder.conv1", 5, fn, user))
        return -1;
    for (int j = 0; j < m->num_blocks; j++) {
        VaeBlock *k = &m->blocks[j];
        switch (k->kind) {
        case VAE_BLOCK_RESIDUAL:
            snprintf(g, sizeof g, "%s.residual.0.gamma", k->name);
            if (visit_gamma(&k->gamma1, k->cin, 4, g, fn, user)) return -1;
            snprintf(p, sizeof p, "%s.residual.2", k->name);
            if (visit_conv(&k->conv1, p, 5, fn, user)) return -1;
            snprintf(g, sizeof g, "%s.residual.3.gamma", k->name);
            if (visit_gamma(&k->gamma2, k->cout, 4, g, fn, user)) return -1;
            snprintf(p, sizeof p, "%s.residual.6", k->name);
            if (visit_conv(&k->conv2, p, 5, fn, user)) return -1;
            snprintf(p, sizeof p, "%s.shortcut", k->name);
            if (k->has_shortcut && visit_conv(&k->shortcut, p, 5, fn, user)) return -1;
            break;
        case VAE_BLOCK_ATTENTION:
            snprintf(g, sizeof g, "%s.norm.gamma", k->name);
            if (visit_gamma(&k->gamma1, k->cin, 3, g, fn, user)) return -1;
            snprintf(p, sizeof p, "%s.to_qkv", k->name);
            if (visit_conv(&k->conv1, p, 4, fn, user)) return -1;
            snprintf(p, sizeof p, "%s.proj", k->name);
            if (visit_conv(&k->conv2, p, 4, fn, user)) return -1;
            break;
        case VAE_BLOCK_UPSAMPLE3D:
            snprintf(p, sizeof p, "%s.time_conv", k->name);
            if (visit_conv(&k->conv2, p, 5, fn, user)) return -1;
            /* fall through */
        case VAE_BLOCK_UPSAMPLE2D:
            snprintf(p, sizeof p, "%s.resample.1", k->name);
            if (visit_conv(&k->conv1, p, 4, fn, user)) return -1;
            break;
        }
    }
    if (visit_gamma(&m->head_gamma, m->head.cin, 4, "decoder.head.0.gamma", fn, user)) return -1;
    return visit_conv(&m->head, "decoder.head.2", 5, fn, user);
}

/* [cout][cin][kt][s] -> [cout][kt][cin][s] (s = ks*ks spatial taps). */
static void relayout_taps(float *dst, const float *src, const VaeConv *c) {
    const size_t s = (size_t)c->ks * c->ks;
    for (int o = 0; o < c->cout; o++)
        for (int i = 0; i < c->cin; i++)
            for (int t = 0; t < c->kt; t++)
                memcpy(dst + (((size_t)o * c->kt + t) * c->cin + i) * s, src + (((size_t)o * c->cin + i) * c->kt + t) * s,
                       s * sizeof(float));
}

/* Weights come from a source (a checkpoint or the random generator) in the official layout into tmp, are checked,
 * then copied (re-laid out for 3-tap convs) into the arena. */
typedef struct {
    VaeModel *m;
    const StFile *file;    /* NULL: random */
    uint64_t seed, stream;
    size_t floats, used, tmp_floats;
    float *tmp;
    Error *err;
} BindCtx;

static int count_tensor(void *user, const char *name, int ndim, const int64_t *shape, const float **slot,
                        const VaeConv *relayout) {
    (void)slot;
    (void)relayout;
    BindCtx *ctx = user;
    size_t n = st_numel(ndim, shape);
    ctx->floats += n;
    if (n > ctx->tmp_floats) ctx->tmp_floats = n;
    if (!ctx->file) return 0;
    const StTensor *t = st_find(ctx->file, name);
    char want[96], got[96];
    if (!t) return error_set(ctx->err, "%s: missing tensor '%s' (the VAE decoder needs it)", ctx->file->path, name);
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        st_format_shape(want, sizeof want, ndim, shape);
        st_format_shape(got, sizeof got, t->ndim, t->shape);
        return error_set(ctx->err, "%s: tensor '%s' has shape %s, the VAE config needs %s", ctx->file->path, name,
                         got, want);
    }
    if (t->dtype == ST_OTHER)
        return error_set(ctx->err, "%s: tensor '%s' has dtype %s; only F32, F16 and BF16 are supported",
                         ctx->file->path, name, t->dtype_name);
    return 0;
}

/* Random weights: N(0, 1/fan_in) for convolutions, so normalised inputs give O(1) outputs; biases N(0, 0.1^2);
 * gammas 1 + N(0, 0.1^2); the head 0.2/sqrt(fan_in) so that the video mostly lies inside the clamp. */
static void random_tensor(float *dst, const char *name, int ndim, const int64_t *shape, uint64_t seed,
                          uint64_t stream) {
    size_t n = st_numel(ndim, shape);
    philox_normal(dst, n, seed, stream);
    const char *last = strrchr(name, '.');
    float scale, offset = 0.0f;
    if (strcmp(last, ".gamma") == 0) {
        scale = 0.1f;
        offset = 1.0f;
    } else if (strcmp(last, ".bias") == 0) {
        scale = 0.1f;
    } else {
        int64_t fan_in = 1;
        for (int i = 1; i < ndim; i++) fan_in *= shape[i];
        scale = 1.0f / sqrtf((float)fan_in);
        if (strcmp(name, "decoder.head.2.weight") == 0) scale *= 0.2f;
    }
    for (size_t i = 0; i < n; i++) dst[i] = offset + scale * dst[i];
}

static int bind_tensor(void *user, const char *name, int ndim, const int64_t *shape, const float **slot,
                       const VaeConv *relayout) {
    BindCtx *ctx = user;
    size_t n = st_numel(ndim, shape);
    if (ctx->file) {
        const StTensor *t = st_find(ctx->file, name);
        if (st_to_f32(t, ctx->tmp, ctx->err)) return error_prefix(ctx->err, "%s: tensor '%s'", ctx->file->path, name);
        for (size_t i = 0; i < n; i++)
            if (!isfinite(ctx->tmp[i]))
                return error_set(ctx->err, "%s: tensor '%s' holds a non-finite value (%g at index %zu)",
                                 ctx->file->path, name, (double)ctx->tmp[i], i);
    } else {
        random_tensor(ctx->tmp, name, ndim, shape, ctx->seed, ctx->stream++);
    }
    float *dst = ctx->m->arena + ctx->used;
    ctx->used += n;
    if (relayout)
        relayout_taps(dst, ctx->tmp, relayout);
    else
        memcpy(dst, ctx->tmp, n * sizeof(float));
    *slot = dst;
    return 0;
}

static int bind_all(VaeModel *m, BindCtx *ctx) {
    if (for_each_tensor(m, count_tensor, ctx)) return -1;
    m->arena = malloc(ctx->floats * sizeof(float));
    ctx->tmp = malloc(ctx->tmp_floats * sizeof(float));
    if (!m->arena || !ctx->tmp) {
        free(ctx->tmp);
        return error_set(ctx->err, "out of memory for %zu VAE weights", ctx->floats);
    }
    m->arena_floats = ctx->floats;
    int rc = for_each_tensor(m, bind_tensor, ctx);
    free(ctx->tmp);
    return rc;
}

int vae_load(VaeModel *m, const VaeConfig *cfg, const char *path, Error *err) {
    if (build_blocks(m, cfg, err)) {
        vae_free(m);
        return -1;
    }
    StFile file;
    if (st_open(&file, path, err)) {
        vae_free(m);
        return -1;
    }
    BindCtx ctx = {.m = m, .file = &file, .err = err};
    int rc = bind_all(m, &ctx);
    st_close(&file);
    if (rc) {
        vae_free(m);
        return -1;
    }
    snprintf(m->weights_path, sizeof m->weights_path, "%s", path);
    return 0;
}

int vae_init_random(VaeModel *m, const VaeConfig *cfg, uint64_t seed, Error *err) {
    if (build_blocks(m, cfg, err)) {
        vae_free(m);
        return -1;
    }
    BindCtx ctx = {.m = m, .seed = seed, .err = err};
    if (bind_all(m, &ctx)) {
        vae_free(m);
        return -1;
    }
    snprintf(m->weights_path, sizeof m->weights_path, "random:seed=%llu", (unsigned long long)seed);
    return 0;
}

/* The random weights in the official layout, collected for st_write. */
typedef struct {
    StWriteTensor *t;
    char **names;
    float **data;
    int count, cap;
    uint64_t seed;
    StDtype dtype;
} WriteCtx;

static int collect_random(void *user, const char *name, int ndim, const int64_t *shape, const float **slot,
                          const VaeConv *relayout) {
    (void)slot;
    (void)relayout;
    WriteCtx *w = user;
    if (w->count == w->cap) {
        int cap = w->cap ? 2 * w->cap : 64;
        StWriteTensor *t = realloc(w->t, (size_t)cap * sizeof *t);
        if (t) w->t = t;
        char **names = realloc(w->names, (size_t)cap * sizeof *names);
        if (names) w->names = names;
        float **data = realloc(w->data, (size_t)cap * sizeof *data);
        if (data) w->data = data;
        if (!t || !names || !data) return -1;
        w->cap = cap;
    }
    const int i = w->count;
    w->names[i] = strdup(name);
    w->data[i] = malloc(st_numel(ndim, shape) * sizeof(float));
    w->count++;
    if (!w->names[i] || !w->data[i]) return -1;
    random_tensor(w->data[i], name, ndim, shape, w->seed, (uint64_t)i);
    StWriteTensor *t = &w->t[i];
    memset(t, 0, sizeof *t);
    t->name = w->names[i];
    t->dtype = w->dtype;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->data = w->data[i];
    return 0;
}

int vae_write_random(const char *path, const VaeConfig *cfg, uint64_t seed, StDtype dtype, Error *err) {
    VaeModel m;
    if (build_blocks(&m, cfg, err)) {
        vae_free(&m);
        return -1;
    }
    WriteCtx w = {.seed = seed, .dtype = dtype};
    int rc = for_each_tensor(&m, collect_random, &w);
    if (rc)
        error_set(err, "%s: out of memory for random VAE weights", path);
    else
        rc = st_write(path, w.t, w.count, err);
    for (int i = 0; i < w.count; i++) {
        free(w.names[i]);
        free(w.data[i]);
    }
    free(w.t);
    free(w.names);
    free(w.data);
    vae_free(&m);
    return rc;
}

/* ---------------------------------------------------------------------------------------------- */
/* config from a checkpoint's shapes */

static const StTensor *find_fmt(const StFile *f, char *buf, size_t cap, const char *fmt, int i) {
    snprintf(buf, cap, fmt, i);
    return st_find(f, buf);
}

static int infer_config(const StFile *f, VaeConfig *c, Error *err) {
    char name[128];
    memset(c, 0, sizeof *c);
    const StTensor *conv2 = st_find(f, "conv2.weight"), *head = st_find(f, "decoder.head.0.gamma");
    if (!conv2 || !head || conv2->ndim < 1 || head->ndim < 1)
        return error_set(err, "%s: not a Wan VAE checkpoint (no '%s')", f->path,
                         conv2 ? "decoder.head.0.gamma" : "conv2.weight");
    c->z_dim = (int)conv2->shape[0];
    c->dim = (int)head->shape[0];
    /* Stage i's blocks start at upsamples.(i (nrb + 2)); its upsampler, if any, is the last of them. */
    int nres = 0;
    while (find_fmt(f, name, sizeof name, "decoder.upsamples.%d.residual.2.weight", nres)) nres++;
    int first_resample = -1;
    for (int i = 0; i < nres + 1 && first_resample < 0; i++)
        if (find_fmt(f, name, sizeof name, "decoder.upsamples.%d.resample.1.weight", i)) first_resample = i;
    if (nres == 0) return error_set(err, "%s: no decoder.upsamples.*.residual.2.weight tensors", f->path);
    c->num_res_blocks = (first_resample < 0 ? nres : first_resample) - 1;
    if (c->num_res_blocks < 0) return error_set(err, "%s: decoder.upsamples.0 is not a residual block", f->path);
    const int per_stage = c->num_res_blocks + 2;
    c->num_stages = 1;
    while (c->num_stages < VAE_MAX_STAGES &&
           find_fmt(f, name, sizeof name, "decoder.upsamples.%d.resample.1.weight", c->num_stages * per_stage - 1))
        c->num_stages++;
    for (int i = 0; i < c->num_stages; i++) {
        if (i < c->num_stages - 1)
            c->temporal_upsample[i] =
                find_fmt(f, name, sizeof name, "decoder.upsamples.%d.time_conv.weight", (i + 1) * per_stage - 1) != NULL;
        const StTensor *t = find_fmt(f, name, sizeof name, "decoder.upsamples.%d.residual.2.weight", i * per_stage);
        if (!t || t->ndim < 1 || c->dim <= 0 || t->shape[0] % c->dim)
            return error_set(err, "%s: tensor '%s' is missing or its width is not a multiple of %d", f->path, name,
                             c->dim);
        c->dim_mult[c->num_stages - 1 - i] = (int)(t->shape[0] / c->dim);
    }
    return vae_config_check(c, err) ? error_prefix(err, "%s", f->path) : 0;
}

int vae_load_auto(VaeModel *m, const char *path, Error *err) {
    memset(m, 0, sizeof *m);
    StFile file;
    if (st_open(&file, path, err)) return -1;
    VaeConfig cfg;
    int rc = infer_config(&file, &cfg, err);
    st_close(&file);
    return rc ? -1 : vae_load(m, &cfg, path, err);
}

void vae_free(VaeModel *m) {
    free(m->arena);
    free(m->blocks);
    memset(m, 0, sizeof *m);
}

size_t vae_num_params(const VaeConfig *cfg) {
    VaeModel m;
    Error err;
    BindCtx ctx = {.m = &m, .err = &err};
    if (build_blocks(&m, cfg, &err) == 0) for_each_tensor(&m, count_tensor, &ctx);
    vae_free(&m);
    return ctx.floats;
}

/* ---------------------------------------------------------------------------------------------- */
/* FLOPs */

static double conv_flops(const VaeConv *c, double pixels) {
    return 2.0 * c->cout * c->cin * c->kt * c->ks * c->ks * pixels;
}

double vae_flops_decode(const VaeConfig *cfg, int F, int H, int W) {
    VaeModel m;
    Error err;
    if (F <= 0 || build_blocks(&m, cfg, &err)) {
        vae_free(&m);
        return 0.0;
    }
    double frames = F, total = 0.0;
    double pix = (double)H * W;
    total += frames * (conv_flops(&m.conv2, pix) + conv_flops(&m.conv_in, pix));
    for (int j = 0; j < m.num_blocks; j++) {
        const VaeBlock *k = &m.blocks[j];
        switch (k->kind) {
        case VAE_BLOCK_RESIDUAL:
            total += frames * (conv_flops(&k->conv1, pix) + conv_flops(&k->conv2, pix));
            if (k->has_shortcut) total += frames * conv_flops(&k->shortcut, pix);
            break;
        case VAE_BLOCK_ATTENTION:
            total += frames * (conv_flops(&k->conv1, pix) + conv_flops(&k->conv2, pix) + 4.0 * pix * pix * k->cin);
            break;
        case VAE_BLOCK_UPSAMPLE3D:
            total += (frames - 1) * conv_flops(&k->conv2, pix);
            frames = 1 + 2 * (frames - 1);
            /* fall through */
        case VAE_BLOCK_UPSAMPLE2D:
            pix *= 4;
            total += frames * conv_flops(&k->conv1, pix);
            break;
        }
    }
    total += frames * conv_flops(&m.head, pix);
    vae_free(&m);
    return total;
}

/* ---------------------------------------------------------------------------------------------- */
/* kernels */

/* out = x / max(||x||_2 over channels, 1e-12) * sqrt(C) * gamma, per pixel; then SiLU when asked.
 * x, out: [C][P]; ss: P floats of scratch. */
static void rms_norm_channels(float *out, const float *x, const float *gamma, int C, size_t P, float *ss,
                              int then_silu) {
    const float scale = sqrtf((float)C);
#pragma omp parallel if ((size_t)C * P >= PAR_MIN_FLOATS)
    {
#pragma omp for schedule(static)
        for (size_t p0 = 0; p0 < P; p0 += 256) {
            const size_t p1 = p0 + 256 < P ? p0 + 256 : P;
            for (size_t p = p0; p < p1; p++) ss[p] = 0.0f;
            for (int c = 0; c < C; c++) {
                const float *xc = x + (size_t)c * P;
#pragma omp simd
                for (size_t p = p0; p < p1; p++) ss[p] += xc[p] * xc[p];
            }
            for (size_t p = p0; p < p1; p++) ss[p] = scale / fmaxf(sqrtf(ss[p]), 1e-12f);
            for (int c = 0; c < C; c++) {
                const float *xc = x + (size_t)c * P;
                float *oc = out + (size_t)c * P;
                const float g = gamma[c];
#pragma omp simd
                for (size_t p = p0; p < p1; p++) oc[p] = xc[p] * ss[p] * g;
            }
        }
    }
    if (then_silu) silu(out, (size_t)C * P);
}

/* Column block of a 3x3 convolution for output rows [y0, y1): col[((t - k0) cin + ci) 9 + ky 3 + kx][p].
 * Input frames are H x W, or (H/2) x (W/2) read with nearest-exact x2 upsampling (pixel duplication). */
static void im2col3x3(float *col, const float *const *taps, int k0, int kt, int cin, int H, int W, int upsample,
                      int y0, int y1) {
    const size_t N = (size_t)(y1 - y0) * W;
    const int rows = (kt - k0) * cin * 9;
    const size_t src_plane = upsample ? (size_t)(H / 2) * (W / 2) : (size_t)H * W;
#pragma omp parallel for schedule(static) if ((size_t)rows * N >= PAR_MIN_FLOATS)
    for (int r = 0; r < rows; r++) {
        const int tc = r / 9, kk = r % 9, dy = kk / 3 - 1, dx = kk % 3 - 1;
        const float *src = taps[k0 + tc / cin] + (size_t)(tc % cin) * src_plane;
        float *dst = col + (size_t)r * N;
        for (int y = y0; y < y1; y++) {
            float *d = dst + (size_t)(y - y0) * W;
            const int sy = y + dy;
            if (sy < 0 || sy >= H) {
                memset(d, 0, (size_t)W * sizeof(float));
                continue;
            }
            if (!upsample) {
                const float *s = src + (size_t)sy * W;
                if (dx < 0) {
                    d[0] = 0.0f;
                    memcpy(d + 1, s, (size_t)(W - 1) * sizeof(float));
                } else if (dx == 0) {
                    memcpy(d, s, (size_t)W * sizeof(float));
                } else {
                    memcpy(d, s + 1, (size_t)(W - 1) * sizeof(float));
                    d[W - 1] = 0.0f;
                }
            } else {
                const float *s = src + (size_t)(sy >> 1) * (W >> 1);
                for (int x = 0; x < W; x++) {
                    const int sx = x + dx;
                    d[x] = (sx < 0 || sx >= W) ? 0.0f : s[sx >> 1];
                }
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* CPU backend */

static float *cpu_alloc(void *ctx, size_t floats) {
    (void)ctx;
    return calloc(floats ? floats : 1, sizeof(float));
}

static void cpu_release(void *ctx, float *p) {
    (void)ctx;
    free(p);
}

static void cpu_copy(void *ctx, float *dst, const float *src, size_t n) {
    (void)ctx;
    memcpy(dst, src, n * sizeof(float));
}

static void cpu_rms_norm(void *ctx, float *out, const float *x, const float *gamma, int C, size_t P, float *ss,
                         int silu_after) {
    (void)ctx;
    rms_norm_channels(out, x, gamma, C, P, ss, silu_after);
}

static void cpu_bias(void *ctx, float *out, const float *b, int rows, size_t n, int accumulate) {
    (void)ctx;
#pragma omp parallel for schedule(static) if ((size_t)rows * n >= PAR_MIN_FLOATS)
    for (int r = 0; r < rows; r++) {
        float *row = out + (size_t)r * n;
        const float v = b[r];
        if (accumulate) {
#pragma omp simd
            for (size_t i = 0; i < n; i++) row[i] += v;
        } else {
            for (size_t i = 0; i < n; i++) row[i] = v;
        }
    }
}

static void cpu_gemm(void *ctx, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C,
                     int ldc) {
    (void)ctx;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, lda, B, ldb, 1.0f, C, ldc);
}

static void cpu_im2col(void *ctx, float *col, const float *const *taps, int k0, int kt, int cin, int H, int W,
                       int upsample, int y0, int y1) {
    (void)ctx;
    im2col3x3(col, taps, k0, kt, cin, H, W, upsample, y0, y1);
}

static void cpu_add(void *ctx, float *out, const float *x, size_t n) {
    (void)ctx;
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN_FLOATS)
    for (size_t i = 0; i < n; i++) out[i] += x[i];
}

static size_t cpu_attention_scratch(int P, int C) {
    (void)C;
    return attention_scratch_floats(P, P, 1);
}

/* Single-head self-attention over the P pixels of one frame (AttentionBlock): q, k, v are the contiguous thirds
 * of to_qkv's output channels; out = x + proj(attention). */
static void cpu_attention(void *ctx, const VaeBlock *k, const float *x, float *out, int P, float *xn, float *ss,
                          float *q, float *kk, float *v, float *att, float *scratch) {
    (void)ctx;
    const int C = k->cin;
    rms_norm_channels(xn, x, k->gamma1, C, (size_t)P, ss, 0);
    float *qkv[3] = {q, kk, v};
    for (int j = 0; j < 3; j++) {
        /* [P][C] = xn^T . Wj^T with Wj the j-th third of to_qkv's rows; start from the bias. */
        const float *bias = k->conv1.b + (size_t)j * C;
        for (int p = 0; p < P; p++) memcpy(qkv[j] + (size_t)p * C, bias, (size_t)C * sizeof(float));
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasTrans, P, C, C, 1.0f, xn, P, k->conv1.w + (size_t)j * C * C, C,
                    1.0f, qkv[j], C);
    }
    attention(att, q, kk, v, P, P, 1, C, scratch);
    for (int o = 0; o < C; o++) {
        float *row = out + (size_t)o * P;
        const float *xr = x + (size_t)o * P;
        for (int p = 0; p < P; p++) row[p] = xr[p] + k->conv2.b[o];
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, C, P, C, 1.0f, k->conv2.w, C, att, C, 1.0f, out, P);
}

static void cpu_denormalise(void *ctx, float *dst, const float *z, int C, size_t P) {
    (void)ctx;
    for (int c = 0; c < C; c++) {
        const float inv_std = 1.0f / VAE_LATENT_STD[c]; /* WanVAE_.decode: z / (1/std) + mean, as computed there */
        for (size_t p = 0; p < P; p++) dst[c * P + p] = z[c * P + p] / inv_std + VAE_LATENT_MEAN[c];
    }
}

static void cpu_clamp_to_host(void *ctx, float *host, const float *x, size_t n) {
    (void)ctx;
    for (size_t i = 0; i < n; i++) host[i] = fminf(fmaxf(x[i], -1.0f), 1.0f);
}

static const VaeOps CPU_OPS = {.alloc = cpu_alloc,
                               .release = cpu_release,
                               .copy = cpu_copy,
                               .bias = cpu_bias,
                               .gemm = cpu_gemm,
                               .im2col = cpu_im2col,
                               .rms_norm = cpu_rms_norm,
                               .add = cpu_add,
                               .attention_scratch = cpu_attention_scratch,
                               .attention = cpu_attention,
                               .denormalise = cpu_denormalise,
                               .clamp_to_host = cpu_clamp_to_host};

/* ---------------------------------------------------------------------------------------------- */
/* streaming decoder */

/* The last two input frames of a causal 3-tap conv: frames[0] the older, frames[1] the newer. */
typedef struct {
    float *frames;
    size_t frame_floats;
    int count;
} CausalCache;

typedef struct {
    CausalCache c1, c2;    /* residual: conv1, conv2; upsample3d: c2 = time_conv */
    float *time_out;       /* upsample3d: [2 cin][h][w] */
    int seen;              /* upsample3d: frames seen (the first skips time_conv) */
} BlockState;

struct VaeDecoder {
    const VaeModel *m;
    const VaeOps *ops;
    void *ctx;                        /* the backend's, owned */
    int H, W;
    int frames_out;
    CausalCache in_cache, head_cache;
    BlockState *blocks;
    float *z, *z2;                    /* [z_dim][H][W] */
    float *buf[2], *tmp_a, *tmp_b;    /* max_frame floats each */
    float *ss;                        /* max pixels */
    float *col;
    size_t col_floats;
    float *q, *k, *v, *att;           /* [HW][C] of the attention block */
    float *att_scratch;
    float *rgb;                       /* host [3][8H][8W]: the frame given to the callback */
    size_t bytes;
};

static float *dec_alloc(VaeDecoder *d, size_t floats, int *fail) {
    float *p = d->ops->alloc(d->ctx, floats);
    if (!p) *fail = 1;
    d->bytes += floats * sizeof(float);
    return p;
}

static void dec_release(VaeDecoder *d, float *p) {
    if (p) d->ops->release(d->ctx, p);
}

static void cache_init(VaeDecoder *d, CausalCache *c, size_t frame_floats, int *fail) {
    c->frame_floats = frame_floats;
    c->frames = dec_alloc(d, 2 * frame_floats, fail);
}

/* The taps of the next frame x: two zero frames before the first. */
static void cache_taps(const CausalCache *c, const float *x, const float *taps[3]) {
    taps[0] = c->count >= 2 ? c->frames : NULL;
    taps[1] = c->count >= 1 ? c->frames + c->frame_floats : NULL;
    taps[2] = x;
}

static void cache_push(VaeDecoder *d, CausalCache *c, const float *x) {
    if (c->count >= 1) d->ops->copy(d->ctx, c->frames, c->frames + c->frame_floats, c->frame_floats);
    d->ops->copy(d->ctx, c->frames + c->frame_floats, x, c->frame_floats);
    if (c->count < 2) c->count++;
}

static size_t max_z(size_t a, size_t b) { return a > b ? a : b; }

/* A 3x3 conv's column tile: the whole frame if it fits the budget, else whole rows up to it (at least one). */
static size_t col_need(const VaeConv *c, int h, int w) {
    const size_t K = (size_t)c->kt * c->cin * 9, full = K * (size_t)h * w;
    return full <= COL_BUDGET_FLOATS ? full : max_z(K * (size_t)w, COL_BUDGET_FLOATS);
}

int vae_decoder_create(VaeDecoder **out, const VaeModel *m, int H, int W, const VaeOps *ops, void *ctx,
                       Error *err) {
    *out = NULL;
    if (H <= 0 || W <= 0 || H > 4096 || W > 4096) {
        if (ops->destroy) ops->destroy(ctx);
        return error_set(err, "latent size %dx%d is outside 1..4096", H, W);
    }
    VaeDecoder *d = calloc(1, sizeof *d);
    if (!d) {
        if (ops->destroy) ops->destroy(ctx);
        return error_set(err, "out of memory for the VAE decoder");
    }
    d->m = m;
    d->ops = ops;
    d->ctx = ctx;
    d->H = H;
    d->W = W;
    int fail = 0;
    d->blocks = calloc((size_t)m->num_blocks, sizeof *d->blocks);
    if (!d->blocks) fail = 1;
    const size_t P0 = (size_t)H * W;
    size_t max_frame = max_z((size_t)m->cfg.z_dim, (size_t)m->conv_in.cout) * P0, max_pix = P0;
    size_t col = col_need(&m->conv_in, H, W);
    cache_init(d, &d->in_cache, (size_t)m->cfg.z_dim * P0, &fail);
    for (int j = 0; j < m->num_blocks && !fail; j++) {
        const VaeBlock *k = &m->blocks[j];
        BlockState *s = &d->blocks[j];
        const int h = H << k->level, w = W << k->level;
        const size_t P = (size_t)h * w;
        max_frame = max_z(max_frame, max_z((size_t)k->cin, (size_t)k->cout) * P);
        max_pix = max_z(max_pix, P);
        switch (k->kind) {
        case VAE_BLOCK_RESIDUAL:
            cache_init(d, &s->c1, (size_t)k->cin * P, &fail);
            cache_init(d, &s->c2, (size_t)k->cout * P, &fail);
            col = max_z(col, max_z(col_need(&k->conv1, h, w), col_need(&k->conv2, h, w)));
            break;
        case VAE_BLOCK_ATTENTION:
            d->q = dec_alloc(d, (size_t)k->cin * P, &fail);
            d->k = dec_alloc(d, (size_t)k->cin * P, &fail);
            d->v = dec_alloc(d, (size_t)k->cin * P, &fail);
            d->att = dec_alloc(d, (size_t)k->cin * P, &fail);
            d->att_scratch = dec_alloc(d, ops->attention_scratch((int)P, k->cin), &fail);
            break;
        case VAE_BLOCK_UPSAMPLE3D:
            cache_init(d, &s->c2, (size_t)k->cin * P, &fail);
            s->time_out = dec_alloc(d, 2 * (size_t)k->cin * P, &fail);
            /* fall through */
        case VAE_BLOCK_UPSAMPLE2D:
            max_frame = max_z(max_frame, (size_t)k->cout * 4 * P);
            max_pix = max_z(max_pix, 4 * P);
            col = max_z(col, col_need(&k->conv1, 2 * h, 2 * w));
            break;
        }
    }
    const int Hout = H * vae_spatial_scale(&m->cfg), Wout = W * vae_spatial_scale(&m->cfg);
    const size_t Pout = (size_t)Hout * Wout;
    cache_init(d, &d->head_cache, (size_t)m->head.cin * Pout, &fail);
    col = max_z(col, col_need(&m->head, Hout, Wout));
    d->col_floats = col;
    d->col = dec_alloc(d, col, &fail);
    d->z = dec_alloc(d, (size_t)m->cfg.z_dim * P0, &fail);
    d->z2 = dec_alloc(d, (size_t)m->cfg.z_dim * P0, &fail);
    for (int i = 0; i < 2; i++) d->buf[i] = dec_alloc(d, max_frame, &fail);
    d->tmp_a = dec_alloc(d, max_frame, &fail);
    d->tmp_b = dec_alloc(d, max_frame, &fail);
    d->ss = dec_alloc(d, max_pix, &fail);
    d->rgb = malloc(3 * Pout * sizeof(float));
    d->bytes += 3 * Pout * sizeof(float);
    if (!d->rgb) fail = 1;
    if (fail) {
        size_t bytes = d->bytes;
        vae_decoder_free(d);
        return error_set(err, "out of memory for the VAE decoder of %dx%d latents (%.1f GiB)", H, W,
                         (double)bytes / (1024.0 * 1024.0 * 1024.0));
    }
    if (ops->check && ops->check(ctx, err)) {
        vae_decoder_free(d);
        return -1;
    }
    *out = d;
    return 0;
}

int vae_decoder_new(VaeDecoder **out, const VaeModel *m, int H, int W, Error *err) {
    return vae_decoder_create(out, m, H, W, &CPU_OPS, NULL, err);
}

size_t vae_decoder_bytes(const VaeDecoder *d) { return d->bytes; }

void vae_decoder_free(VaeDecoder *d) {
    if (!d) return;
    dec_release(d, d->in_cache.frames);
    dec_release(d, d->head_cache.frames);
    if (d->blocks)
        for (int j = 0; j < d->m->num_blocks; j++) {
            dec_release(d, d->blocks[j].c1.frames);
            dec_release(d, d->blocks[j].c2.frames);
            dec_release(d, d->blocks[j].time_out);
        }
    free(d->blocks);
    float *bufs[] = {d->z, d->z2, d->buf[0], d->buf[1], d->tmp_a, d->tmp_b, d->ss, d->col,
                     d->q, d->k,  d->v,      d->att,    d->att_scratch};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) dec_release(d, bufs[i]);
    free(d->rgb);
    if (d->ops->destroy) d->ops->destroy(d->ctx);
    free(d);
}

static float *other_buf(VaeDecoder *d, const float *x) { return x == d->buf[0] ? d->buf[1] : d->buf[0]; }

/* out [cout][H][W] (= or += when accumulate) conv over taps[0..kt) (leading NULLs are zero frames: a causal
 * conv's padding, whose taps the GEMM skips). ks 1: one GEMM per tap; ks 3: im2col in tiles of whole output rows
 * (d->col_floats), inputs read with nearest x2 upsampling when upsample. */
static void conv(VaeDecoder *d, const VaeConv *c, const float *const *taps, int H, int W, int upsample, float *out,
                 int accumulate) {
    const VaeOps *ops = d->ops;
    const size_t HW = (size_t)H * W;
    ops->bias(d->ctx, out, c->b, c->cout, HW, accumulate);
    int k0 = 0;
    while (k0 < c->kt && !taps[k0]) k0++;
    if (k0 == c->kt) return;
    if (c->ks == 1) {
        for (int t = k0; t < c->kt; t++)
            ops->gemm(d->ctx, c->cout, (int)HW, c->cin, c->w + (size_t)t * c->cin, c->kt * c->cin, taps[t], (int)HW,
                      out, (int)HW);
        return;
    }
    const size_t K_all = (size_t)c->kt * c->cin * 9, K = (size_t)(c->kt - k0) * c->cin * 9;
    int rows = (int)(d->col_floats / (K * (size_t)W));
    if (rows < 1) rows = 1;
    if (rows > H) rows = H;
    for (int y0 = 0; y0 < H; y0 += rows) {
        const int y1 = y0 + rows < H ? y0 + rows : H;
        const int N = (y1 - y0) * W;
        ops->im2col(d->ctx, d->col, taps, k0, c->kt, c->cin, H, W, upsample, y0, y1);
        ops->gemm(d->ctx, c->cout, N, (int)K, c->w + (size_t)k0 * c->cin * 9, (int)K_all, d->col, N,
                  out + (size_t)y0 * W, (int)HW);
    }
}

static void residual_block(VaeDecoder *d, const VaeBlock *k, BlockState *s, const float *x, float *out, int h,
                           int w) {
    const size_t P = (size_t)h * w;
    const float *taps[3];
    d->ops->rms_norm(d->ctx, d->tmp_a, x, k->gamma1, k->cin, P, d->ss, 1);
    cache_taps(&s->c1, d->tmp_a, taps);
    conv(d, &k->conv1, taps, h, w, 0, d->tmp_b, 0);
    cache_push(d, &s->c1, d->tmp_a);
    d->ops->rms_norm(d->ctx, d->tmp_a, d->tmp_b, k->gamma2, k->cout, P, d->ss, 1);
    cache_taps(&s->c2, d->tmp_a, taps);
    conv(d, &k->conv2, taps, h, w, 0, out, 0);
    cache_push(d, &s->c2, d->tmp_a);
    if (k->has_shortcut) {
        const float *one[1] = {x};
        conv(d, &k->shortcut, one, h, w, 0, out, 1);
    } else {
        d->ops->add(d->ctx, out, x, (size_t)k->cout * P);
    }
}

/* The head: RMS_norm, SiLU, causal conv to RGB, clamp; then the frame goes to the caller. */
static int head(VaeDecoder *d, const float *x, VaeFrameFn fn, void *user, Error *err) {
    const VaeModel *m = d->m;
    const int h = d->H << (m->cfg.num_stages - 1), w = d->W << (m->cfg.num_stages - 1);
    const size_t P = (size_t)h * w;
    const float *taps[3];
    d->ops->rms_norm(d->ctx, d->tmp_a, x, m->head_gamma, m->head.cin, P, d->ss, 1);
    cache_taps(&d->head_cache, d->tmp_a, taps);
    conv(d, &m->head, taps, h, w, 0, d->tmp_b, 0);
    cache_push(d, &d->head_cache, d->tmp_a);
    d->ops->clamp_to_host(d->ctx, d->rgb, d->tmp_b, 3 * P);
    if (d->ops->check && d->ops->check(d->ctx, err)) return -1;
    return fn(user, d->frames_out++, d->rgb, h, w, err);
}

/* Runs one frame x (in d->buf[] or an upsampler's time_out) through blocks b.. and the head. A temporal upsampler
 * turns a frame into two; each goes on through the rest of the network before the next, so every block sees its
 * frames in video order and only one frame per level is alive. */
static int run_from(VaeDecoder *d, int b, const float *x, VaeFrameFn fn, void *user, Error *err) {
    const VaeModel *m = d->m;
    for (; b < m->num_blocks; b++) {
        const VaeBlock *k = &m->blocks[b];
        BlockState *s = &d->blocks[b];
        const int h = d->H << k->level, w = d->W << k->level;
        float *out = other_buf(d, x);
        const float *one[1] = {x};
        switch (k->kind) {
        case VAE_BLOCK_RESIDUAL:
            residual_block(d, k, s, x, out, h, w);
            break;
        case VAE_BLOCK_ATTENTION:
            d->ops->attention(d->ctx, k, x, out, h * w, d->tmp_a, d->ss, d->q, d->k, d->v, d->att, d->att_scratch);
            break;
        case VAE_BLOCK_UPSAMPLE2D:
            conv(d, &k->conv1, one, 2 * h, 2 * w, 1, out, 0);
            break;
        case VAE_BLOCK_UPSAMPLE3D: {
            if (s->seen++ == 0) { /* the first frame never enters time_conv (the official 'Rep' marker) */
                conv(d, &k->conv1, one, 2 * h, 2 * w, 1, out, 0);
                break;
            }
            const float *taps[3];
            cache_taps(&s->c2, x, taps);
            conv(d, &k->conv2, taps, h, w, 0, s->time_out, 0);
            cache_push(d, &s->c2, x);
            /* time_conv's 2C channels: the first C are frame 2t, the last C frame 2t+1. */
            for (int half = 0; half < 2; half++) {
                const float *frame[1] = {s->time_out + (size_t)half * k->cin * h * w};
                conv(d, &k->conv1, frame, 2 * h, 2 * w, 1, d->buf[0], 0);
                if (run_from(d, b + 1, d->buf[0], fn, user, err)) return -1;
            }
            return 0;
        }
        }
        x = out;
    }
    return head(d, x, fn, user, err);
}

int vae_decoder_push(VaeDecoder *d, const float *z, VaeFrameFn fn, void *user, Error *err) {
    const VaeModel *m = d->m;
    const float *taps[3], *one[1] = {d->z};
    d->ops->denormalise(d->ctx, d->z, z, m->cfg.z_dim, (size_t)d->H * d->W);
    conv(d, &m->conv2, one, d->H, d->W, 0, d->z2, 0);
    cache_taps(&d->in_cache, d->z2, taps);
    conv(d, &m->conv_in, taps, d->H, d->W, 0, d->buf[0], 0);
    cache_push(d, &d->in_cache, d->z2);
    if (run_from(d, 0, d->buf[0], fn, user, err)) return -1;
    return d->ops->check ? d->ops->check(d->ctx, err) : 0;
}

int vae_decoder_new_on(VaeDecoder **d, const VaeModel *m, int H, int W, const char *backend, Error *err) {
    *d = NULL;
    if (strcmp(backend, "cuda") != 0) return vae_decoder_new(d, m, H, W, err);
#ifdef CACHEBENCH_CUDA
    return vae_decoder_new_cuda(d, m, H, W, err);
#else
    return error_set(err, "--backend cuda: this build has no CUDA (nvcc was not found when it was built)");
#endif
}

int vae_decode_with(VaeDecoder *d, const float *latents, int F, VaeFrameFn fn, void *user, Error *err) {
    if (F <= 0) return error_set(err, "no latent frames to decode");
    const int z_dim = d->m->cfg.z_dim;
    const size_t P = (size_t)d->H * d->W;
    float *frame = malloc((size_t)z_dim * P * sizeof(float));
    if (!frame) return error_set(err, "out of memory");
    int rc = 0;
    for (int f = 0; f < F && !rc; f++) {
        for (int c = 0; c < z_dim; c++) memcpy(frame + c * P, latents + ((size_t)c * F + f) * P, P * sizeof(float));
        rc = vae_decoder_push(d, frame, fn, user, err);
    }
    free(frame);
    return rc;
}

int vae_decode(const VaeModel *m, const float *latents, int F, int H, int W, VaeFrameFn fn, void *user, Error *err) {
    VaeDecoder *d;
    if (vae_decoder_new(&d, m, H, W, err)) return -1;
    int rc = vae_decode_with(d, latents, F, fn, user, err);
    vae_decoder_free(d);
    return rc;
}

void vae_frame_to_rgb8(const float *rgb, int height, int width, uint8_t *out) {
    const size_t P = (size_t)height * width;
    for (int c = 0; c < 3; c++)
        for (size_t i = 0; i < P; i++) {
            float v = (rgb[c * P + i] + 1.0f) * 0.5f;
            v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
            out[i * 3 + c] = (uint8_t)lrintf(v * 255.0f);
        }
}

static int store_rgb8(void *user, int t, const float *rgb, int height, int width, Error *err) {
    (void)err;
    vae_frame_to_rgb8(rgb, height, width, (uint8_t *)user + (size_t)t * height * width * 3);
    return 0;
}

int vae_decode_video(const VaeModel *m, const float *latents, int F, int H, int W, uint8_t *video, Error *err) {
    return vae_decode(m, latents, F, H, W, store_rgb8, video, err);
}

int vae_decode_video_with(VaeDecoder *d, const float *latents, int F, uint8_t *video, Error *err) {
    return vae_decode_with(d, latents, F, store_rgb8, video, err);
}
