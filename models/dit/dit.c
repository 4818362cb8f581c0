#include "models/dit/dit.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "models/dit/checkpoint.h"
#include "models/kernels.h"
#include "models/safetensors.h"
#include "models/sparse_attention.h"

/* ---------------------------------------------------------------------------------------------------------------
 * The tensor table: one place that knows every checkpoint name and shape (Wan2.1 key names).
 * ------------------------------------------------------------------------------------------------------------- */

static int patch_volume(const DitConfig *c) { return c->patch_t * c->patch_h * c->patch_w; }

#define TENSOR(nm, slot, ...)                                                                                  \
    do {                                                                                                       \
        const int64_t shape_[] = {__VA_ARGS__};                                                                \
        int rc_ = fn(user, nm, (int)(sizeof shape_ / sizeof shape_[0]), shape_, (const float **)&(slot));      \
        if (rc_) return rc_;                                                                                   \
    } while (0)

int dit_for_each_tensor(DitModel *m, DitTensorFn fn, void *user) {
    const DitConfig *c = &m->cfg;
    DitWeights *w = &m->w;
    const int64_t d = c->dim;
    char name[128];
    if (c->vocab_size > 0) TENSOR("token_embedding.weight", w->token_embedding, c->vocab_size, c->text_dim);
    TENSOR("patch_embedding.weight", w->patch_w, d, c->in_dim, c->patch_t, c->patch_h, c->patch_w);
    TENSOR("patch_embedding.bias", w->patch_b, d);
    TENSOR("text_embedding.0.weight", w->text1_w, d, c->text_dim);
    TENSOR("text_embedding.0.bias", w->text1_b, d);
    TENSOR("text_embedding.2.weight", w->text2_w, d, d);
    TENSOR("text_embedding.2.bias", w->text2_b, d);
    TENSOR("time_embedding.0.weight", w->time1_w, d, c->freq_dim);
    TENSOR("time_embedding.0.bias", w->time1_b, d);
    TENSOR("time_embedding.2.weight", w->time2_w, d, d);
    TENSOR("time_embedding.2.bias", w->time2_b, d);
    TENSOR("time_projection.1.weight", w->proj_w, 6 * d, d);
    TENSOR("time_projection.1.bias", w->proj_b, 6 * d);
    for (int i = 0; i < c->num_layers; i++) {
        DitBlockWeights *b = &w->blocks[i];
#define BLOCK(suffix, slot, ...)                                     \
        snprintf(name, sizeof name, "blocks.%d.%s", i, suffix);      \
        TENSOR(name, slot, __VA_ARGS__)
        BLOCK("modulation", b->modulation, 1, 6, d);
        BLOCK("self_attn.q.weight", b->sa_q_w, d, d);
        BLOCK("self_attn.q.bias", b->sa_q_b, d);
        BLOCK("self_attn.k.weight", b->sa_k_w, d, d);
        BLOCK("self_attn.k.bias", b->sa_k_b, d);
        BLOCK("self_attn.v.weight", b->sa_v_w, d, d);
        BLOCK("self_attn.v.bias", b->sa_v_b, d);
        BLOCK("self_attn.o.weight", b->sa_o_w, d, d);
        BLOCK("self_attn.o.bias", b->sa_o_b, d);
        BLOCK("self_attn.norm_q.weight", b->sa_norm_q, d);
        BLOCK("self_attn.norm_k.weight", b->sa_norm_k, d);
        BLOCK("norm3.weight", b->norm3_w, d);
        BLOCK("norm3.bias", b->norm3_b, d);
        BLOCK("cross_attn.q.weight", b->ca_q_w, d, d);
        BLOCK("cross_attn.q.bias", b->ca_q_b, d);
        BLOCK("cross_attn.k.weight", b->ca_k_w, d, d);
        BLOCK("cross_attn.k.bias", b->ca_k_b, d);
        BLOCK("cross_attn.v.weight", b->ca_v_w, d, d);
        BLOCK("cross_attn.v.bias", b->ca_v_b, d);
        BLOCK("cross_attn.o.weight", b->ca_o_w, d, d);
        BLOCK("cross_attn.o.bias", b->ca_o_b, d);
        BLOCK("cross_attn.norm_q.weight", b->ca_norm_q, d);
        BLOCK("cross_attn.norm_k.weight", b->ca_norm_k, d);
        BLOCK("ffn.0.weight", b->ffn1_w, c->ffn_dim, d);
        BLOCK("ffn.0.bias", b->ffn1_b, c->ffn_dim);
        BLOCK("ffn.2.weight", b->ffn2_w, d, c->ffn_dim);
        BLOCK("ffn.2.bias", b->ffn2_b, d);
#undef BLOCK
    }
    TENSOR("head.modulation", w->head_modulation, 1, 2, d);
    TENSOR("head.head.weight", w->head_w, (int64_t)c->out_dim * patch_volume(c), d);
    TENSOR("head.head.bias", w->head_b, (int64_t)c->out_dim * patch_volume(c));
    return 0;
}
#undef TENSOR

