/* The CUDA engine: the staged forward of models/dit/dit.c on one GPU (see models/dit/engine_cuda.h for precision, kernels and
 * error reporting), its VecOps on device memory, and engine_create for CUDA builds.
 *
 * Ownership: engine_create_cuda returns an engine that borrows the model; it owns one device arena of weights, the
 * activations of the prepared geometry, a cuBLAS handle and a little scratch, all released by destroy.
 *
 * Everything runs on the legacy default stream (stream 0): cudaMemcpy, cudaMemset and cudaFree order with the kernels
 * and cuBLAS calls without explicit synchronisation, which keeps upload/download/VecOps simple and obviously right. */
#include "models/dit/engine_cuda.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <type_traits>

#include "models/cuda_kernels.cuh"

extern "C" {
#include "models/kernels.h" /* rope_tables, timestep_embedding: the CPU's own tables, computed on the host in double */
#include "models/sparse_attention.h" /* svg_band_for_sparsity, svg_pattern_flops, svg_mask_density, svg_plan_is_sparse */
}

/* cuBLAS is loaded on first use (dlopen) rather than linked: libcublasLt is ~540 MB, and mapping it at startup costs
 * every process of a CUDA build ~0.2 s and ~200 MB of resident memory even when it only runs on the CPU (the test
 * suite; CPU-backend runs, whose peak memory goes into the run records). The CUDA runtime is linked statically, so a
 * CUDA build starts on any machine and needs the CUDA libraries only when it creates a CUDA engine. */
typedef cublasStatus_t (*GemmExFn)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                                   const void *, const void *, cudaDataType, int, const void *, cudaDataType, int,
                                   const void *, void *, cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);
typedef struct {
    decltype(&cublasCreate_v2) create;
    decltype(&cublasDestroy_v2) destroy;
    decltype(&cublasSetStream_v2) set_stream;
    decltype(&cublasSetMathMode) set_math_mode;
    decltype(&cublasGetStatusString) status_string;
    GemmExFn gemm_ex;
} Cublas;

#define CB_STR2(x) #x
#define CB_STR(x) CB_STR2(x)
#define CUBLAS_LIBRARY "libcublas.so." CB_STR(CUBLAS_VER_MAJOR) /* the major version this file was compiled against */

/* The library stays loaded for the life of the process (no dlclose): cuBLAS keeps process-wide state, and dlopen
 * reference-counts repeated loads, so creating many engines costs nothing more. */
static int cublas_load(Cublas *api, Error *err) {
    void *lib = dlopen(CUBLAS_LIBRARY, RTLD_NOW | RTLD_LOCAL);
    if (!lib) return error_set(err, "cannot load cuBLAS: %s", dlerror());
    struct {
        const char *name;
        void **slot;
    } syms[] = {
        {"cublasCreate_v2", (void **)&api->create},
        {"cublasDestroy_v2", (void **)&api->destroy},
        {"cublasSetStream_v2", (void **)&api->set_stream},
        {"cublasSetMathMode", (void **)&api->set_math_mode},
        {"cublasGetStatusString", (void **)&api->status_string},
        {"cublasGemmEx", (void **)&api->gemm_ex},
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        *syms[i].slot = dlsym(lib, syms[i].name);
        if (!*syms[i].slot) return error_set(err, "%s: missing symbol %s", CUBLAS_LIBRARY, syms[i].name);
    }
    return 0;
}

/* Sparse VideoGen profiling results: per (head, sampled row) two sums of squares, on the device and copied to the
 * host, where the heads are classified (a few KiB; never a full tensor). */
typedef struct {
    double *dev, *host;
    size_t cap;                     /* doubles each holds */
} SvgScratch;

static void svg_scratch_free(SvgScratch *s) {
    cudaFree(s->dev);
    free(s->host);
    s->dev = s->host = NULL;
    s->cap = 0;
}

static cudaError_t svg_scratch_reserve(SvgScratch *s, size_t n) {
    if (n <= s->cap) return cudaSuccess;
    svg_scratch_free(s);
    cudaError_t rc = cudaMalloc((void **)&s->dev, n * sizeof(double));
    s->host = (double *)malloc(n * sizeof(double));
    if (rc == cudaSuccess && !s->host) rc = cudaErrorMemoryAllocation;
    if (rc != cudaSuccess) {
        cudaGetLastError();
        svg_scratch_free(s);
        return rc;
    }
    s->cap = n;
    return cudaSuccess;
}

/* Sparse VideoGen self-attention with the contract of the CPU's svg_attention (models/sparse_attention.h): reads
 * plan->frames, tokens_per_frame, pattern, band_tokens/sparsity and profile_rows; writes the patterns (when
 * profiling; classified on the host from the device's sums of squares, spatial on a tie, exactly as the CPU
 * decides), band_tokens, sink_tokens, density and the FLOPs (the same tiles as the CPU, so the same count). q, k, v,
 * out: device [L][heads*hd]. A failure is returned with `what` naming the step. */
template <typename T>
static cudaError_t svg_run(SvgScratch *scr, AttentionPlan *plan, T *out, const T *q, const T *k, const T *v,
                           int heads, int hd, cudaStream_t st, const char **what) {
    *what = "attention (svg)";
    const int L = plan->frames * plan->tokens_per_frame;
    if (plan->num_heads != heads || heads > CUDA_SVG_MAX_HEADS || !plan->pattern || L <= 0)
        return cudaErrorInvalidValue;
    SvgShape g;
    g.frames = plan->frames;
    g.tokens_per_frame = plan->tokens_per_frame;
    g.block = plan->block;
    g.band = plan->band_tokens > 0 ? (plan->band_tokens < L ? plan->band_tokens : L)
                                   : svg_band_for_sparsity(L, g.tokens_per_frame, plan->sparsity, plan->block);
    plan->band_tokens = g.band;
    plan->sink_tokens = g.tokens_per_frame;
    CudaSvgHeads heads_of;
    memset(&heads_of, 0, sizeof heads_of);
    for (int h = 0; h < heads; h++) heads_of.pattern[h] = (unsigned char)plan->pattern[h];
    double flops = 0.0;
    cudaError_t rc = cudaSuccess;
    if (plan->profile_rows > 0) {
        *what = "attention (svg profiling)";
        const int rows = plan->profile_rows < L ? plan->profile_rows : L;
        const size_t n = (size_t)heads * rows * 2;
        rc = svg_scratch_reserve(scr, n);
        if (rc == cudaSuccess) rc = cuda_svg_profile<T>(scr->dev, q, k, v, g, heads, hd, rows, plan->profile_seed, &heads_of, st);
        if (rc == cudaSuccess) rc = cudaMemcpy(scr->host, scr->dev, n * sizeof(double), cudaMemcpyDeviceToHost);
        if (rc != cudaSuccess) return rc;
        int nprof = 0;
        for (int h = 0; h < heads; h++) {
            if (plan->pattern[h] == ATTN_DENSE) continue;
            nprof++;
            double mse[2] = {0.0, 0.0};
            for (int a = 0; a < rows; a++)
                for (int m = 0; m < 2; m++) mse[m] += scr->host[((size_t)h * rows + a) * 2 + m];
            for (int m = 0; m < 2; m++) mse[m] /= (double)rows * hd;
            plan->pattern[h] = svg_pattern_for_mse(mse);
            heads_of.pattern[h] = (unsigned char)plan->pattern[h];
        }
        flops += nprof * 8.0 * hd * rows * (double)L;
        *what = "attention (svg)";
    }
    rc = cuda_svg_attention<T>(out, q, k, v, g, heads, hd, &heads_of, st);
    if (rc != cudaSuccess) return rc;
    for (int h = 0; h < heads; h++) {
        flops += svg_pattern_flops(&g, plan->pattern[h], hd);
        if (plan->density) plan->density[h] = (float)svg_mask_density(&g, plan->pattern[h]);
    }
    plan->flops_dense = 4.0 * (double)L * L * heads * hd;
    plan->flops_done = flops;
    return cudaSuccess;
}

