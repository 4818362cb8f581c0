/* The CUDA engine against the CPU path (the specification, DESIGN §2): every stage and the whole forward on the tiny
 * config and on a 2-layer model at Wan2.1-1.3B width, the attention kernels alone, VecOps, every solver's update,
 * and the compute/reuse decisions of easycache run through the CUDA engine.
 *
 * Tolerances: max |cuda - cpu| / max |cpu| <= 1e-4 in fp32 mode (fp32 everywhere, only summation order differs) and
 * <= 2e-2 in bf16 mode (weights and GEMM/attention inputs rounded to 8 significant bits, FP32 accumulation).
 *
 * Compiled in every build. Without CUDA in the build, or without a usable device, each test that needs a GPU is
 * skipped with "no CUDA device: <reason>"; the tests of the error path and of option parsing run everywhere. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/runner.h"
#include "harness/solvers/solver.h"
#include "models/dit/dit.h"
#include "models/dit/engine.h"
#include "models/kernels.h"
#include "models/safetensors.h"
#include "models/sparse_attention.h"
#include "strategies/strategy.h"
#include "tests/fixtures.h"
#ifdef CACHEBENCH_CUDA
#include "models/dit/engine_cuda.h"
#endif

#define NO_CUDA_BUILD "this build has no CUDA backend (nvcc was not found at build time, or CUDA=0)"

/* ---------------------------------------------------------------- runs everywhere */

Test(cuda, engine_create_names_the_missing_backend_or_device) {
    DitModel m;
    Error err = {{0}};
    cr_assert_eq(dit_init_random(&m, fixture_small_config(), 1, &err), 0, "%s", err.msg);
    Engine *e = NULL;
    cr_assert_eq(engine_create(&e, "tpu", &m, &err), -1);
    cr_assert_str_eq(err.msg, "unknown backend 'tpu' (valid: cpu, cuda)");
    cr_assert_eq(engine_create(&e, "cpu", &m, &err), 0, "%s", err.msg);
    e->destroy(e);
    e = NULL;
    int rc = engine_create(&e, "cuda", &m, &err);
#ifdef CACHEBENCH_CUDA
    CudaDeviceInfo info;
    Error why = {{0}};
    if (cuda_device_info(&info, &why)) {
        cr_assert_eq(rc, -1);
        cr_assert(strncmp(err.msg, "no CUDA device available: ", 26) == 0, "got: %s", err.msg);
        cr_assert_str_eq(err.msg, why.msg);
    } else if (info.major >= 8) {
        cr_assert_eq(rc, 0, "%s", err.msg);
        cr_assert_str_eq(e->backend, "cuda");
        cr_assert(strstr(e->device, info.name) != NULL, "device '%s' should name '%s'", e->device, info.name);
        e->destroy(e);
    }
#else
    cr_assert_eq(rc, -1);
    cr_assert_str_eq(err.msg, "this build has no CUDA backend (nvcc was not found at build time, or CUDA=0)");
#endif
    dit_free(&m);
}

Test(cuda, options_come_from_the_environment) {
#ifdef CACHEBENCH_CUDA
    CudaOptions o;
    Error err = {{0}};
    unsetenv("CACHEBENCH_CUDA_PRECISION");
    unsetenv("CACHEBENCH_CUDA_ATTENTION");
    cr_assert_eq(cuda_options_from_env(&o, &err), 0, "%s", err.msg);
    cr_assert_eq(o.precision, CUDA_PRECISION_BF16);
    cr_assert_eq(o.attention, CUDA_ATTENTION_SIMPLE);
    setenv("CACHEBENCH_CUDA_PRECISION", "fp32", 1);
    setenv("CACHEBENCH_CUDA_ATTENTION", "mma", 1);
    cr_assert_eq(cuda_options_from_env(&o, &err), 0, "%s", err.msg);
    cr_assert_eq(o.precision, CUDA_PRECISION_FP32);
    cr_assert_eq(o.attention, CUDA_ATTENTION_MMA);
    setenv("CACHEBENCH_CUDA_PRECISION", "fp16", 1);
    cr_assert_eq(cuda_options_from_env(&o, &err), -1);
    cr_assert_str_eq(err.msg, "CACHEBENCH_CUDA_PRECISION='fp16' is not valid (use bf16 or fp32)");
    setenv("CACHEBENCH_CUDA_PRECISION", "bf16", 1);
    setenv("CACHEBENCH_CUDA_ATTENTION", "flash", 1);
    cr_assert_eq(cuda_options_from_env(&o, &err), -1);
    cr_assert_str_eq(err.msg, "CACHEBENCH_CUDA_ATTENTION='flash' is not valid (use simple or mma)");
#else
    cr_skip_test("no CUDA device: " NO_CUDA_BUILD);
#endif
}

#ifdef CACHEBENCH_CUDA

/* ---------------------------------------------------------------- helpers (CUDA builds) */

static const CudaOptions FP32 = {CUDA_PRECISION_FP32, CUDA_ATTENTION_SIMPLE};
static const CudaOptions BF16 = {CUDA_PRECISION_BF16, CUDA_ATTENTION_SIMPLE};
static const CudaOptions BF16_MMA = {CUDA_PRECISION_BF16, CUDA_ATTENTION_MMA};

static double tolerance(const CudaOptions *o) { return o->precision == CUDA_PRECISION_FP32 ? 1e-4 : 2e-2; }

static const char *label(const CudaOptions *o) {
    return o->precision == CUDA_PRECISION_FP32 ? "fp32" : o->attention == CUDA_ATTENTION_MMA ? "bf16+mma" : "bf16";
}