static int init_model(DitModel *m, const DitConfig *cfg, Error *err) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->block_storage = calloc((size_t)cfg->num_layers, sizeof *m->block_storage);
    if (!m->block_storage) return error_set(err, "out of memory for %d blocks", cfg->num_layers);
    m->w.blocks = m->block_storage;
    return 0;
}

/* Loading binds every tensor the config needs through the checkpoint's official-name table: pass 1 checks them
 * and counts the floats that need the arena (non-F32 or misaligned), pass 2 converts or points into the mapping. */
typedef struct {
    DitModel *m;
    Checkpoint *ck;
    size_t arena_floats;
    size_t arena_used;
    Error *err;
} LoadCtx;

static int needs_copy(const StTensor *t) { return t->dtype != ST_F32 || ((uintptr_t)t->data % sizeof(float)) != 0; }

static int check_tensor(LoadCtx *ctx, const char *name, int ndim, const int64_t *shape, StTensor *view,
                        const char **file) {
    const CheckpointTensor *t = checkpoint_find(ctx->ck, name);
    char want[96], got[96], official[160] = "";
    if (!t) return error_set(ctx->err, "%s: missing tensor '%s' (config %s needs it)", ctx->ck->path, name,
                             ctx->m->cfg.name);
    checkpoint_view(t, view);
    *file = t->file;
    if (strcmp(view->name, name) != 0) snprintf(official, sizeof official, " (official '%s')", name);
    int same = view->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = view->shape[i] == shape[i];
    if (!same) {
        st_format_shape(want, sizeof want, ndim, shape);
        st_format_shape(got, sizeof got, view->ndim, view->shape);
        return error_set(ctx->err, "%s: tensor '%s'%s has shape %s%s, config %s needs %s", t->file, view->name,
                         official, got, t->parts > 1 ? " per fused part" : "", ctx->m->cfg.name, want);
    }
    if (view->dtype == ST_OTHER)
        return error_set(ctx->err, "%s: tensor '%s' has dtype %s; only F32, F16 and BF16 are supported", t->file,
                         view->name, view->dtype_name);
    return 0;
}

static int count_tensor(void *user, const char *name, int ndim, const int64_t *shape, const float **slot) {
    (void)slot;
    LoadCtx *ctx = user;
    StTensor t;
    const char *file;
    if (check_tensor(ctx, name, ndim, shape, &t, &file)) return -1;
    if (needs_copy(&t)) ctx->arena_floats += st_numel(ndim, shape);
    return 0;
}

static int bind_tensor(void *user, const char *name, int ndim, const int64_t *shape, const float **slot) {
    LoadCtx *ctx = user;
    StTensor t;
    const char *file;
    if (check_tensor(ctx, name, ndim, shape, &t, &file)) return -1;
    size_t n = st_numel(ndim, shape);
    const float *data;
    if (needs_copy(&t)) {
        float *dst = ctx->m->arena + ctx->arena_used;
        ctx->arena_used += n;
        if (st_to_f32(&t, dst, ctx->err)) return error_prefix(ctx->err, "%s: tensor '%s'", file, t.name);
        st_drop_pages(&t); /* converted: its file pages need not stay resident beside the copy */
        data = dst;
    } else {
        data = t.data;
    }
    for (size_t i = 0; i < n; i++)
        if (!isfinite(data[i]))
            return error_set(ctx->err, "%s: tensor '%s' holds a non-finite value (%g at index %zu)", file, t.name,
                             (double)data[i], i);
    *slot = data;
    return 0;
}