typedef struct {
    const DitModel *model;
    CudaOptions opt;
    cudaStream_t stream;            /* 0: the legacy default stream (see the top of the file) */
    cudaDataType_t ctype;           /* type of GEMM inputs (weights and activations): CUDA_R_32F or CUDA_R_16BF */
    size_t csize;                   /* its size in bytes */
    Cublas cublas;                  /* the functions, loaded at creation */
    cublasHandle_t blas;

    /* Weights in one device arena, addressed like the host model: w and blocks hold device pointers. The GEMM
     * matrices (*_w of the Linears, patch_w, head_w) point to ctype elements despite their float type; gemm() passes
     * them to cuBLAS as untyped pointers with ctype. Every other tensor is float. */
    void *weight_arena;
    size_t weight_bytes;
    DitWeights w;
    DitBlockWeights *blocks;        /* host array [num_layers] */

    VecOps ops;
    double *red_partials, *red_result;  /* device: CUDA_SUM_PARTIALS + 1 doubles for VecOps reductions */
    unsigned long long *bad;            /* device: non-finite count of VecOps guide */
    float *sinus_host;                  /* host [freq_dim]: the timestep sinusoid before upload */

    /* Activations of the prepared geometry (all NULL before prepare). float unless marked ctype. */
    int prepared, F, H, W, L;
    int token_frames, tokens_per_frame; /* the token grid: L = token_frames * tokens_per_frame */
    const float *x_in;              /* device input of the last embed, borrowed (x0 prediction: head converts with it) */
    float sigma;                    /* dit_x0_sigma of its timestep */
    size_t activation_bytes;
    float *tokens, *e, *e0, *mod, *h1, *sinus, *text_f, *q, *k, *v, *ctx_k, *ctx_v, *proj, *hidden, *head_out;
    float *rope_cos, *rope_sin;
    void *small_in, *patches, *text_in, *context, *norm, *qh, *kh, *vh, *ctx_kh, *ctx_vh, *attn, *hidden_in; /* ctype */

    SvgScratch svg;                 /* Sparse VideoGen profiling partials, grown on demand */

    char error[512];                /* first failure inside a stage; "" when none */
} CudaEngine;

static CudaEngine *impl(Engine *e) { return (CudaEngine *)e->impl; }

static int patch_volume(const DitConfig *c) { return c->patch_t * c->patch_h * c->patch_w; }