/* max |got - ref| / max |ref|; NaN anywhere in got counts as infinite error. */
static double rel_error(const float *got, const float *ref, size_t n) {
    double err = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)ref[i]);
        if (isnan(d)) return INFINITY;
        err = fmax(err, d);
        scale = fmax(scale, fabs((double)ref[i]));
    }
    return scale > 0 ? err / scale : err;
}

static Engine *cuda_engine(const DitModel *m, const CudaOptions *o) {
    Engine *e = NULL;
    Error err = {{0}};
    cr_assert_eq(engine_create_cuda(&e, m, o, &err), 0, "%s", err.msg);
    return e;
}

/* Downloads n floats of engine memory into a fresh host array. */
static float *fetch(Engine *e, const float *dev, size_t n) {
    float *h = malloc(n * sizeof(float));
    cr_assert_not_null(h);
    e->download(e, h, dev, n);
    return h;
}

static void expect_close(Engine *e, const float *dev, const float *ref, size_t n, double tol, const char *what,
                         const char *mode) {
    float *got = fetch(e, dev, n);
    double r = rel_error(got, ref, n);
    free(got);
    cr_assert(r <= tol, "%s [%s]: relative error %.3g > %.1g (engine error: %s)", what, mode, r, tol,
              engine_cuda_error(e) ? engine_cuda_error(e) : "none");
}

/* Every stage of the CUDA engine on the same weights and inputs as the CPU: embed (tokens, e, e0), each block given the
 * CPU's input tokens (so that errors do not compound and a wrong block is named), the head given the CPU's final
 * tokens, then the whole forward from scratch. */
static void check_stages(const DitConfig *cfg, int F, int H, int W, const CudaOptions *o) {
    const double tol = tolerance(o);
    const char *mode = label(o);
    DitModel m;
    DitState s;
    Error err = {{0}};
    cr_assert_eq(dit_init_random(&m, cfg, 11, &err), 0, "%s", err.msg);
    cr_assert_eq(dit_state_init(&s, cfg, F, H, W, &err), 0, "%s", err.msg);
    Engine *e = cuda_engine(&m, o);
    cr_assert_eq(e->prepare(e, F, H, W, &err), 0, "%s", err.msg);
    cr_assert_eq(e->L, s.L);
    const VecOps *ops = e->ops;
    const size_t n = (size_t)cfg->in_dim * F * H * W, tn = (size_t)cfg->text_len * cfg->text_dim;
    const size_t nt = (size_t)s.L * cfg->dim, d = (size_t)cfg->dim;
    float *x = malloc(n * sizeof(float)), *text = calloc(tn, sizeof(float)), *out = malloc(n * sizeof(float));
    float *pre = malloc(nt * sizeof(float));
    cr_assert(x && text && out && pre);
    fixture_random(x, n, 1);
    fixture_random(text, 2 * (size_t)cfg->text_dim, 2); /* two "words", then zero padding, like an encoded prompt */
    float *dx = ops->alloc(ops->ctx, n), *dtext = ops->alloc(ops->ctx, tn), *dout = ops->alloc(ops->ctx, n);
    cr_assert(dx && dtext && dout);
    e->upload(e, dx, x, n);
    e->upload(e, dtext, text, tn);
    const float t = 437.5f;

    dit_embed(&m, &s, x, t, text);
    e->embed(e, dx, t, dtext);
    expect_close(e, e->tokens(e), s.tokens, nt, tol, "embed tokens", mode);
    expect_close(e, e->time_embedding(e), s.e, d, tol, "embed e", mode);
    expect_close(e, e->time_projection(e), s.e0, 6 * d, tol, "embed e0", mode);

    for (int i = 0; i < cfg->num_layers; i++) {
        memcpy(pre, s.tokens, nt * sizeof(float));
        dit_block(&m, &s, i, NULL, NULL);
        e->upload(e, e->tokens(e), pre, nt);
        AttentionPlan plan = {.num_heads = cfg->num_heads};
        e->block(e, i, &plan, NULL);
        char what[64];
        snprintf(what, sizeof what, "block %d", i);
        expect_close(e, e->tokens(e), s.tokens, nt, tol, what, mode);
        cr_assert_float_eq(plan.flops_done, dit_flops_self_attention(cfg, s.L), 1.0);
        cr_assert_float_eq(plan.flops_dense, plan.flops_done, 1.0);
    }

    /* Module plans (interface v2): outputs copied out match the CPU's, and supplying the CPU's outputs on both
     * engines gives the same tokens. */
    {
        float *hy[MODULE_COUNT], *dy[MODULE_COUNT];
        for (int k = 0; k < MODULE_COUNT; k++) {
            hy[k] = malloc(nt * sizeof(float)), dy[k] = ops->alloc(ops->ctx, nt);
            cr_assert(hy[k] && dy[k]);
        }
        memcpy(pre, s.tokens, nt * sizeof(float));
        ModulePlan hc = {{MODULE_COMPUTE, MODULE_COMPUTE, MODULE_COMPUTE}, {hy[0], hy[1], hy[2]}};
        ModulePlan dc = {{MODULE_COMPUTE, MODULE_COMPUTE, MODULE_COMPUTE}, {dy[0], dy[1], dy[2]}};
        dit_block(&m, &s, 0, NULL, &hc);
        e->upload(e, e->tokens(e), pre, nt);
        e->block(e, 0, NULL, &dc);
        for (int k = 0; k < MODULE_COUNT; k++) {
            char what[64];
            snprintf(what, sizeof what, "module %d output copied out", k);
            expect_close(e, dy[k], hy[k], nt, tol, what, mode);
            e->upload(e, dy[k], hy[k], nt);
        }
        ModulePlan hs = {{MODULE_SUPPLY, MODULE_COMPUTE, MODULE_SUPPLY}, {hy[0], NULL, hy[2]}};
        ModulePlan ds = {{MODULE_SUPPLY, MODULE_COMPUTE, MODULE_SUPPLY}, {dy[0], NULL, dy[2]}};
        memcpy(s.tokens, pre, nt * sizeof(float));
        dit_block(&m, &s, 0, NULL, &hs);
        e->upload(e, e->tokens(e), pre, nt);
        e->block(e, 0, NULL, &ds);
        expect_close(e, e->tokens(e), s.tokens, nt, tol, "block with supplied modules", mode);
        for (int k = 0; k < MODULE_COUNT; k++) free(hy[k]), ops->release(ops->ctx, dy[k]);
    }

    e->upload(e, e->tokens(e), s.tokens, nt);
    dit_head(&m, &s, out);
    e->head(e, dout);
    expect_close(e, dout, out, n, tol, "head", mode);

    /* The whole forward, errors compounding through every layer as in a real run. */
    dit_forward(&m, &s, x, t, text, out);
    e->embed(e, dx, t, dtext);
    for (int i = 0; i < cfg->num_layers; i++) e->block(e, i, NULL, NULL);
    e->head(e, dout);
    e->synchronize(e);
    expect_close(e, dout, out, n, tol, "whole forward", mode);
    cr_assert_null(engine_cuda_error(e), "%s", engine_cuda_error(e));

    ops->release(ops->ctx, dx), ops->release(ops->ctx, dtext), ops->release(ops->ctx, dout);
    free(x), free(text), free(out), free(pre);
    e->destroy(e);
    dit_state_free(&s);
    dit_free(&m);
}