int dit_load(DitModel *m, const DitConfig *preset, const char *path, Error *err) {
    memset(m, 0, sizeof *m);
    Checkpoint *ck = calloc(1, sizeof *ck);
    if (!ck) return error_set(err, "out of memory");
    DitConfig cfg;
    if (checkpoint_open(ck, path, err)) {
        free(ck);
        return -1;
    }
    if (checkpoint_config(ck, preset, &cfg, err) || init_model(m, &cfg, err)) {
        checkpoint_close(ck);
        free(ck);
        return -1;
    }
    m->file = ck;
    snprintf(m->weights_path, sizeof m->weights_path, "%s", path);
    snprintf(m->weights_layout, sizeof m->weights_layout, "%s", ck->layout);
    LoadCtx ctx = {.m = m, .ck = ck, .err = err};
    if (dit_for_each_tensor(m, count_tensor, &ctx)) goto fail;
    if (ctx.arena_floats) {
        m->arena = malloc(ctx.arena_floats * sizeof(float));
        if (!m->arena) {
            error_set(err, "%s: out of memory converting %zu weights to float32", path, ctx.arena_floats);
            goto fail;
        }
        m->arena_floats = ctx.arena_floats;
    }
    if (dit_for_each_tensor(m, bind_tensor, &ctx)) goto fail;
    if (checkpoint_check_all_used(ck, m->cfg.name, err)) goto fail;
    if (checkpoint_sha256(ck, m->weights_sha256, err)) goto fail;
    return 0;
fail:
    dit_free(m);
    return -1;
}

/* Random weights: N(0, 1/fan_in) for matrices (unit-variance activations), small biases, norm weights near 1,
 * modulation N(0,1)/sqrt(dim) as Wan initialises it. Each tensor draws from its own Philox stream. */
typedef struct {
    DitModel *m;
    uint64_t seed;
    uint64_t stream;
    size_t used;
} RandomCtx;

static int count_random(void *user, const char *name, int ndim, const int64_t *shape, const float **slot) {
    (void)name;
    (void)slot;
    ((RandomCtx *)user)->used += st_numel(ndim, shape);
    return 0;
}

static int fill_random(void *user, const char *name, int ndim, const int64_t *shape, const float **slot) {
    RandomCtx *ctx = user;
    size_t n = st_numel(ndim, shape);
    float *dst = ctx->m->arena + ctx->used;
    ctx->used += n;
    philox_normal(dst, n, ctx->seed, ctx->stream++);
    const char *last = strrchr(name, '.');
    int is_bias = last && strcmp(last, ".bias") == 0 && !strstr(name, "norm3");
    int is_norm = strstr(name, "norm") != NULL;
    int is_modulation = strstr(name, "modulation") != NULL;
    float scale, offset = 0.0f;
    if (is_norm) {
        scale = 0.1f;
        offset = strcmp(last, ".bias") == 0 ? 0.0f : 1.0f;
    } else if (is_bias) {
        scale = 0.02f;
    } else if (is_modulation) {
        scale = 1.0f / sqrtf((float)ctx->m->cfg.dim);
    } else if (strcmp(name, "token_embedding.weight") == 0) {
        scale = 1.0f;
    } else {
        int64_t fan_in = 1;
        for (int i = 1; i < ndim; i++) fan_in *= shape[i];
        scale = 1.0f / sqrtf((float)fan_in);
    }
    for (size_t i = 0; i < n; i++) dst[i] = offset + scale * dst[i];
    *slot = dst;
    return 0;
}