/* Remembers the first failure (later ones are usually its consequences). */
static void fail(CudaEngine *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(CudaEngine *c, const char *fmt, ...) {
    if (c->error[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof c->error, fmt, ap);
    va_end(ap);
}

static void note(CudaEngine *c, cudaError_t rc, const char *what) {
    if (rc != cudaSuccess) fail(c, "%s: %s", what, cudaGetErrorString(rc));
}

/* Round-to-nearest-even fp32 -> bf16 bits on the host (weights are finite: the loader checks). */
static uint16_t bf16_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0; /* NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static float bf16_to_float(uint16_t b) {
    const uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ---------------------------------------------------------------------------------------------------------------
 * GEMM and attention dispatch
 * ------------------------------------------------------------------------------------------------------------- */

/* out[M][N] = in[M][K] · weight[N][K]^T + bias[N]: the row-major Linear of models/kernels.c. cuBLAS is column-major,
 * and a row-major [M][N] matrix is a column-major N x M one, so this is out^T = weight · in^T: C (N x M, ldc N) =
 * op(A) B with A = weight seen as a column-major K x N matrix (lda K) transposed, B = in seen as a column-major K x M
 * matrix (ldb K). The bias is written first and accumulated onto (beta = 1), as on the CPU. FP32 accumulation
 * always. */
static void gemm(CudaEngine *c, float *out, const void *in, const float *weight, const float *bias, int M, int K,
                 int N) {
    if (M <= 0 || N <= 0 || K <= 0) return;
    float beta = 0.0f;
    if (bias) {
        note(c, cuda_fill_rows(out, bias, (size_t)M, N, c->stream), "linear bias");
        beta = 1.0f;
    }
    const float alpha = 1.0f;
    cublasStatus_t rc = c->cublas.gemm_ex(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, (const void *)weight,
                                          c->ctype, K, in, c->ctype, K, &beta, out, CUDA_R_32F, N, CUBLAS_COMPUTE_32F,
                                          CUBLAS_GEMM_DEFAULT);
    if (rc != CUBLAS_STATUS_SUCCESS)
        fail(c, "cublasGemmEx (M %d, K %d, N %d): %s", M, K, N, c->cublas.status_string(rc));
}

template <typename T>
static void run_attention(CudaEngine *c, void *out, const void *q, const void *k, const void *v, int Lq, int Lk) {
    const DitConfig *cfg = &c->model->cfg;
    const int heads = cfg->num_heads, hd = cfg->dim / cfg->num_heads;
    if constexpr (std::is_same<T, bf16>::value) {
        if (c->opt.attention == CUDA_ATTENTION_MMA) {
            note(c, cuda_attention_mma((bf16 *)out, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, Lq, Lk, heads,
                                       hd, c->stream),
                 "attention (mma)");
            return;
        }
    }
    note(c, cuda_attention_simple<T>((T *)out, (const T *)q, (const T *)k, (const T *)v, Lq, Lk, heads, hd, c->stream),
         "attention (simple)");
}

/* ---------------------------------------------------------------------------------------------------------------
 * Stages: models/dit/dit.c line by line, with T the GEMM-input type
 * ------------------------------------------------------------------------------------------------------------- */

template <typename T> static void embed_t(CudaEngine *c, const float *x, float timestep, const float *text) {
    const DitConfig *cfg = &c->model->cfg;
    const DitWeights *w = &c->w;
    const int d = cfg->dim, P = patch_volume(cfg), Tn = cfg->text_len;
    const cudaStream_t st = c->stream;
    T *small = (T *)c->small_in, *text_in = (T *)c->text_in;

    c->x_in = x;
    c->sigma = dit_x0_sigma(cfg, timestep);
    note(c, cuda_patchify<T>((T *)c->patches, x, cfg->in_dim, c->F, c->H, c->W, cfg->patch_t, cfg->patch_h,
                             cfg->patch_w, st),
         "patchify");
    gemm(c, c->tokens, c->patches, w->patch_w, w->patch_b, c->L, cfg->in_dim * P, d);

    /* Time: sinusoid (host, double) -> Linear -> SiLU -> Linear = e; SiLU(e) -> Linear = e0. cudaMemcpyAsync from
     * pageable memory returns once the source is staged, so sinus_host may be rewritten by the next call. */
    timestep_embedding(c->sinus_host, timestep, cfg->freq_dim);
    note(c, cudaMemcpyAsync(c->sinus, c->sinus_host, (size_t)cfg->freq_dim * sizeof(float), cudaMemcpyHostToDevice, st),
         "timestep upload");
    note(c, cuda_convert<T>(small, c->sinus, (size_t)cfg->freq_dim, st), "embed");
    gemm(c, c->h1, small, w->time1_w, w->time1_b, 1, cfg->freq_dim, d);
    note(c, cuda_silu<T>(small, c->h1, (size_t)d, st), "embed");
    gemm(c, c->e, small, w->time2_w, w->time2_b, 1, d, d);
    note(c, cuda_silu<T>(small, c->e, (size_t)d, st), "embed");
    gemm(c, c->e0, small, w->proj_w, w->proj_b, 1, d, 6 * d);

    /* Text: Linear -> GELU(tanh) -> Linear over all text_len rows (zero padding included, as Wan does). */
    note(c, cuda_convert<T>(text_in, text, (size_t)Tn * cfg->text_dim, st), "embed");
    gemm(c, c->text_f, text_in, w->text1_w, w->text1_b, Tn, cfg->text_dim, d);
    note(c, cuda_gelu_tanh<T>(text_in, c->text_f, (size_t)Tn * d, st), "embed");
    gemm(c, c->text_f, text_in, w->text2_w, w->text2_b, Tn, d, d);
    note(c, cuda_convert<T>((T *)c->context, c->text_f, (size_t)Tn * d, st), "embed");
}

static int module_supplied(const ModulePlan *mp, BlockModule m) { return mp && mp->mode[m] == MODULE_SUPPLY; }

/* The module's output (pre-gate, fp32 in c->proj) goes out to the strategy or comes from it, then joins the residual
 * stream with its gate (models/backend.h ModulePlan). */
static void module_residual(CudaEngine *c, const ModulePlan *mp, BlockModule m, const float *gate, int L, int d) {
    const float *y = module_supplied(mp, m) ? mp->out[m] : c->proj;
    if (!module_supplied(mp, m) && mp && mp->out[m])
        note(c, cudaMemcpyAsync(mp->out[m], c->proj, (size_t)L * d * sizeof(float), cudaMemcpyDeviceToDevice, c->stream),
             "module output");
    note(c, cuda_gated_residual(c->tokens, y, gate, L, d, c->stream), "residual");
}

template <typename T>
static void block_t(CudaEngine *c, int layer, AttentionPlan *plan, const ModulePlan *modules) {
    const DitConfig *cfg = &c->model->cfg;
    const DitBlockWeights *b = &c->blocks[layer];
    const int L = c->L, d = cfg->dim, Tn = cfg->text_len, hd = d / cfg->num_heads;
    const float eps = cfg->eps;
    const cudaStream_t st = c->stream;
    T *norm = (T *)c->norm, *qh = (T *)c->qh, *kh = (T *)c->kh, *vh = (T *)c->vh;
    float *mod = c->mod;
    note(c, cuda_add(mod, b->modulation, c->e0, 6 * (size_t)d, st), "block modulation");
    const float *shift_msa = mod, *scale_msa = mod + d, *gate_msa = mod + 2 * d;
    const float *shift_mlp = mod + 3 * d, *scale_mlp = mod + 4 * d, *gate_mlp = mod + 5 * d;

    /* Self-attention on the modulated, normalised tokens; RMSNorm over the whole dim before the head split. */
    if (!module_supplied(modules, MODULE_SELF_ATTN)) {
        note(c, cuda_layernorm_modulate<T>(norm, c->tokens, NULL, NULL, shift_msa, scale_msa, L, d, eps, st), "norm1");
        gemm(c, c->q, norm, b->sa_q_w, b->sa_q_b, L, d, d);
        gemm(c, c->k, norm, b->sa_k_w, b->sa_k_b, L, d, d);
        gemm(c, c->v, norm, b->sa_v_w, b->sa_v_b, L, d, d);
        note(c, cuda_rmsnorm_rope<T>(qh, c->q, b->sa_norm_q, c->rope_cos, c->rope_sin, L, d, hd, eps, st), "q norm+rope");
        note(c, cuda_rmsnorm_rope<T>(kh, c->k, b->sa_norm_k, c->rope_cos, c->rope_sin, L, d, hd, eps, st), "k norm+rope");
        note(c, cuda_convert<T>(vh, c->v, (size_t)L * d, st), "v");
        if (svg_plan_is_sparse(plan)) {
            plan->frames = c->token_frames;
            plan->tokens_per_frame = c->tokens_per_frame;
            const char *what = "";
            note(c, svg_run<T>(&c->svg, plan, (T *)c->attn, qh, kh, vh, cfg->num_heads, hd, st, &what), what);
        } else {
            run_attention<T>(c, c->attn, qh, kh, vh, L, L);
            if (plan) plan->flops_dense = plan->flops_done = dit_flops_self_attention(cfg, L);
        }
        gemm(c, c->proj, c->attn, b->sa_o_w, b->sa_o_b, L, d, d);
    } else if (plan) {
        plan->flops_dense = dit_flops_self_attention(cfg, L);
        plan->flops_done = 0.0;
    }
    module_residual(c, modules, MODULE_SELF_ATTN, gate_msa, L, d);

    /* Cross-attention to the text context (affine LayerNorm, no modulation, ungated residual). */
    if (!module_supplied(modules, MODULE_CROSS_ATTN)) {
        note(c, cuda_layernorm_modulate<T>(norm, c->tokens, b->norm3_w, b->norm3_b, NULL, NULL, L, d, eps, st), "norm3");
        gemm(c, c->q, norm, b->ca_q_w, b->ca_q_b, L, d, d);
        note(c, cuda_rmsnorm_rope<T>(qh, c->q, b->ca_norm_q, NULL, NULL, L, d, hd, eps, st), "cross q norm");
        gemm(c, c->ctx_k, c->context, b->ca_k_w, b->ca_k_b, Tn, d, d);
        note(c, cuda_rmsnorm_rope<T>((T *)c->ctx_kh, c->ctx_k, b->ca_norm_k, NULL, NULL, Tn, d, hd, eps, st),
             "cross k norm");
        gemm(c, c->ctx_v, c->context, b->ca_v_w, b->ca_v_b, Tn, d, d);
        note(c, cuda_convert<T>((T *)c->ctx_vh, c->ctx_v, (size_t)Tn * d, st), "cross v");
        run_attention<T>(c, c->attn, qh, c->ctx_kh, c->ctx_vh, L, Tn);
        gemm(c, c->proj, c->attn, b->ca_o_w, b->ca_o_b, L, d, d);
    }
    module_residual(c, modules, MODULE_CROSS_ATTN, NULL, L, d);

    /* Feed-forward. */
    if (!module_supplied(modules, MODULE_FFN)) {
        note(c, cuda_layernorm_modulate<T>(norm, c->tokens, NULL, NULL, shift_mlp, scale_mlp, L, d, eps, st), "norm2");
        gemm(c, c->hidden, norm, b->ffn1_w, b->ffn1_b, L, d, cfg->ffn_dim);
        note(c, cuda_gelu_tanh<T>((T *)c->hidden_in, c->hidden, (size_t)L * cfg->ffn_dim, st), "gelu");
        gemm(c, c->proj, c->hidden_in, b->ffn2_w, b->ffn2_b, L, cfg->ffn_dim, d);
    }
    module_residual(c, modules, MODULE_FFN, gate_mlp, L, d);
}

template <typename T> static void head_t(CudaEngine *c, float *out) {
    const DitConfig *cfg = &c->model->cfg;
    const int d = cfg->dim, P = patch_volume(cfg);
    const cudaStream_t st = c->stream;
    float *shift = c->mod, *scale = c->mod + d;
    note(c, cuda_head_modulation(shift, scale, c->w.head_modulation, c->e, d, st), "head modulation");
    note(c, cuda_layernorm_modulate<T>((T *)c->norm, c->tokens, NULL, NULL, shift, scale, c->L, d, cfg->eps, st),
         "head norm");
    gemm(c, c->head_out, c->norm, c->w.head_w, c->w.head_b, c->L, d, cfg->out_dim * P);
    note(c, cuda_unpatchify(out, c->head_out, cfg->out_dim, c->F, c->H, c->W, cfg->patch_t, cfg->patch_h, cfg->patch_w,
                            st),
         "unpatchify");
    if (cfg->prediction == DIT_PREDICT_X0)
        note(c, cuda_x0_to_velocity(out, c->x_in, c->sigma, (size_t)cfg->out_dim * c->F * c->H * c->W, st),
             "x0 to velocity");
}

/* ---------------------------------------------------------------------------------------------------------------
 * Engine table
 * ------------------------------------------------------------------------------------------------------------- */

static int fp32_mode(const CudaEngine *c) { return c->opt.precision == CUDA_PRECISION_FP32; }

static int ready(CudaEngine *c, const char *stage) {
    if (!c->prepared) fail(c, "%s called before prepare", stage);
    return c->prepared;
}

static void cuda_embed(Engine *e, const float *x, float timestep, const float *text) {
    CudaEngine *c = impl(e);
    if (!ready(c, "embed")) return;
    if (fp32_mode(c)) embed_t<float>(c, x, timestep, text);
    else embed_t<bf16>(c, x, timestep, text);
}

static void cuda_block(Engine *e, int layer, AttentionPlan *plan, const ModulePlan *modules) {
    CudaEngine *c = impl(e);
    if (!ready(c, "block")) return;
    if (layer < 0 || layer >= e->model->cfg.num_layers) {
        fail(c, "block: layer %d out of range (model has %d)", layer, e->model->cfg.num_layers);
        return;
    }
    if (fp32_mode(c)) block_t<float>(c, layer, plan, modules);
    else block_t<bf16>(c, layer, plan, modules);
}

static void cuda_head(Engine *e, float *out) {
    CudaEngine *c = impl(e);
    if (!ready(c, "head")) return;
    if (fp32_mode(c)) head_t<float>(c, out);
    else head_t<bf16>(c, out);
}

static void cuda_upload(Engine *e, float *dst, const float *src, size_t n) {
    note(impl(e), cudaMemcpy(dst, src, n * sizeof(float), cudaMemcpyHostToDevice), "upload");
}

/* After a failure the device data cannot be trusted: the host gets NaN rather than stale or partial values. */
static void cuda_download(Engine *e, float *dst, const float *src, size_t n) {
    CudaEngine *c = impl(e);
    if (!c->error[0]) note(c, cudaMemcpy(dst, src, n * sizeof(float), cudaMemcpyDeviceToHost), "download");
    if (c->error[0])
        for (size_t i = 0; i < n; i++) dst[i] = NAN;
}

static void cuda_synchronize(Engine *e) {
    CudaEngine *c = impl(e);
    note(c, cudaStreamSynchronize(c->stream), "synchronize");
}

static float *cuda_tokens(Engine *e) { return impl(e)->tokens; }
static const float *cuda_time_embedding(Engine *e) { return impl(e)->e; }
static const float *cuda_time_projection(Engine *e) { return impl(e)->e0; }

/* ---------------------------------------------------------------------------------------------------------------
 * Activations
 * ------------------------------------------------------------------------------------------------------------- */

typedef struct {
    void **p;
    size_t bytes;
} DeviceBuffer;

enum { MAX_BUFFERS = 40 };

/* Every activation buffer with its size for L tokens: one list for allocation and release. */
static int activation_buffers(CudaEngine *c, size_t L, DeviceBuffer *out) {
    const DitConfig *cfg = &c->model->cfg;
    const size_t d = (size_t)cfg->dim, Tn = (size_t)cfg->text_len, P = (size_t)patch_volume(cfg);
    const size_t hd = d / (size_t)cfg->num_heads, f = sizeof(float), cs = c->csize;
    const size_t small = (size_t)cfg->freq_dim > d ? (size_t)cfg->freq_dim : d;
    const size_t text_w = (size_t)cfg->text_dim > d ? (size_t)cfg->text_dim : d;
    const DeviceBuffer list[] = {
        {(void **)&c->tokens, L * d * f},     {(void **)&c->e, d * f},
        {(void **)&c->e0, 6 * d * f},         {(void **)&c->mod, 6 * d * f},
        {(void **)&c->h1, d * f},             {(void **)&c->sinus, (size_t)cfg->freq_dim * f},
        {(void **)&c->text_f, Tn * d * f},    {(void **)&c->q, L * d * f},
        {(void **)&c->k, L * d * f},          {(void **)&c->v, L * d * f},
        {(void **)&c->ctx_k, Tn * d * f},     {(void **)&c->ctx_v, Tn * d * f},
        {(void **)&c->proj, L * d * f},       {(void **)&c->hidden, L * (size_t)cfg->ffn_dim * f},
        {(void **)&c->head_out, L * (size_t)cfg->out_dim * P * f},
        {(void **)&c->rope_cos, L * hd / 2 * f}, {(void **)&c->rope_sin, L * hd / 2 * f},
        {&c->small_in, small * cs},           {&c->patches, L * (size_t)cfg->in_dim * P * cs},
        {&c->text_in, Tn * text_w * cs},      {&c->context, Tn * d * cs},
        {&c->norm, L * d * cs},               {&c->qh, L * d * cs},
        {&c->kh, L * d * cs},                 {&c->vh, L * d * cs},
        {&c->ctx_kh, Tn * d * cs},            {&c->ctx_vh, Tn * d * cs},
        {&c->attn, L * d * cs},               {&c->hidden_in, L * (size_t)cfg->ffn_dim * cs},
    };
    const int count = (int)(sizeof list / sizeof list[0]);
    static_assert(sizeof list / sizeof list[0] <= MAX_BUFFERS, "raise MAX_BUFFERS");
    for (int i = 0; i < count; i++) out[i] = list[i];
    return count;
}

static void free_activations(CudaEngine *c) {
    DeviceBuffer bufs[MAX_BUFFERS];
    const int count = activation_buffers(c, 0, bufs);
    for (int i = 0; i < count; i++) {
        if (*bufs[i].p) cudaFree(*bufs[i].p);
        *bufs[i].p = NULL;
    }
    c->prepared = 0;
    c->activation_bytes = 0;
}

static int cuda_prepare(Engine *e, int F, int H, int W, Error *err) {
    CudaEngine *c = impl(e);
    const DitConfig *cfg = &e->model->cfg;
    free_activations(c);
    if (F <= 0 || H <= 0 || W <= 0 || F % cfg->patch_t || H % cfg->patch_h || W % cfg->patch_w)
        return error_set(err, "video grid %dx%dx%d is not a positive multiple of the patch %dx%dx%d", F, H, W,
                         cfg->patch_t, cfg->patch_h, cfg->patch_w);
    const int tf = F / cfg->patch_t, th = H / cfg->patch_h, tw = W / cfg->patch_w;
    const size_t L = (size_t)tf * th * tw;
    if (L > (size_t)INT32_MAX / 64) return error_set(err, "video grid %dx%dx%d has too many tokens (%zu)", F, H, W, L);
    DeviceBuffer bufs[MAX_BUFFERS];
    const int count = activation_buffers(c, L, bufs);
    size_t total = 0;
    for (int i = 0; i < count; i++) total += bufs[i].bytes;
    for (int i = 0; i < count; i++) {
        cudaError_t rc = cudaMalloc(bufs[i].p, bufs[i].bytes ? bufs[i].bytes : 16);
        if (rc != cudaSuccess) {
            cudaGetLastError(); /* clear it, so that it is not reported by the next launch */
            free_activations(c);
            return error_set(err, "CUDA: cannot allocate the activations of a %dx%dx%d grid (%zu tokens, %.1f MiB): %s",
                             F, H, W, L, (double)total / (1 << 20), cudaGetErrorString(rc));
        }
    }
    /* RoPE tables: the CPU's, computed on the host in double once per geometry. */
    const int hd = cfg->dim / cfg->num_heads;
    const size_t table = L * (size_t)(hd / 2);
    float *cs = (float *)malloc((table ? table : 1) * 2 * sizeof(float));
    if (!cs) {
        free_activations(c);
        return error_set(err, "out of memory for RoPE tables of %zu tokens", L);
    }
    rope_tables(cs, cs + table, tf, th, tw, hd, cfg->rope_theta);
    cudaError_t rc = cudaMemcpy(c->rope_cos, cs, table * sizeof(float), cudaMemcpyHostToDevice);
    if (rc == cudaSuccess) rc = cudaMemcpy(c->rope_sin, cs + table, table * sizeof(float), cudaMemcpyHostToDevice);
    free(cs);
    if (rc != cudaSuccess) {
        free_activations(c);
        return error_set(err, "CUDA: uploading RoPE tables: %s", cudaGetErrorString(rc));
    }
    c->prepared = 1;
    c->F = F, c->H = H, c->W = W, c->L = (int)L;
    c->token_frames = tf, c->tokens_per_frame = th * tw;
    c->activation_bytes = total;
    e->L = (int)L;
    return 0;
}

/* ---------------------------------------------------------------------------------------------------------------
 * VecOps on device memory (ctx = the CudaEngine)
 * ------------------------------------------------------------------------------------------------------------- */

static float *vec_alloc(void *ctx, size_t n) {
    (void)ctx;
    float *p = NULL;
    const size_t bytes = (n ? n : 1) * sizeof(float);
    if (cudaMalloc((void **)&p, bytes) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    if (cudaMemset(p, 0, bytes) != cudaSuccess) {
        cudaFree(p);
        cudaGetLastError();
        return NULL;
    }
    return p;
}

static void vec_release(void *ctx, float *p) {
    (void)ctx;
    if (p) cudaFree(p);
}

/* Reduced on the device in double (deterministic order); one scalar comes back. NAN after a failure. */
static double vec_mean(CudaEngine *c, const float *a, const float *b, size_t n) {
    if (n == 0) return 0.0;
    double sum = NAN;
    note(c, cuda_sum_abs(c->red_result, c->red_partials, a, b, n, c->stream), "mean_abs");
    note(c, cudaMemcpy(&sum, c->red_result, sizeof sum, cudaMemcpyDeviceToHost), "mean_abs");
    return c->error[0] ? NAN : sum / (double)n;
}

static double vec_mean_abs(void *ctx, const float *a, size_t n) { return vec_mean((CudaEngine *)ctx, a, NULL, n); }
static double vec_mean_abs_diff(void *ctx, const float *a, const float *b, size_t n) {
    return vec_mean((CudaEngine *)ctx, a, b, n);
}

static void vec_sub(void *ctx, float *out, const float *a, const float *b, size_t n) {
    CudaEngine *c = (CudaEngine *)ctx;
    note(c, cuda_sub(out, a, b, n, c->stream), "sub");
}

static void vec_add(void *ctx, float *out, const float *a, const float *b, size_t n) {
    CudaEngine *c = (CudaEngine *)ctx;
    note(c, cuda_add(out, a, b, n, c->stream), "add");
}

/* After an earlier failure every value counts as non-finite: the runner then records the run as failed. */
static size_t vec_guide(void *ctx, float *out, const float *vc, const float *vu, float g, size_t n) {
    CudaEngine *c = (CudaEngine *)ctx;
    if (c->error[0]) return n;
    unsigned long long bad = 0;
    note(c, cudaMemsetAsync(c->bad, 0, sizeof *c->bad, c->stream), "guide");
    note(c, cuda_guide(out, c->bad, vc, vu, g, n, c->stream), "guide");
    note(c, cudaMemcpy(&bad, c->bad, sizeof bad, cudaMemcpyDeviceToHost), "guide");
    return c->error[0] ? n : (size_t)bad;
}

static void vec_axpby(void *ctx, float *out, float a, const float *x, float b, const float *y, size_t n) {
    CudaEngine *c = (CudaEngine *)ctx;
    note(c, cuda_axpby(out, a, x, b, y, n, c->stream), "axpby");
}

static void vec_copy(void *ctx, float *dst, const float *src, size_t n) {
    CudaEngine *c = (CudaEngine *)ctx;
    if (dst != src && n)
        note(c, cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, c->stream), "copy");
}

/* ---------------------------------------------------------------------------------------------------------------
 * Weights
 * ------------------------------------------------------------------------------------------------------------- */

/* The Linear/Conv weight matrices, which cuBLAS reads in the compute precision. Norm weights are 1-D, modulation
 * tensors are not named ".weight", and token_embedding stays on the host (prompts are encoded there). */
static int is_gemm_matrix(const char *name, int ndim) {
    const size_t len = strlen(name);
    return ndim >= 2 && len > 7 && strcmp(name + len - 7, ".weight") == 0 &&
           strcmp(name, "token_embedding.weight") != 0;
}

typedef struct {
    CudaEngine *c;
    int pass;               /* 0: size the arena; 1: upload and redirect the slots to device addresses */
    size_t total, used;
    size_t stage_floats;    /* largest matrix, for the bf16 staging buffer */
    uint16_t *stage;
    cudaError_t rc;
} Upload;

static size_t align256(size_t n) { return (n + 255) / 256 * 256; }

static int upload_tensor(void *user, const char *name, int ndim, const int64_t *shape, const float **slot) {
    Upload *u = (Upload *)user;
    if (strcmp(name, "token_embedding.weight") == 0) {
        if (u->pass == 1) *slot = NULL;
        return 0;
    }
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    const int matrix = is_gemm_matrix(name, ndim);
    const size_t bytes = n * (matrix ? u->c->csize : sizeof(float));
    if (u->pass == 0) {
        u->total += align256(bytes);
        if (matrix && n > u->stage_floats) u->stage_floats = n;
        return 0;
    }
    char *dst = (char *)u->c->weight_arena + u->used;
    u->used += align256(bytes);
    const void *src = *slot;
    if (matrix && u->c->ctype == CUDA_R_16BF) {
        for (size_t i = 0; i < n; i++) u->stage[i] = bf16_bits((*slot)[i]);
        src = u->stage;
    }
    u->rc = cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice);
    if (u->rc != cudaSuccess) return -1;
    *slot = (const float *)dst;
    return 0;
}

/* Walks the model's tensor table (dit_for_each_tensor) on a shallow copy whose slots are redirected to device
 * addresses, so c->w / c->blocks address the device exactly as the model's weights address the host. */
static int upload_weights(CudaEngine *c, Error *err) {
    const DitModel *m = c->model;
    c->blocks = (DitBlockWeights *)malloc((size_t)(m->cfg.num_layers > 0 ? m->cfg.num_layers : 1) * sizeof *c->blocks);
    if (!c->blocks) return error_set(err, "out of memory");
    memcpy(c->blocks, m->w.blocks, (size_t)m->cfg.num_layers * sizeof *c->blocks);
    DitModel view = *m;
    view.w.blocks = c->blocks;
    Upload u;
    memset(&u, 0, sizeof u);
    u.c = c;
    dit_for_each_tensor(&view, upload_tensor, &u);
    if (c->ctype == CUDA_R_16BF) {
        u.stage = (uint16_t *)malloc((u.stage_floats ? u.stage_floats : 1) * sizeof(uint16_t));
        if (!u.stage) return error_set(err, "out of memory converting weights to bf16");
    }
    cudaError_t rc = cudaMalloc(&c->weight_arena, u.total ? u.total : 256);
    if (rc != cudaSuccess) {
        cudaGetLastError();
        c->weight_arena = NULL;
        free(u.stage);
        return error_set(err, "CUDA: cannot allocate %.1f MiB for the weights of %s: %s", (double)u.total / (1 << 20),
                         m->cfg.name, cudaGetErrorString(rc));
    }
    c->weight_bytes = u.total;
    u.pass = 1;
    const int failed = dit_for_each_tensor(&view, upload_tensor, &u);
    free(u.stage);
    if (failed) return error_set(err, "CUDA: uploading weights: %s", cudaGetErrorString(u.rc));
    c->w = view.w;
    return 0;
}

/* ---------------------------------------------------------------------------------------------------------------
 * Creation and the public functions of engine_cuda.h
 * ------------------------------------------------------------------------------------------------------------- */

static void cuda_destroy(Engine *e) {
    if (!e) return;
    CudaEngine *c = impl(e);
    if (c) {
        free_activations(c);
        svg_scratch_free(&c->svg);
        cudaFree(c->weight_arena); /* cudaFree(NULL) is a no-op */
        cudaFree(c->red_partials);
        cudaFree(c->red_result);
        cudaFree(c->bad);
        if (c->blas) c->cublas.destroy(c->blas);
        free(c->blocks);
        free(c->sinus_host);
        free(c);
    }
    free(e);
}

extern "C" const char *cuda_precision_name(CudaPrecision p) { return p == CUDA_PRECISION_FP32 ? "fp32" : "bf16"; }
extern "C" const char *cuda_attention_name(CudaAttention a) { return a == CUDA_ATTENTION_MMA ? "mma" : "simple"; }

extern "C" int cuda_options_from_env(CudaOptions *opt, Error *err) {
    opt->precision = CUDA_PRECISION_BF16;
    opt->attention = CUDA_ATTENTION_SIMPLE;
    const char *p = getenv("CACHEBENCH_CUDA_PRECISION"), *a = getenv("CACHEBENCH_CUDA_ATTENTION");
    if (p && *p) {
        if (strcmp(p, "bf16") == 0) opt->precision = CUDA_PRECISION_BF16;
        else if (strcmp(p, "fp32") == 0) opt->precision = CUDA_PRECISION_FP32;
        else return error_set(err, "CACHEBENCH_CUDA_PRECISION='%s' is not valid (use bf16 or fp32)", p);
    }
    if (a && *a) {
        if (strcmp(a, "simple") == 0) opt->attention = CUDA_ATTENTION_SIMPLE;
        else if (strcmp(a, "mma") == 0) opt->attention = CUDA_ATTENTION_MMA;
        else return error_set(err, "CACHEBENCH_CUDA_ATTENTION='%s' is not valid (use simple or mma)", a);
    }
    return 0;
}

extern "C" int cuda_device_info(CudaDeviceInfo *info, Error *err) {
    memset(info, 0, sizeof *info);
    int count = 0;
    cudaError_t rc = cudaGetDeviceCount(&count);
    if (rc != cudaSuccess) {
        cudaGetLastError();
        return error_set(err, "no CUDA device available: %s (%s)", cudaGetErrorName(rc), cudaGetErrorString(rc));
    }
    if (count <= 0) return error_set(err, "no CUDA device available: cudaGetDeviceCount found no device");
    cudaDeviceProp prop;
    rc = cudaGetDeviceProperties(&prop, 0);
    if (rc != cudaSuccess) {
        cudaGetLastError();
        return error_set(err, "no CUDA device available: cudaGetDeviceProperties: %s (%s)", cudaGetErrorName(rc),
                         cudaGetErrorString(rc));
    }
    snprintf(info->name, sizeof info->name, "%s", prop.name);
    info->major = prop.major;
    info->minor = prop.minor;
    info->sm_count = prop.multiProcessorCount;
    info->total_bytes = prop.totalGlobalMem;
    return 0;
}

/* The checks shared by the engine and the attention test hook. */
static int check_options(const CudaDeviceInfo *info, const CudaOptions *opt, int head_dim, const char *what,
                         Error *err) {
    if (info->major < 8)
        return error_set(err, "CUDA device %s has compute capability %d.%d; the CUDA engine needs 8.0 or newer",
                         info->name, info->major, info->minor);
    if (!cuda_attention_simple_supports(head_dim))
        return error_set(err, "%s: head_dim %d is not supported by the CUDA attention kernels (a multiple of 4, at "
                              "most 128)", what, head_dim);
    if (opt->attention == CUDA_ATTENTION_MMA) {
        if (opt->precision != CUDA_PRECISION_BF16)
            return error_set(err, "the mma attention kernel runs in bf16 only (use CACHEBENCH_CUDA_ATTENTION=simple "
                                  "with CACHEBENCH_CUDA_PRECISION=fp32)");
        if (!cuda_attention_mma_supports(head_dim))
            return error_set(err, "%s: head_dim %d is not supported by the mma attention kernel (16, 32, 64 or 128)",
                             what, head_dim);
    }
    return 0;
}

extern "C" int engine_create_cuda(Engine **out, const DitModel *model, const CudaOptions *opt_in, Error *err) {
    *out = NULL;
    CudaOptions opt;
    opt.precision = opt_in ? opt_in->precision : CUDA_PRECISION_BF16;
    opt.attention = opt_in ? opt_in->attention : CUDA_ATTENTION_SIMPLE;
    const DitConfig *cfg = &model->cfg;
    if (cfg->num_heads <= 0 || cfg->dim % cfg->num_heads)
        return error_set(err, "model %s: dim %d is not a multiple of num_heads %d", cfg->name, cfg->dim,
                         cfg->num_heads);
    CudaDeviceInfo info;
    if (dit_check_prediction(cfg, err)) return -1;
    if (cuda_device_info(&info, err)) return -1;
    if (check_options(&info, &opt, cfg->dim / cfg->num_heads, cfg->name, err)) return -1;

    Engine *e = (Engine *)calloc(1, sizeof *e);
    CudaEngine *c = (CudaEngine *)calloc(1, sizeof *c);
    if (!e || !c) {
        free(e);
        free(c);
        return error_set(err, "out of memory");
    }
    e->impl = c;
    c->model = model;
    c->opt = opt;
    c->stream = 0;
    c->ctype = opt.precision == CUDA_PRECISION_FP32 ? CUDA_R_32F : CUDA_R_16BF;
    c->csize = opt.precision == CUDA_PRECISION_FP32 ? sizeof(float) : sizeof(bf16);

    if (cublas_load(&c->cublas, err)) {
        cuda_destroy(e);
        return -1;
    }
    cublasStatus_t bs = c->cublas.create(&c->blas);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        c->blas = NULL;
        cuda_destroy(e);
        return error_set(err, "cuBLAS initialisation failed: %s", c->cublas.status_string(bs));
    }
    /* fp32 mode is the checking mode: pedantic math forbids TF32 and other reduced-precision shortcuts (also under
     * NVIDIA_TF32_OVERRIDE). bf16 inputs with FP32 accumulation are the default math. */
    c->cublas.set_stream(c->blas, c->stream);
    c->cublas.set_math_mode(c->blas, opt.precision == CUDA_PRECISION_FP32 ? CUBLAS_PEDANTIC_MATH : CUBLAS_DEFAULT_MATH);

    cudaError_t rc = cudaMalloc((void **)&c->red_partials, CUDA_SUM_PARTIALS * sizeof(double));
    if (rc == cudaSuccess) rc = cudaMalloc((void **)&c->red_result, sizeof(double));
    if (rc == cudaSuccess) rc = cudaMalloc((void **)&c->bad, sizeof(unsigned long long));
    c->sinus_host = (float *)malloc((size_t)(cfg->freq_dim > 0 ? cfg->freq_dim : 1) * sizeof(float));
    if (rc != cudaSuccess || !c->sinus_host) {
        cudaGetLastError();
        cuda_destroy(e);
        return error_set(err, "CUDA: cannot allocate scratch: %s", cudaGetErrorString(rc));
    }
    if (upload_weights(c, err)) {
        cuda_destroy(e);
        return -1;
    }

    c->ops.ctx = c;
    c->ops.alloc = vec_alloc;
    c->ops.release = vec_release;
    c->ops.mean_abs = vec_mean_abs;
    c->ops.mean_abs_diff = vec_mean_abs_diff;
    c->ops.sub = vec_sub;
    c->ops.add = vec_add;
    c->ops.copy = vec_copy;
    c->ops.guide = vec_guide;
    c->ops.axpby = vec_axpby;

    e->backend = "cuda";
    snprintf(e->device, sizeof e->device, "%.80s (cc %d.%d; %s, %s attention)", info.name, info.major, info.minor,
             cuda_precision_name(opt.precision), cuda_attention_name(opt.attention));
    e->ops = &c->ops;
    e->model = model;
    e->prepare = cuda_prepare;
    e->upload = cuda_upload;
    e->download = cuda_download;
    e->embed = cuda_embed;
    e->block = cuda_block;
    e->head = cuda_head;
    e->synchronize = cuda_synchronize;
    e->tokens = cuda_tokens;
    e->time_embedding = cuda_time_embedding;
    e->time_projection = cuda_time_projection;
    e->destroy = cuda_destroy;
    *out = e;
    return 0;
}