/* Wan2.1-1.3B width (dim 1536, 12 heads of 128, ffn 8960, text 512 x 4096) with 2 layers, on a 3x10x14 latent:
 * 105 tokens, so that attention has a partial query tile and a partial key tile. */
static DitConfig wan_width_two_layers(void) {
    DitConfig c = *dit_config_by_name("wan2.1-t2v-1.3b");
    c.num_layers = 2;
    return c;
}

#endif /* CACHEBENCH_CUDA */

/* ---------------------------------------------------------------- stages and forward (need a device) */

Test(cuda, tiny_stages_match_cpu_fp32, .timeout = 120) {
    fixture_require_cuda_device();
#ifdef CACHEBENCH_CUDA
    const DitConfig *cfg = dit_config_by_name("tiny");
    check_stages(cfg, cfg->frames, cfg->height, cfg->width, &FP32);
#endif
}

Test(cuda, tiny_stages_match_cpu_bf16, .timeout = 120) {
    fixture_require_cuda_device();
#ifdef CACHEBENCH_CUDA
    const DitConfig *cfg = dit_config_by_name("tiny");
    check_stages(cfg, cfg->frames, cfg->height, cfg->width, &BF16);
    check_stages(cfg, cfg->frames, cfg->height, cfg->width, &BF16_MMA);
#endif
}

Test(cuda, small_config_odd_grid_matches_cpu, .timeout = 60) {
    fixture_require_cuda_device();
#ifdef CACHEBENCH_CUDA
    /* head_dim 16, temporal patch 2 and a non-square grid: every axis of patchify/unpatchify and RoPE. */
    DitConfig cfg = *fixture_small_config();
    cfg.patch_t = 2;
    check_stages(&cfg, 4, 6, 2, &FP32);
    check_stages(&cfg, 4, 6, 2, &BF16);
    check_stages(&cfg, 4, 6, 2, &BF16_MMA);
#endif
}

Test(cuda, wan13b_width_two_layers_match_cpu_fp32, .timeout = 300) {
    fixture_require_cuda_device();
#ifdef CACHEBENCH_CUDA
    DitConfig cfg = wan_width_two_layers();
    check_stages(&cfg, 3, 10, 14, &FP32);
#endif
}

Test(cuda, wan13b_width_two_layers_match_cpu_bf16, .timeout = 300) {
    fixture_require_cuda_device();
#ifdef CACHEBENCH_CUDA
    DitConfig cfg = wan_width_two_layers();
    check_stages(&cfg, 3, 10, 14, &BF16);
    check_stages(&cfg, 3, 10, 14, &BF16_MMA);
#endif
}

/* ---------------------------------------------------------------- attention kernels alone */