int dit_init_random(DitModel *m, const DitConfig *cfg, uint64_t seed, Error *err) {
    if (init_model(m, cfg, err)) return -1;
    RandomCtx ctx = {.m = m, .seed = seed};
    dit_for_each_tensor(m, count_random, &ctx);
    m->arena = malloc(ctx.used * sizeof(float));
    if (!m->arena) {
        dit_free(m);
        return error_set(err, "out of memory for %zu random weights", ctx.used);
    }
    m->arena_floats = ctx.used;
    ctx.used = 0;
    dit_for_each_tensor(m, fill_random, &ctx);
    snprintf(m->weights_path, sizeof m->weights_path, "random:seed=%llu", (unsigned long long)seed);
    snprintf(m->weights_sha256, sizeof m->weights_sha256, "none");
    return 0;
}

void dit_free(DitModel *m) {
    if (m->file) {
        checkpoint_close(m->file);
        free(m->file);
    }
    free(m->arena);
    free(m->block_storage);
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Activations
 * ------------------------------------------------------------------------------------------------------------- */

int dit_check_prediction(const DitConfig *c, Error *err) {
    if (c->prediction == DIT_PREDICT_X0 && (c->in_dim != c->out_dim || !(c->sigma_min > 0.0f)))
        return error_set(err, "model %s predicts x0: it needs in_dim == out_dim (%d, %d) and sigma_min > 0 (%g)",
                         c->name, c->in_dim, c->out_dim, (double)c->sigma_min);
    return 0;
}

float dit_x0_sigma(const DitConfig *c, float timestep) {
    const float sigma = timestep / 1000.0f;
    return sigma > c->sigma_min ? sigma : c->sigma_min;
}

int dit_state_init(DitState *s, const DitConfig *c, int F, int H, int W, Error *err) {
    memset(s, 0, sizeof *s);
    if (F <= 0 || H <= 0 || W <= 0 || F % c->patch_t || H % c->patch_h || W % c->patch_w)
        return error_set(err, "video grid %dx%dx%d is not a positive multiple of the patch %dx%dx%d", F, H, W,
                         c->patch_t, c->patch_h, c->patch_w);
    if (dit_check_prediction(c, err)) return -1;
    s->F = F, s->H = H, s->W = W;
    s->tf = F / c->patch_t, s->th = H / c->patch_h, s->tw = W / c->patch_w;
    s->L = s->tf * s->th * s->tw;
    size_t L = (size_t)s->L, d = (size_t)c->dim, T = (size_t)c->text_len, P = (size_t)patch_volume(c);
    size_t patch_width = P * (size_t)(c->in_dim > c->out_dim ? c->in_dim : c->out_dim);
    if (L * patch_width < (size_t)c->freq_dim) patch_width = (size_t)c->freq_dim; /* embed reuses it as scratch */
    int head_dim = c->dim / c->num_heads;
    s->att_scratch_floats = attention_scratch_floats(s->L, s->L > c->text_len ? s->L : c->text_len, c->num_heads);
    struct { float **p; size_t n; } bufs[] = {
        {&s->tokens, L * d}, {&s->e, d}, {&s->e0, 6 * d}, {&s->context, T * d},
        {&s->patches, L * patch_width}, {&s->norm, L * d}, {&s->q, L * d}, {&s->k, L * d}, {&s->v, L * d},
        {&s->attn, L * d}, {&s->proj, L * d}, {&s->hidden, L * (size_t)c->ffn_dim},
        {&s->ctx_k, T * d}, {&s->ctx_v, T * d}, {&s->text_hidden, T * d}, {&s->mod, 6 * d},
        {&s->rope_cos, L * (size_t)head_dim / 2}, {&s->rope_sin, L * (size_t)head_dim / 2},
        {&s->att_scratch, s->att_scratch_floats},
    };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        *bufs[i].p = malloc((bufs[i].n ? bufs[i].n : 1) * sizeof(float));
        if (!*bufs[i].p) {
            dit_state_free(s);
            return error_set(err, "out of memory for activations of %zu tokens", L);
        }
    }
    rope_tables(s->rope_cos, s->rope_sin, s->tf, s->th, s->tw, head_dim, c->rope_theta);
    return 0;
}