static int is_cuda_engine(const Engine *e) { return e && e->backend && strcmp(e->backend, "cuda") == 0 && e->impl; }

extern "C" const char *engine_cuda_error(const Engine *e) {
    if (!is_cuda_engine(e)) return NULL;
    const CudaEngine *c = (const CudaEngine *)e->impl;
    return c->error[0] ? c->error : NULL;
}

extern "C" void engine_cuda_bytes(const Engine *e, size_t *weights, size_t *activations) {
    const CudaEngine *c = is_cuda_engine(e) ? (const CudaEngine *)e->impl : NULL;
    if (weights) *weights = c ? c->weight_bytes : 0;
    if (activations) *activations = c ? c->activation_bytes : 0;
}

extern "C" int cuda_memory_used(size_t *used, size_t *total, Error *err) {
    size_t free_b = 0, total_b = 0;
    cudaError_t rc = cudaMemGetInfo(&free_b, &total_b);
    if (rc != cudaSuccess) {
        cudaGetLastError();
        return error_set(err, "cudaMemGetInfo: %s", cudaGetErrorString(rc));
    }
    if (used) *used = total_b - free_b;
    if (total) *total = total_b;
    return 0;
}

/* Test hooks: host float arrays to the device in the precision of opt (fp32, or bf16 rounded to nearest even), and
 * back. */