Test(cuda, attention_kernels_match_cpu, .timeout = 120) {
    fixture_require_cuda_device();
#ifdef CACHEBENCH_CUDA
    /* Partial query and key tiles, many key tiles (the online softmax rescales), head_dim of every model we run. q is
     * scaled up so that the softmax is peaked and a wrong running max would show. */
    const struct { int hd, heads, Lq, Lk; } shapes[] = {
        {16, 2, 70, 45}, {32, 4, 130, 300}, {128, 3, 200, 1000}, {128, 2, 64, 16}, {64, 2, 1, 77},
    };
    const CudaOptions *opts[] = {&FP32, &BF16, &BF16_MMA};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int hd = shapes[i].hd, heads = shapes[i].heads, Lq = shapes[i].Lq, Lk = shapes[i].Lk;
        const size_t nq = (size_t)Lq * heads * hd, nk = (size_t)Lk * heads * hd;
        float *q = malloc(nq * sizeof(float)), *k = malloc(nk * sizeof(float)), *v = malloc(nk * sizeof(float));
        float *ref = malloc(nq * sizeof(float)), *got = malloc(nq * sizeof(float));
        float *scratch = malloc((attention_scratch_floats(Lq, Lk, heads) + 1) * sizeof(float));
        cr_assert(q && k && v && ref && got && scratch);
        fixture_random(q, nq, 10 + i);
        fixture_random(k, nk, 20 + i);
        fixture_random(v, nk, 30 + i);
        for (size_t j = 0; j < nq; j++) q[j] *= 4.0f;
        attention(ref, q, k, v, Lq, Lk, heads, hd, scratch);
        for (size_t j = 0; j < sizeof opts / sizeof opts[0]; j++) {
            Error err = {{0}};
            cr_assert_eq(cuda_attention_run(got, q, k, v, Lq, Lk, heads, hd, opts[j], &err), 0, "%s", err.msg);
            double r = rel_error(got, ref, nq), tol = opts[j]->precision == CUDA_PRECISION_FP32 ? 1e-5 : 2e-2;
            cr_assert(r <= tol, "attention %s hd %d heads %d Lq %d Lk %d: relative error %.3g > %.1g", label(opts[j]),
                      hd, heads, Lq, Lk, r, tol);
        }
        free(q), free(k), free(v), free(ref), free(got), free(scratch);
    }
#endif
}

/* ---------------------------------------------------------------- Sparse VideoGen on the GPU */

/* The CUDA Sparse VideoGen kernel against the CPU's svg_attention (the specification) on the same plan: one spatial,
 * one temporal and one dense head; partial query tiles; official 128x128 blocks and the exact variant's tiles; bands
 * from the sparsity, given, and dense (sparsity 0); sink ranges that end inside a block (P = 50). Both
 * run the key sets of svg_tile_keys, so band, FLOPs and densities must be equal, not just close. fp32: 1e-4 (only the
 * summation order and the CPU's vectorised exp differ); bf16: 2e-2 (q, k, v rounded to 8 significant bits). */
Test(cuda, svg_attention_matches_cpu, .timeout = 120) {
    fixture_require_cuda_device();
#ifdef CACHEBENCH_CUDA
    const struct { int F, P, hd, band; double sparsity; int block; } shapes[] = {
        {4, 16, 16, 0, 0.5, 0},          {5, 30, 32, 0, 0.75, 0},   {8, 64, 128, 0, 0.75, 0}, {3, 21, 64, 7, 0.0, 0},
        {6, 13, 32, 0, 0.0, 0},          {8, 64, 64, 0, 0.75, SVG_BLOCK}, {10, 40, 32, 9, 0.0, SVG_BLOCK},
        {7, 50, 16, 3, 0.0, SVG_BLOCK},  {21, 60, 64, 0, 0.9, SVG_BLOCK},
    };
    const CudaOptions *opts[] = {&FP32, &BF16};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int F = shapes[i].F, P = shapes[i].P, hd = shapes[i].hd, heads = 3, L = F * P;
        const size_t n = (size_t)L * heads * hd, scratch_floats = svg_thread_floats(L, hd) * 2;
        float *q = malloc(n * sizeof(float)), *k = malloc(n * sizeof(float)), *v = malloc(n * sizeof(float));
        float *ref = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float)), *kp = malloc(n * sizeof(float));
        float *vp = malloc(n * sizeof(float)), *scratch = malloc(scratch_floats * sizeof(float));
        cr_assert(q && k && v && ref && got && kp && vp && scratch);
        fixture_random(q, n, 40 + i), fixture_random(k, n, 50 + i), fixture_random(v, n, 60 + i);
        for (size_t j = 0; j < n; j++) q[j] *= 3.0f; /* a peaked softmax: a wrongly masked key shows */
        AttnPattern pc[3] = {ATTN_SPATIAL, ATTN_TEMPORAL, ATTN_DENSE};
        float dc[3];
        AttentionPlan cpu = {.num_heads = heads, .pattern = pc, .band_tokens = shapes[i].band,
                             .sparsity = shapes[i].sparsity, .block = shapes[i].block, .frames = F,
                             .tokens_per_frame = P, .density = dc};
        cr_assert_eq(svg_attention(ref, q, k, v, heads, hd, &cpu, kp, vp, scratch, scratch_floats), 0);
        for (size_t j = 0; j < sizeof opts / sizeof opts[0]; j++) {
            AttnPattern pg[3] = {ATTN_SPATIAL, ATTN_TEMPORAL, ATTN_DENSE};
            float dg[3];
            AttentionPlan gpu = {.num_heads = heads, .pattern = pg, .band_tokens = shapes[i].band,
                                 .sparsity = shapes[i].sparsity, .block = shapes[i].block, .frames = F,
                                 .tokens_per_frame = P, .density = dg};
            Error err = {{0}};
            cr_assert_eq(cuda_svg_attention_run(got, q, k, v, heads, hd, &gpu, opts[j], &err), 0, "%s", err.msg);
            const double r = rel_error(got, ref, n), tol = tolerance(opts[j]);
            cr_assert(r <= tol, "svg %s F %d P %d hd %d: relative error %.3g > %.1g", label(opts[j]), F, P, hd, r, tol);
            cr_assert_eq(gpu.band_tokens, cpu.band_tokens);
            cr_assert_eq(gpu.sink_tokens, P);
            cr_assert_eq(gpu.flops_done, cpu.flops_done);
            cr_assert_eq(gpu.flops_dense, cpu.flops_dense);
            for (int h = 0; h < heads; h++) cr_assert_eq(dg[h], dc[h]);
        }
        free(q), free(k), free(v), free(ref), free(got), free(kp), free(vp), free(scratch);
    }