void dit_state_free(DitState *s) {
    float *bufs[] = {s->tokens, s->e, s->e0, s->context, s->patches, s->norm, s->q, s->k, s->v, s->attn,
                     s->proj, s->hidden, s->ctx_k, s->ctx_v, s->text_hidden, s->mod, s->rope_cos, s->rope_sin,
                     s->att_scratch};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    memset(s, 0, sizeof *s);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Forward stages
 * ------------------------------------------------------------------------------------------------------------- */

/* Conv3d with kernel = stride = patch is a linear map of each patch; the patch vector is ordered (c, pt, ph, pw)
 * to match the Conv3d weight [dim][in_dim][pt][ph][pw]. */
static void patchify(const DitConfig *c, const DitState *s, const float *x, float *patches) {
    const int pt = c->patch_t, ph = c->patch_h, pw = c->patch_w, P = pt * ph * pw;
    #pragma omp parallel for schedule(static)
    for (int l = 0; l < s->L; l++) {
        int fi = l / (s->th * s->tw), hi = (l / s->tw) % s->th, wi = l % s->tw;
        float *dst = patches + (size_t)l * c->in_dim * P;
        for (int ch = 0; ch < c->in_dim; ch++)
            for (int a = 0; a < pt; a++)
                for (int b = 0; b < ph; b++) {
                    const float *src = x + (((size_t)ch * s->F + fi * pt + a) * s->H + hi * ph + b) * s->W + wi * pw;
                    memcpy(dst, src, (size_t)pw * sizeof(float));
                    dst += pw;
                }
    }
}

/* Inverse of Wan's head layout: each token's output vector is ordered (pt, ph, pw, c)
 * (einsum 'fhwpqrc->cfphqwr'). */
static void unpatchify(const DitConfig *c, const DitState *s, const float *patches, float *out) {
    const int pt = c->patch_t, ph = c->patch_h, pw = c->patch_w, C = c->out_dim;
    #pragma omp parallel for schedule(static)
    for (int l = 0; l < s->L; l++) {
        int fi = l / (s->th * s->tw), hi = (l / s->tw) % s->th, wi = l % s->tw;
        const float *src = patches + (size_t)l * C * pt * ph * pw;
        for (int a = 0; a < pt; a++)
            for (int b = 0; b < ph; b++)
                for (int dw = 0; dw < pw; dw++)
                    for (int ch = 0; ch < C; ch++)
                        out[(((size_t)ch * s->F + fi * pt + a) * s->H + hi * ph + b) * s->W + wi * pw + dw] =
                            *src++;
    }
}

void dit_embed(const DitModel *m, DitState *s, const float *x, float timestep, const float *text) {
    const DitConfig *c = &m->cfg;
    const DitWeights *w = &m->w;
    const int d = c->dim, P = patch_volume(c);
    patchify(c, s, x, s->patches);
    linear(s->tokens, s->patches, w->patch_w, w->patch_b, s->L, c->in_dim * P, d);
    s->x_in = x;
    s->sigma = dit_x0_sigma(c, timestep);

    /* Time: sinusoid -> Linear -> SiLU -> Linear = e; SiLU(e) -> Linear = e0 (six modulation vectors). */
    float *sinus = s->patches; /* scratch: L*in_dim*P >= freq_dim for every config (checked in state init) */
    float *h1 = s->norm;
    timestep_embedding(sinus, timestep, c->freq_dim);
    linear(h1, sinus, w->time1_w, w->time1_b, 1, c->freq_dim, d);
    silu(h1, (size_t)d);
    linear(s->e, h1, w->time2_w, w->time2_b, 1, d, d);
    memcpy(h1, s->e, (size_t)d * sizeof(float));
    silu(h1, (size_t)d);
    linear(s->e0, h1, w->proj_w, w->proj_b, 1, d, 6 * d);

    /* Text: Linear -> GELU(tanh) -> Linear over all text_len rows (zero padding included, as Wan does). */
    linear(s->text_hidden, text, w->text1_w, w->text1_b, c->text_len, c->text_dim, d);
    gelu_tanh(s->text_hidden, (size_t)c->text_len * d);
    linear(s->context, s->text_hidden, w->text2_w, w->text2_b, c->text_len, d, d);
}

/* The module's output y (pre-gate, in s->proj) is copied out for the strategy, or taken from it (SUPPLY), and then
 * added to the residual stream with its gate (NULL: ungated). */
static int module_supplied(const ModulePlan *mp, BlockModule m) { return mp && mp->mode[m] == MODULE_SUPPLY; }

static void module_residual(DitState *s, const ModulePlan *mp, BlockModule m, const float *gate, int L, int d) {
    const float *y = module_supplied(mp, m) ? mp->out[m] : s->proj;
    if (!module_supplied(mp, m) && mp && mp->out[m]) memcpy(mp->out[m], s->proj, (size_t)L * d * sizeof(float));
    gated_residual(s->tokens, y, gate, L, d);
}

void dit_block(const DitModel *m, DitState *s, int layer, AttentionPlan *plan, const ModulePlan *modules) {
    const DitConfig *c = &m->cfg;
    const DitBlockWeights *b = &m->w.blocks[layer];
    const int L = s->L, d = c->dim, T = c->text_len, heads = c->num_heads, hd = d / heads;
    float *mod = s->mod;
    for (int i = 0; i < 6 * d; i++) mod[i] = b->modulation[i] + s->e0[i];
    const float *shift_msa = mod, *scale_msa = mod + d, *gate_msa = mod + 2 * d;
    const float *shift_mlp = mod + 3 * d, *scale_mlp = mod + 4 * d, *gate_mlp = mod + 5 * d;

    if (!module_supplied(modules, MODULE_SELF_ATTN)) {
        /* Self-attention on the modulated, normalised tokens; RMSNorm over the whole dim before the head split. */
        layernorm(s->norm, s->tokens, NULL, NULL, L, d, c->eps);
        modulate(s->norm, s->norm, shift_msa, scale_msa, L, d);
        linear(s->q, s->norm, b->sa_q_w, b->sa_q_b, L, d, d);
        linear(s->k, s->norm, b->sa_k_w, b->sa_k_b, L, d, d);
        linear(s->v, s->norm, b->sa_v_w, b->sa_v_b, L, d, d);
        rmsnorm(s->q, s->q, b->sa_norm_q, L, d, c->eps);
        rmsnorm(s->k, s->k, b->sa_norm_k, L, d, c->eps);
        rope_apply(s->q, s->rope_cos, s->rope_sin, L, heads, hd);
        rope_apply(s->k, s->rope_cos, s->rope_sin, L, heads, hd);
        /* A plan with sparse heads runs Sparse VideoGen attention (models/sparse_attention.h), which fills the plan's
         * FLOPs itself. Its workspaces are activations that are free at this point: s->norm and s->proj (L x dim each,
         * rewritten by the cross-attention's norm and the output projection) hold the permuted K and V of temporal
         * heads, and the larger of the FFN's s->hidden and s->att_scratch its per-thread tiles. Only tiny test
         * geometries (ffn_dim * L below one thread's tiles) need a buffer of their own; if even that fails,
         * svg_attention resets the plan to dense and the dense path below runs. */
        int sparse_done = 0;
        if (svg_plan_is_sparse(plan)) {
            plan->frames = s->tf;
            plan->tokens_per_frame = s->th * s->tw;
            const size_t hidden_floats = (size_t)L * c->ffn_dim;
            float *tiles = hidden_floats >= s->att_scratch_floats ? s->hidden : s->att_scratch, *own = NULL;
            size_t tile_floats = hidden_floats >= s->att_scratch_floats ? hidden_floats : s->att_scratch_floats;
            if (tile_floats < svg_thread_floats(L, hd)) {
                tile_floats = svg_thread_floats(L, hd);
                tiles = own = malloc(tile_floats * sizeof(float));
                if (!own) tile_floats = 0;
            }
            sparse_done = svg_attention(s->attn, s->q, s->k, s->v, heads, hd, plan, s->norm, s->proj, tiles,
                                        tile_floats) == 0;
            free(own);
        }
        if (!sparse_done) {
            attention(s->attn, s->q, s->k, s->v, L, L, heads, hd, s->att_scratch);
            if (plan) plan->flops_dense = plan->flops_done = dit_flops_self_attention(c, L);
        }
        linear(s->proj, s->attn, b->sa_o_w, b->sa_o_b, L, d, d);
    } else if (plan) {
        plan->flops_dense = dit_flops_self_attention(c, L);
        plan->flops_done = 0.0;
    }
    module_residual(s, modules, MODULE_SELF_ATTN, gate_msa, L, d);

    /* Cross-attention to the text context (affine LayerNorm, no modulation, ungated residual). */
    if (!module_supplied(modules, MODULE_CROSS_ATTN)) {
        layernorm(s->norm, s->tokens, b->norm3_w, b->norm3_b, L, d, c->eps);
        linear(s->q, s->norm, b->ca_q_w, b->ca_q_b, L, d, d);
        rmsnorm(s->q, s->q, b->ca_norm_q, L, d, c->eps);
        linear(s->ctx_k, s->context, b->ca_k_w, b->ca_k_b, T, d, d);
        rmsnorm(s->ctx_k, s->ctx_k, b->ca_norm_k, T, d, c->eps);
        linear(s->ctx_v, s->context, b->ca_v_w, b->ca_v_b, T, d, d);
        attention(s->attn, s->q, s->ctx_k, s->ctx_v, L, T, heads, hd, s->att_scratch);
        linear(s->proj, s->attn, b->ca_o_w, b->ca_o_b, L, d, d);
    }
    module_residual(s, modules, MODULE_CROSS_ATTN, NULL, L, d);

    /* Feed-forward. */
    if (!module_supplied(modules, MODULE_FFN)) {
        layernorm(s->norm, s->tokens, NULL, NULL, L, d, c->eps);
        modulate(s->norm, s->norm, shift_mlp, scale_mlp, L, d);
        linear(s->hidden, s->norm, b->ffn1_w, b->ffn1_b, L, d, c->ffn_dim);
        gelu_tanh(s->hidden, (size_t)L * c->ffn_dim);
        linear(s->proj, s->hidden, b->ffn2_w, b->ffn2_b, L, c->ffn_dim, d);
    }
    module_residual(s, modules, MODULE_FFN, gate_mlp, L, d);
}

void dit_head(const DitModel *m, DitState *s, float *out) {
    const DitConfig *c = &m->cfg;
    const int d = c->dim, P = patch_volume(c);
    float *shift = s->mod, *scale = s->mod + d;
    for (int i = 0; i < d; i++) {
        shift[i] = m->w.head_modulation[i] + s->e[i];
        scale[i] = m->w.head_modulation[d + i] + s->e[i];
    }
    layernorm(s->norm, s->tokens, NULL, NULL, s->L, d, c->eps);
    modulate(s->norm, s->norm, shift, scale, s->L, d);
    linear(s->patches, s->norm, m->w.head_w, m->w.head_b, s->L, d, c->out_dim * P);
    unpatchify(c, s, s->patches, out);
    if (c->prediction == DIT_PREDICT_X0)
        x0_to_velocity(out, s->x_in, s->sigma, (size_t)c->out_dim * s->F * s->H * s->W);
}

void dit_forward(const DitModel *m, DitState *s, const float *x, float timestep, const float *text, float *out) {
    dit_embed(m, s, x, timestep, text);
    for (int i = 0; i < m->cfg.num_layers; i++) dit_block(m, s, i, NULL, NULL);
    dit_head(m, s, out);
}

/* ---------------------------------------------------------------------------------------------------------------
 * FLOP counts
 * ------------------------------------------------------------------------------------------------------------- */

double dit_flops_embed(const DitConfig *c, int L) {
    double d = c->dim, P = patch_volume(c);
    double patch = 2.0 * L * d * c->in_dim * P;
    double time = 2.0 * (c->freq_dim * d + d * d + d * 6 * d);
    double text = 2.0 * c->text_len * (c->text_dim * d + d * d);
    return patch + time + text;
}

double dit_flops_self_attention(const DitConfig *c, int L) { return 4.0 * (double)L * L * c->dim; }

double dit_flops_module(const DitConfig *c, int L, BlockModule module) {
    double d = c->dim, T = c->text_len;
    switch (module) {
    case MODULE_SELF_ATTN: return 4 * 2.0 * L * d * d + dit_flops_self_attention(c, L);
    case MODULE_CROSS_ATTN: return 2 * 2.0 * L * d * d + 2 * 2.0 * T * d * d + 4.0 * L * T * d;
    case MODULE_FFN: return 2 * 2.0 * L * d * c->ffn_dim;
    default: return 0.0;
    }
}

double dit_flops_block(const DitConfig *c, int L) {
    return dit_flops_module(c, L, MODULE_SELF_ATTN) + dit_flops_module(c, L, MODULE_CROSS_ATTN) +
           dit_flops_module(c, L, MODULE_FFN);
}

double dit_flops_head(const DitConfig *c, int L) { return 2.0 * L * c->dim * c->out_dim * patch_volume(c); }

double dit_flops_forward(const DitConfig *c, int L) {
    return dit_flops_embed(c, L) + c->num_layers * dit_flops_block(c, L) + dit_flops_head(c, L);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Prompts
 * ------------------------------------------------------------------------------------------------------------- */

int dit_read_vocab(const char *path, char ***words, int *count, Error *err) {
    FILE *f = fopen(path, "r");
    if (!f) return error_set(err, "%s: cannot open vocabulary: %m", path);
    char line[256];
    char **list = NULL;
    int n = 0, cap = 0;
    while (fgets(line, sizeof line, f)) {
        size_t len = strcspn(line, "\r\n");
        line[len] = '\0';
        if (len == 0) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 32;
            char **grown = realloc(list, (size_t)cap * sizeof *list);
            if (!grown) break;
            list = grown;
        }
        list[n] = strdup(line);
        if (!list[n]) break;
        n++;
    }
    int bad = ferror(f) || !feof(f);
    fclose(f);
    if (bad || n == 0) {
        dit_free_vocab(list, n);
        return error_set(err, "%s: %s", path, n == 0 ? "vocabulary is empty" : "cannot read vocabulary");
    }
    *words = list;
    *count = n;
    return 0;
}

void dit_free_vocab(char **words, int count) {
    for (int i = 0; i < count; i++) free(words[i]);
    free(words);
}

int dit_encode_prompt(const DitModel *m, char **vocab, int vocab_size, const char *prompt, float *text, Error *err) {
    const DitConfig *c = &m->cfg;
    memset(text, 0, (size_t)c->text_len * c->text_dim * sizeof(float));
    if (c->vocab_size <= 0 || !m->w.token_embedding)
        return error_set(err, "model %s has no word vocabulary; it needs precomputed text embeddings", c->name);
    if (vocab_size > c->vocab_size)
        return error_set(err, "vocabulary has %d words but the model's token_embedding has %d rows", vocab_size,
                         c->vocab_size);
    int row = 0;
    const char *p = prompt;
    while (*p) {
        while (*p && isspace((unsigned char)*p)) p++;
        if (!*p) break;
        char word[64];
        size_t len = 0;
        while (p[len] && !isspace((unsigned char)p[len])) len++;
        if (len >= sizeof word) return error_set(err, "prompt word too long: '%.*s'", (int)len, p);
        for (size_t i = 0; i < len; i++) word[i] = (char)tolower((unsigned char)p[i]);
        word[len] = '\0';
        p += len;
        int id = -1;
        for (int i = 0; i < vocab_size; i++)
            if (strcmp(vocab[i], word) == 0) id = i;
        if (id < 0) {
            char list[1024];
            size_t used = 0;
            for (int i = 0; i < vocab_size && used < sizeof list; i++)
                used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? " " : "", vocab[i]);
            int punct = 0;
            for (size_t i = 0; i < len; i++) punct |= ispunct((unsigned char)word[i]) != 0;
            return error_set(err, "unknown word '%s' in prompt \"%s\"%s; the vocabulary is: %s", word, prompt,
                             punct ? " (the vocabulary has no punctuation: write bare words separated by spaces)" : "",
                             list);
        }
        if (row == c->text_len)
            return error_set(err, "prompt \"%s\" has more than %d words", prompt, c->text_len);
        memcpy(text + (size_t)row * c->text_dim, m->w.token_embedding + (size_t)id * c->text_dim,
               (size_t)c->text_dim * sizeof(float));
        row++;
    }
    return 0;
}