static cudaError_t upload_as(void **dev, const float *src, size_t n, int fp32) {
    const size_t es = fp32 ? sizeof(float) : sizeof(bf16);
    cudaError_t rc = cudaMalloc(dev, (n ? n : 1) * es);
    if (rc != cudaSuccess || !src) return rc;
    if (fp32) return cudaMemcpy(*dev, src, n * es, cudaMemcpyHostToDevice);
    uint16_t *h = (uint16_t *)malloc((n ? n : 1) * es);
    if (!h) return cudaErrorMemoryAllocation;
    for (size_t i = 0; i < n; i++) h[i] = bf16_bits(src[i]);
    rc = cudaMemcpy(*dev, h, n * es, cudaMemcpyHostToDevice);
    free(h);
    return rc;
}

static cudaError_t download_as(float *dst, const void *dev, size_t n, int fp32) {
    if (fp32) return cudaMemcpy(dst, dev, n * sizeof(float), cudaMemcpyDeviceToHost);
    uint16_t *h = (uint16_t *)malloc((n ? n : 1) * sizeof(bf16));
    if (!h) return cudaErrorMemoryAllocation;
    cudaError_t rc = cudaMemcpy(h, dev, n * sizeof(bf16), cudaMemcpyDeviceToHost);
    if (rc == cudaSuccess)
        for (size_t i = 0; i < n; i++) dst[i] = bf16_to_float(h[i]);
    free(h);
    return rc;
}