#endif
}

/* Profiling on the GPU: on heads built so that one pattern is exact (fixture_decaying_head) it picks that pattern in
 * both precisions, and the sparse output then equals dense attention on the inputs the GPU computed with (in bf16: q, k
 * and v rounded to bf16 — that fixture's logits are differences of terms up to ~550, so the rounding alone moves the
 * output by 0.197 of its maximum, measured on the CPU; the first H200 run failed the comparison with fp32 inputs at
 * 0.198); on random inputs it picks what the CPU picks wherever the CPU's two MSEs differ by more than 1e-3 relative
 * (closer calls may flip with the summation order). */
Test(cuda, svg_profile_classifies_like_cpu, .timeout = 120) {
    fixture_require_cuda_device();
#ifdef CACHEBENCH_CUDA
    {
        const int F = 4, P = 64, L = F * P, heads = 2, hd = 8, rows = 32;
        const size_t n = (size_t)L * heads * hd;
        const SvgShape g = {.frames = F, .tokens_per_frame = P, .band = 20, .block = SVG_BLOCK};
        float *q = malloc(n * sizeof(float)), *k = malloc(n * sizeof(float)), *v = malloc(n * sizeof(float));
        float *got = malloc(n * sizeof(float)), *dense = malloc(n * sizeof(float));
        float *scratch = malloc(attention_scratch_floats(L, L, heads) * sizeof(float));
        float *qr = malloc(n * sizeof(float)), *kr = malloc(n * sizeof(float)), *vr = malloc(n * sizeof(float));
        cr_assert(q && k && v && got && dense && scratch && qr && kr && vr);
        fixture_random(v, n, 77);
        fixture_decaying_head(q, k, &g, ATTN_SPATIAL, heads, hd, 0);
        fixture_decaying_head(q, k, &g, ATTN_TEMPORAL, heads, hd, 1);
        const CudaOptions *opts[] = {&FP32, &BF16};
        for (size_t j = 0; j < 2; j++) {
            const int bf16 = opts[j]->precision != CUDA_PRECISION_FP32;
            for (size_t i = 0; i < n; i++) {
                qr[i] = bf16 ? st_bf16_to_f32(st_f32_to_bf16(q[i])) : q[i];
                kr[i] = bf16 ? st_bf16_to_f32(st_f32_to_bf16(k[i])) : k[i];
                vr[i] = bf16 ? st_bf16_to_f32(st_f32_to_bf16(v[i])) : v[i];
            }
            attention(dense, qr, kr, vr, L, L, heads, hd, scratch);
            AttnPattern pg[2] = {ATTN_SPATIAL, ATTN_SPATIAL}; /* placeholders: profiling decides */
            AttentionPlan plan = {.num_heads = heads, .pattern = pg, .band_tokens = 20, .block = SVG_BLOCK, .frames = F,
                                  .tokens_per_frame = P, .profile_rows = rows, .profile_seed = 7};
            Error err = {{0}};
            cr_assert_eq(cuda_svg_attention_run(got, q, k, v, heads, hd, &plan, opts[j], &err), 0, "%s", err.msg);
            cr_assert_eq(pg[0], ATTN_SPATIAL, "%s: head 0 classified %d", label(opts[j]), pg[0]);
            cr_assert_eq(pg[1], ATTN_TEMPORAL, "%s: head 1 classified %d", label(opts[j]), pg[1]);
            const double r = rel_error(got, dense, n), tol = tolerance(opts[j]);
            cr_assert(r <= tol, "%s: sparse vs dense relative error %.3g > %.1g", label(opts[j]), r, tol);
        }
        free(q), free(k), free(v), free(got), free(dense), free(scratch), free(qr), free(kr), free(vr);
    }
    {
        const int F = 6, P = 70, L = F * P, heads = 6, hd = 64, rows = 64;
        const size_t n = (size_t)L * heads * hd, scratch_floats = svg_thread_floats(L, hd);
        const SvgShape g = {.frames = F, .tokens_per_frame = P, .band = svg_band_for_sparsity(L, P, 0.75, SVG_BLOCK),
                            .block = SVG_BLOCK};
        float *q = malloc(n * sizeof(float)), *k = malloc(n * sizeof(float)), *v = malloc(n * sizeof(float));
        float *got = malloc(n * sizeof(float)), *scratch = malloc(scratch_floats * sizeof(float));
        cr_assert(q && k && v && got && scratch);
        fixture_random(q, n, 81), fixture_random(k, n, 82), fixture_random(v, n, 83);
        for (size_t j = 0; j < n; j++) q[j] *= 3.0f;
        AttnPattern pg[6] = {ATTN_SPATIAL, ATTN_SPATIAL, ATTN_SPATIAL, ATTN_SPATIAL, ATTN_SPATIAL, ATTN_DENSE};
        AttentionPlan plan = {.num_heads = heads, .pattern = pg, .band_tokens = g.band, .block = SVG_BLOCK, .frames = F,
                              .tokens_per_frame = P, .profile_rows = rows, .profile_seed = 11};
        Error err = {{0}};
        cr_assert_eq(cuda_svg_attention_run(got, q, k, v, heads, hd, &plan, &FP32, &err), 0, "%s", err.msg);
        cr_assert_eq(pg[5], ATTN_DENSE, "a dense head is not profiled");
        int compared = 0;
        double expect_flops = 5 * 8.0 * hd * rows * L + svg_pattern_flops(&g, ATTN_DENSE, hd);
        for (int h = 0; h < 5; h++) {
            double mse[2];
            svg_profile_head(q, k, v, &g, heads, hd, h, rows, 11, scratch, mse);
            expect_flops += svg_pattern_flops(&g, pg[h], hd);
            if (fabs(mse[0] - mse[1]) <= 1e-3 * fmax(mse[0], mse[1])) continue;
            compared++;
            cr_assert_eq(pg[h], mse[1] < mse[0] ? ATTN_TEMPORAL : ATTN_SPATIAL, "head %d: mse spatial %g temporal %g",
                         h, mse[0], mse[1]);
        }
        cr_assert(compared >= 3, "only %d heads had a clear winner", compared);
        cr_assert_eq(plan.flops_done, expect_flops);
        free(q), free(k), free(v), free(got), free(scratch);
    }
#endif
}

/* ---------------------------------------------------------------- VecOps and the sampler update */

Test(cuda, vec_ops_match_cpu) {
    fixture_require_cuda_device();
#ifdef CACHEBENCH_CUDA
    DitModel m;
    Error err = {{0}};
    cr_assert_eq(dit_init_random(&m, fixture_small_config(), 1, &err), 0, "%s", err.msg);
    Engine *e = cuda_engine(&m, &FP32);
    const VecOps *g = e->ops, *c = cpu_vec_ops();
    const size_t n = 1000003; /* not a multiple of any block or grid size */
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float)), *want = malloc(n * sizeof(float));
    fixture_random(a, n, 1);
    fixture_random(b, n, 2);
    float *da = g->alloc(g->ctx, n), *db = g->alloc(g->ctx, n), *dz = g->alloc(g->ctx, n);
    cr_assert(da && db && dz);
    float *zeros = fetch(e, dz, n);
    for (size_t i = 0; i < n; i++) cr_assert_eq(zeros[i], 0.0f, "alloc must zero-fill (index %zu)", i);
    free(zeros);
    e->upload(e, da, a, n);
    e->upload(e, db, b, n);
    /* Both accumulate in double: only the summation order differs. */
    double cm = c->mean_abs(c->ctx, a, n), gm = g->mean_abs(g->ctx, da, n);
    double cd = c->mean_abs_diff(c->ctx, a, b, n), gd = g->mean_abs_diff(g->ctx, da, db, n);
    cr_assert(fabs(gm - cm) <= 1e-12 * cm, "mean_abs: cuda %.17g cpu %.17g", gm, cm);
    cr_assert(fabs(gd - cd) <= 1e-12 * cd, "mean_abs_diff: cuda %.17g cpu %.17g", gd, cd);
    cr_assert_eq(g->mean_abs(g->ctx, da, 0), 0.0);
    /* Element-wise ops are exactly rounded single operations: bit-identical. In place (out == a) as well. */
    c->sub(c->ctx, want, a, b, n);
    g->sub(g->ctx, dz, da, db, n);
    float *got = fetch(e, dz, n);
    cr_assert_eq(memcmp(got, want, n * sizeof(float)), 0, "sub");
    free(got);
    c->add(c->ctx, want, a, b, n);
    g->copy(g->ctx, dz, da, n);
    g->add(g->ctx, dz, dz, db, n);
    got = fetch(e, dz, n);
    cr_assert_eq(memcmp(got, want, n * sizeof(float)), 0, "copy + in-place add");
    free(got);
    cr_assert_null(engine_cuda_error(e), "%s", engine_cuda_error(e));
    g->release(g->ctx, da), g->release(g->ctx, db), g->release(g->ctx, dz);
    free(a), free(b), free(want);
    e->destroy(e);
    dit_free(&m);
#endif
}

Test(cuda, guide_and_axpby_match_cpu_and_count_non_finite) {
    fixture_require_cuda_device();
#ifdef CACHEBENCH_CUDA
    DitModel m;
    Error err = {{0}};
    cr_assert_eq(dit_init_random(&m, fixture_small_config(), 1, &err), 0, "%s", err.msg);
    Engine *e = cuda_engine(&m, &FP32), *cpu;
    cr_assert_eq(engine_create_cpu(&cpu, &m, &err), 0, "%s", err.msg);
    const VecOps *g = e->ops, *h = cpu->ops;
    const size_t n = 300007;
    float *x = malloc(n * sizeof(float)), *vc = malloc(n * sizeof(float)), *vu = malloc(n * sizeof(float));
    float *v = malloc(n * sizeof(float));
    fixture_random(x, n, 1);
    fixture_random(vc, n, 2);
    fixture_random(vu, n, 3);
    float *dx = g->alloc(g->ctx, n), *dvc = g->alloc(g->ctx, n), *dvu = g->alloc(g->ctx, n), *dv = g->alloc(g->ctx, n);
    e->upload(e, dx, x, n), e->upload(e, dvc, vc, n), e->upload(e, dvu, vu, n);
    const float guidance = 5.0f, dt = -0.0625f;
    /* With CFG, then without (v_uncond NULL); each followed by the solvers' update x = 1 x + dt v. */
    cr_assert_eq(h->guide(h->ctx, v, vc, vu, guidance, n), 0);
    cr_assert_eq(g->guide(g->ctx, dv, dvc, dvu, guidance, n), 0);
    h->axpby(h->ctx, x, 1.0f, x, dt, v, n);
    g->axpby(g->ctx, dx, 1.0f, dx, dt, dv, n);
    cr_assert_eq(h->guide(h->ctx, v, vc, NULL, guidance, n), 0);
    cr_assert_eq(g->guide(g->ctx, dv, dvc, NULL, guidance, n), 0);
    h->axpby(h->ctx, x, 0.75f, x, dt, v, n);
    g->axpby(g->ctx, dx, 0.75f, dx, dt, dv, n);
    float *got = fetch(e, dx, n);
    /* Every operation is rounded on its own on both sides; allow one ulp in case the host compiler contracted. */
    cr_assert(rel_error(got, x, n) <= 1e-6, "guide + axpby: relative error %.3g", rel_error(got, x, n));
    free(got);
    /* Non-finite guided velocity: counted on both. */
    vc[5] = NAN, vc[n - 1] = INFINITY, vu[77] = -INFINITY;
    e->upload(e, dvc, vc, n), e->upload(e, dvu, vu, n);
    cr_assert_eq(h->guide(h->ctx, v, vc, vu, guidance, n), 3);
    cr_assert_eq(g->guide(g->ctx, dv, dvc, dvu, guidance, n), 3);
    cr_assert_null(engine_cuda_error(e), "%s", engine_cuda_error(e));
    g->release(g->ctx, dx), g->release(g->ctx, dvc), g->release(g->ctx, dvu), g->release(g->ctx, dv);
    free(x), free(vc), free(vu), free(v);
    cpu->destroy(cpu);
    e->destroy(e);
    dit_free(&m);
#endif
}