/* q, k, v and out on the device for a test hook; NULL pointers until uploaded. */
typedef struct {
    void *q, *k, *v, *out;
} HookBuffers;

static cudaError_t hook_upload(HookBuffers *b, const float *q, const float *k, const float *v, size_t nq, size_t nk,
                               int fp32) {
    cudaError_t rc = upload_as(&b->q, q, nq, fp32);
    if (rc == cudaSuccess) rc = upload_as(&b->k, k, nk, fp32);
    if (rc == cudaSuccess) rc = upload_as(&b->v, v, nk, fp32);
    if (rc == cudaSuccess) rc = upload_as(&b->out, NULL, nq, fp32);
    return rc;
}

static void hook_free(HookBuffers *b) {
    cudaFree(b->q);
    cudaFree(b->k);
    cudaFree(b->v);
    cudaFree(b->out);
}

extern "C" int cuda_attention_run(float *out, const float *q, const float *k, const float *v, int Lq, int Lk, int heads,
                                  int head_dim, const CudaOptions *opt, Error *err) {
    CudaDeviceInfo info;
    if (cuda_device_info(&info, err) || check_options(&info, opt, head_dim, "attention", err)) return -1;
    if (Lq <= 0 || Lk <= 0 || heads <= 0)
        return error_set(err, "attention: bad shape Lq %d, Lk %d, heads %d", Lq, Lk, heads);
    const int fp32 = opt->precision == CUDA_PRECISION_FP32;
    const size_t nq = (size_t)Lq * heads * head_dim, nk = (size_t)Lk * heads * head_dim;
    HookBuffers b = {NULL, NULL, NULL, NULL};
    cudaError_t rc = hook_upload(&b, q, k, v, nq, nk, fp32);
    if (rc == cudaSuccess) {
        if (fp32)
            rc = cuda_attention_simple<float>((float *)b.out, (const float *)b.q, (const float *)b.k,
                                              (const float *)b.v, Lq, Lk, heads, head_dim, 0);
        else if (opt->attention == CUDA_ATTENTION_MMA)
            rc = cuda_attention_mma((bf16 *)b.out, (const bf16 *)b.q, (const bf16 *)b.k, (const bf16 *)b.v, Lq, Lk,
                                    heads, head_dim, 0);
        else
            rc = cuda_attention_simple<bf16>((bf16 *)b.out, (const bf16 *)b.q, (const bf16 *)b.k, (const bf16 *)b.v,
                                             Lq, Lk, heads, head_dim, 0);
    }
    if (rc == cudaSuccess) rc = cudaDeviceSynchronize();
    if (rc == cudaSuccess) rc = download_as(out, b.out, nq, fp32);
    hook_free(&b);
    if (rc == cudaSuccess) return 0;
    cudaGetLastError();
    return error_set(err, "CUDA attention (%s, %s): %s", cuda_precision_name(opt->precision),
                     cuda_attention_name(opt->attention), cudaGetErrorString(rc));
}