/* Every solver through the CUDA VecOps against the CPU ones: the same inputs (random starting x, a random velocity
 * per step), steps 0..5 of a 6-step grid (UniPC's and DPM++'s every order rule). */
Test(cuda, solvers_match_cpu) {
    fixture_require_cuda_device();
#ifdef CACHEBENCH_CUDA
    DitModel m;
    Error err = {{0}};
    cr_assert_eq(dit_init_random(&m, fixture_small_config(), 1, &err), 0, "%s", err.msg);
    Engine *e = cuda_engine(&m, &FP32);
    const VecOps *g = e->ops, *h = cpu_vec_ops();
    enum { STEPS = 6 };
    const size_t n = 100003;
    float *x = malloc(n * sizeof(float)), *v = malloc(n * sizeof(float)), sigmas[STEPS + 1], timesteps[STEPS];
    float *dx = g->alloc(g->ctx, n), *dv = g->alloc(g->ctx, n);
    cr_assert(x && v && dx && dv);
    for (int k = 0; k < solver_count(); k++) {
        const SolverKind *kind = solver_at(k);
        kind->schedule(STEPS, 5.0f, sigmas, timesteps);
        Solver *sh = kind->create(h, n, sigmas, STEPS, &err), *sg = kind->create(g, n, sigmas, STEPS, &err);
        cr_assert(sh && sg, "%s: %s", kind->name, err.msg);
        fixture_random(x, n, 31);
        e->upload(e, dx, x, n);
        for (int i = 0; i < STEPS; i++) {
            fixture_random(v, n, 100 + (uint64_t)i);
            e->upload(e, dv, v, n);
            kind->step(sh, i, x, v);
            kind->step(sg, i, dx, dv);
        }
        float *got = fetch(e, dx, n);
        /* Each operation is rounded on its own on both sides; one ulp here and there if the host compiler
         * contracted. */
        cr_expect(rel_error(got, x, n) <= 1e-6, "%s: relative error %.3g", kind->name, rel_error(got, x, n));
        free(got);
        kind->destroy(sh);
        kind->destroy(sg);
    }
    cr_assert_null(engine_cuda_error(e), "%s", engine_cuda_error(e));
    g->release(g->ctx, dx), g->release(g->ctx, dv);
    free(x), free(v);
    e->destroy(e);
    dit_free(&m);
#endif
}

/* ---------------------------------------------------------------- a strategy through the CUDA engine */

#ifdef CACHEBENCH_CUDA
/* One trajectory of the tiny model (random weights) under strategy spec through engine e; fills rec. */
static void strategy_run(Engine *e, const char *spec, int steps, RunRecord *rec) {
    const DitConfig *cfg = &e->model->cfg;
    const int F = cfg->frames, H = cfg->height, W = cfg->width;
    const size_t tn = (size_t)cfg->text_len * cfg->text_dim, n = (size_t)cfg->in_dim * F * H * W;
    float *text = calloc(tn, sizeof(float)), *zeros = calloc(tn, sizeof(float));
    fixture_random(text, 3 * (size_t)cfg->text_dim, 5);
    Error err = {{0}};
    cr_assert_eq(e->prepare(e, F, H, W, &err), 0, "%s", err.msg);
    StrategyEnv env = fixture_strategy_env(e, steps, n);
    Strategy s;
    cr_assert_eq(strategy_create(&s, spec, &env, &err), 0, "%s: %s", spec, err.msg);
    RunSettings rs = {.steps = steps, .shift = cfg->default_shift, .guidance = cfg->default_guidance, .seed = 7,
                      .F = F, .H = H, .W = W, .text = {text, zeros}};
    memset(rec, 0, sizeof *rec);
    cr_assert_eq(runner_sample(e, &s, &rs, rec, NULL, &err), 0, "%s", err.msg);
    strategy_destroy(&s);
    free(text);
    free(zeros);
}

/* One strategy trajectory of the tiny model (random weights of `seed`) on the CPU (a) and on the CUDA engine in fp32
 * (b); both must complete. both_free releases everything and checks that the CUDA engine reported no error. */
typedef struct {
    DitModel m;
    Engine *cpu, *gpu;
    RunRecord a, b;
} BothRuns;

static void both_run(BothRuns *r, const char *spec, int steps, uint64_t seed) {
    Error err = {{0}};
    cr_assert_eq(dit_init_random(&r->m, dit_config_by_name("tiny"), seed, &err), 0, "%s", err.msg);
    r->gpu = cuda_engine(&r->m, &FP32);
    cr_assert_eq(engine_create_cpu(&r->cpu, &r->m, &err), 0, "%s", err.msg);
    strategy_run(r->cpu, spec, steps, &r->a);
    strategy_run(r->gpu, spec, steps, &r->b);
    cr_assert(!r->a.failed && !r->b.failed, "%s: cpu failed: %d (%s), cuda failed: %d (%s)", spec, r->a.failed,
              r->a.failure, r->b.failed, r->b.failure);
    cr_assert_str_eq(r->b.backend, "cuda");
}

static void both_free(BothRuns *r) {
    record_free(&r->a);
    record_free(&r->b);
    cr_assert_null(engine_cuda_error(r->gpu), "%s", engine_cuda_error(r->gpu));
    r->cpu->destroy(r->cpu);
    r->gpu->destroy(r->gpu);
    dit_free(&r->m);
}
#endif

Test(cuda, easycache_decides_the_same_on_cuda_and_cpu, .timeout = 300) {
    fixture_require_cuda_device();
#ifdef CACHEBENCH_CUDA
    /* The strategy sees the engine only through VecOps and the stage tensors, so its compute/reuse decisions must not
     * depend on the backend. fp32 mode: the accumulated signal differs from the CPU's by ~1e-6 relative, far below the
     * margin to the threshold that the CPU trace shows (checked below, so that a tie cannot make this flaky). */
    const char *spec = "easycache:thresh=1,warmup=3"; /* random weights: signals ~0.2-0.6, a mix of decisions */
    const int steps = 16;
    BothRuns r;
    both_run(&r, spec, steps, 3);
    const RunRecord *a = &r.a, *b = &r.b;
    int reused = 0;
    for (int i = 0; i < steps; i++) {
        for (int br = 0; br < 2; br++) {
            cr_assert_eq(b->step[i].computed[br], a->step[i].computed[br], "step %d branch %d: cuda %s, cpu %s", i,
                         br, b->step[i].computed[br] ? "computed" : "reused",
                         a->step[i].computed[br] ? "computed" : "reused");
            reused += !a->step[i].computed[br];
        }
        /* The accumulator before a decision is E_prev + signal; keep it away from the threshold. */
        const float sig = a->step[i].signal[0];
        if (!isnan(sig)) {
            float before = (i > 0 && !isnan(a->step[i - 1].accumulator[0]) ? a->step[i - 1].accumulator[0] : 0.0f) + sig;
            cr_assert(fabsf(before - 1.0f) > 1e-2f, "step %d: accumulator %g too close to the threshold", i, before);
        }
    }
    cr_assert(reused > 0 && reused < 2 * steps, "the run should mix computed and reused calls (reused %d of %d)",
              reused, 2 * steps);
    both_free(&r);
#endif
}

Test(cuda, svg_run_matches_cpu, .timeout = 300) {
    fixture_require_cuda_device();
#ifdef CACHEBENCH_CUDA
    /* A whole svg trajectory (dense steps, then profiled sparse steps on every layer: HEAD keeps floor(0.03 · layers)
     * = 0 layers dense) through both engines in fp32: the same heads classified the same way, the same attention
     * FLOPs, the same video up to one 8-bit level (fp32 differences of ~1e-5 can move a pixel across a rounding
     * boundary). */
    const char *spec = "svg:svg_version=head,sparsity=0.75,dense_steps=0.25,dense_layers=0.03,rows=32";
    const int steps = 8;
    BothRuns r;
    both_run(&r, spec, steps, 4);
    const RunRecord a = r.a, b = r.b; /* shallow views for reading */
    cr_assert(a.svg_layers > 0 && b.svg_layers == a.svg_layers);
    int sparse_layers = 0;
    for (int i = 0; i < steps; i++) {
        for (int x = 0; x < 2 * a.svg_layers; x++) {
            const size_t at = (size_t)i * 2 * a.svg_layers + x;
            cr_assert_eq(b.svg_spatial_heads[at], a.svg_spatial_heads[at], "step %d slot %d", i, x);
            cr_assert_eq(b.svg_temporal_heads[at], a.svg_temporal_heads[at], "step %d slot %d", i, x);
            sparse_layers += a.svg_spatial_heads[at] + a.svg_temporal_heads[at] > 0;
        }
        cr_assert_eq(b.attn_flops[i], a.attn_flops[i], "step %d", i);
        cr_assert_eq(b.attn_flops_dense[i], a.attn_flops_dense[i], "step %d", i);
    }
    cr_assert(sparse_layers > 0, "the run should have sparse layers");
    const size_t nv = (size_t)a.frames * a.height * a.width * 3;
    int worst = 0;
    for (size_t i = 0; i < nv; i++) worst = abs((int)a.video[i] - (int)b.video[i]) > worst ? abs((int)a.video[i] - (int)b.video[i]) : worst;
    cr_assert(worst <= 1, "videos differ by %d levels", worst);
    both_free(&r);
#endif
}