extern "C" int cuda_svg_attention_run(float *out, const float *q, const float *k, const float *v, int heads,
                                      int head_dim, AttentionPlan *plan, const CudaOptions *opt, Error *err) {
    CudaDeviceInfo info;
    if (cuda_device_info(&info, err) || check_options(&info, opt, head_dim, "svg attention", err)) return -1;
    const long L = (long)plan->frames * plan->tokens_per_frame;
    if (plan->frames <= 0 || plan->tokens_per_frame <= 0 || L > INT32_MAX / 2 || heads <= 0 ||
        heads > CUDA_SVG_MAX_HEADS || plan->num_heads != heads || !plan->pattern)
        return error_set(err, "svg attention: bad plan (frames %d, tokens_per_frame %d, heads %d of %d, %s patterns)",
                         plan->frames, plan->tokens_per_frame, plan->num_heads, heads, plan->pattern ? "with" : "no");
    const int fp32 = opt->precision == CUDA_PRECISION_FP32;
    const size_t n = (size_t)L * heads * head_dim;
    HookBuffers b = {NULL, NULL, NULL, NULL};
    SvgScratch scr = {NULL, NULL, 0};
    const char *what = "upload";
    cudaError_t rc = hook_upload(&b, q, k, v, n, n, fp32);
    if (rc == cudaSuccess) {
        if (fp32)
            rc = svg_run<float>(&scr, plan, (float *)b.out, (const float *)b.q, (const float *)b.k, (const float *)b.v,
                                heads, head_dim, 0, &what);
        else
            rc = svg_run<bf16>(&scr, plan, (bf16 *)b.out, (const bf16 *)b.q, (const bf16 *)b.k, (const bf16 *)b.v,
                               heads, head_dim, 0, &what);
    }
    if (rc == cudaSuccess) rc = cudaDeviceSynchronize();
    if (rc == cudaSuccess) rc = download_as(out, b.out, n, fp32);
    hook_free(&b);
    svg_scratch_free(&scr);
    if (rc == cudaSuccess) return 0;
    cudaGetLastError();
    return error_set(err, "CUDA %s (%s): %s", what, cuda_precision_name(opt->precision), cudaGetErrorString(rc));
}

/* The CUDA build's engine_create (models/dit/engine_cpu.c defines it only when CACHEBENCH_CUDA is not defined). */
extern "C" int engine_create(Engine **out, const char *backend, const DitModel *model, Error *err) {
    if (strcmp(backend, "cpu") == 0) return engine_create_cpu(out, model, err);
    if (strcmp(backend, "cuda") == 0) {
        CudaOptions opt;
        if (cuda_options_from_env(&opt, err)) return -1;
        return engine_create_cuda(out, model, &opt, err);
    }
    return error_set(err, "unknown backend '%s' (valid: cpu, cuda)", backend);
}
