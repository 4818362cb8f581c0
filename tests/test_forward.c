/* The whole CPU forward pass against the naive double-precision reference (tests/ref_forward.c), and the
 * checkpoint loader against the model the checkpoint was written from. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/dit/dit.h"
#include "models/kernels.h"
#include "models/safetensors.h"
#include "tests/fixtures.h"
#include "tests/ref_forward.h"

/* Max |got - ref| relative to max |ref|. */
static double rel_error(const float *got, const double *ref, size_t n) {
    double err = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        err = fmax(err, fabs((double)got[i] - ref[i]));
        scale = fmax(scale, fabs(ref[i]));
    }
    return err / scale;
}

static void check_against_reference(const DitConfig *cfg, int F, int H, int W, double tol) {
    DitModel m;
    Error err;
    cr_assert_eq(dit_init_random(&m, cfg, 11, &err), 0, "%s", err.msg);
    DitState s;
    cr_assert_eq(dit_state_init(&s, cfg, F, H, W, &err), 0, "%s", err.msg);
    size_t n = (size_t)cfg->in_dim * F * H * W, tn = (size_t)cfg->text_len * cfg->text_dim;
    float *x = malloc(n * sizeof(float)), *text = calloc(tn, sizeof(float)), *out = malloc(n * sizeof(float));
    double *ref = malloc(n * sizeof(double));
    fixture_random(x, n, 1);
    /* Two real "words" and zero padding, like an encoded prompt. */
    fixture_random(text, 2 * (size_t)cfg->text_dim, 2);
    const float timesteps[] = {999.0f, 437.5f, 3.0f};
    for (int i = 0; i < 3; i++) {
        dit_forward(&m, &s, x, timesteps[i], text, out);
        ref_forward(&m, F, H, W, x, timesteps[i], text, ref);
        double e = rel_error(out, ref, n);
        cr_assert(e < tol, "%s t=%g: relative error %.3g >= %.1g", cfg->name, timesteps[i], e, tol);
    }
    free(x), free(text), free(out), free(ref);
    dit_state_free(&s);
    dit_free(&m);
}

/* fp32 with sgemm accumulation over K <= 512 terms and 2-4 residual layers: errors of a few 1e-6 relative to the
 * output scale; 1e-4 leaves margin while still catching any wrong index, scale or sign (those give O(1) errors). */
Test(forward, small_config_matches_reference) {
    check_against_reference(fixture_small_config(), 2, 4, 6, 1e-4);
}

Test(forward, tiny_config_matches_reference, .timeout = 60) {
    const DitConfig *cfg = dit_config_by_name("tiny");
    check_against_reference(cfg, cfg->frames, cfg->height, cfg->width, 1e-4);
}

Test(forward, odd_grid_with_temporal_patch) {
    /* A temporal patch of 2 and non-square grid exercise the patchify/unpatchify index order on every axis. */
    DitConfig cfg = *fixture_small_config();
    cfg.patch_t = 2;
    check_against_reference(&cfg, 4, 6, 2, 1e-4);
}

Test(forward, flops_are_consistent) {
    const DitConfig *cfg = dit_config_by_name("wan2.1-t2v-1.3b");
    int L = 21 * 30 * 52;
    double total = dit_flops_forward(cfg, L);
    /* Known closed form for the 1.3B model at 480p x 81 frames: dominated by 30 layers of projections, FFN and
     * attention; check the pieces add up and attention is 4 L^2 dim per layer. */
    cr_assert_float_eq(dit_flops_self_attention(cfg, L), 4.0 * L * (double)L * 1536, 1.0);
    cr_assert_float_eq(total, dit_flops_embed(cfg, L) + 30 * dit_flops_block(cfg, L) + dit_flops_head(cfg, L), 1.0);
    cr_assert(total > 1e14 && total < 1e15, "1.3B forward at 32760 tokens should be ~1e14 FLOPs, got %g", total);
}

/* ---- loader ---- */

static char *dir;
static void setup(void) { dir = fixture_tmpdir(); }
static void teardown(void) { fixture_rmdir(dir); free(dir); }

TestSuite(loader, .init = setup, .fini = teardown);

Test(loader, f32_checkpoint_round_trips_bit_for_bit) {
    const DitConfig *cfg = fixture_small_config();
    char path[4200];
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    cr_assert_eq(fixture_write_random_weights(path, cfg, 5, 0), 0);
    DitModel a, b;
    Error err;
    cr_assert_eq(dit_init_random(&a, cfg, 5, &err), 0);
    cr_assert_eq(dit_load(&b, cfg, path, &err), 0, "%s", err.msg);
    cr_assert_eq(strlen(b.weights_sha256), 64);
    DitState s;
    cr_assert_eq(dit_state_init(&s, cfg, 2, 4, 6, &err), 0);
    size_t n = 3 * 2 * 4 * 6, tn = (size_t)cfg->text_len * cfg->text_dim;
    float x[3 * 2 * 4 * 6], ya[3 * 2 * 4 * 6], yb[3 * 2 * 4 * 6], *text = calloc(tn, sizeof(float));
    fixture_random(x, n, 3);
    fixture_random(text, tn, 4);
    dit_forward(&a, &s, x, 500.0f, text, ya);
    dit_forward(&b, &s, x, 500.0f, text, yb);
    cr_assert_eq(memcmp(ya, yb, sizeof ya), 0, "a checkpoint written from a model must reproduce it exactly");
    free(text);
    dit_state_free(&s);
    dit_free(&a);
    dit_free(&b);
}

Test(loader, bf16_checkpoint_loads_close_to_f32) {
    const DitConfig *cfg = fixture_small_config();
    char path[4200];
    snprintf(path, sizeof path, "%s/w16.safetensors", dir);
    cr_assert_eq(fixture_write_random_weights(path, cfg, 5, 2), 0);
    DitModel a, b;
    Error err;
    cr_assert_eq(dit_init_random(&a, cfg, 5, &err), 0);
    cr_assert_eq(dit_load(&b, cfg, path, &err), 0, "%s", err.msg);
    /* BF16 keeps 8 significant bits: every weight within 2^-8 relative of the original. */
    cr_assert(fabsf(b.w.blocks[1].ffn1_w[7] - a.w.blocks[1].ffn1_w[7]) <= fabsf(a.w.blocks[1].ffn1_w[7]) / 256.0f);
    dit_free(&a);
    dit_free(&b);
}

/* Writes the small model's tensors but lets the caller tamper with one of them. */
typedef struct {
    const char *target;
    int mode; /* 0 drop, 1 wrong shape, 2 NaN */
    StWriteTensor list[128];
    int count;
    float *nan_copy;
} Tamper;

static int tamper_tensor(void *user, const char *name, int ndim, const int64_t *shape, const float **slot) {
    Tamper *t = user;
    int hit = strcmp(name, t->target) == 0;
    if (hit && t->mode == 0) return 0;
    StWriteTensor *w = &t->list[t->count++];
    w->name = name[0] ? strdup(name) : NULL;
    w->dtype = ST_F32;
    w->ndim = ndim;
    memcpy(w->shape, shape, (size_t)ndim * sizeof *shape);
    w->data = *slot;
    if (hit && t->mode == 1) w->shape[0] -= 1; /* fewer rows: still a valid file, wrong for the config */
    if (hit && t->mode == 2) {
        size_t n = 1;
        for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
        t->nan_copy = malloc(n * sizeof(float));
        memcpy(t->nan_copy, *slot, n * sizeof(float));
        t->nan_copy[n / 2] = NAN;
        w->data = t->nan_copy;
    }
    return 0;
}

static void expect_load_error(int mode, const char *target, const char *needle) {
    const DitConfig *cfg = fixture_small_config();
    DitModel m;
    Error err = {{0}};
    cr_assert_eq(dit_init_random(&m, cfg, 9, &err), 0);
    Tamper t = {.target = target, .mode = mode};
    dit_for_each_tensor(&m, tamper_tensor, &t);
    char path[4200];
    snprintf(path, sizeof path, "%s/bad%d.safetensors", dir, mode);
    cr_assert_eq(st_write(path, t.list, t.count, &err), 0, "%s", err.msg);
    DitModel loaded;
    cr_assert_eq(dit_load(&loaded, cfg, path, &err), -1, "tampered checkpoint (mode %d) must be rejected", mode);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, target) && strstr(err.msg, needle),
              "message should name the file, the tensor and the problem: %s", err.msg);
    for (int i = 0; i < t.count; i++) free((char *)t.list[i].name);
    free(t.nan_copy);
    dit_free(&m);
}

Test(loader, missing_tensor_is_named) { expect_load_error(0, "blocks.1.cross_attn.norm_k.weight", "missing"); }
Test(loader, wrong_shape_is_named) { expect_load_error(1, "blocks.0.ffn.0.weight", "shape"); }
Test(loader, nan_weight_is_named) { expect_load_error(2, "head.head.weight", "non-finite"); }

Test(loader, missing_file_is_named) {
    DitModel m;
    Error err = {{0}};
    cr_assert_eq(dit_load(&m, fixture_small_config(), "/nonexistent/w.safetensors", &err), -1);
    cr_assert(strstr(err.msg, "/nonexistent/w.safetensors"), "%s", err.msg);
}

/* ---- prompts ---- */

Test(prompt, unknown_word_lists_vocabulary) {
    DitModel m;
    Error err = {{0}};
    cr_assert_eq(dit_init_random(&m, fixture_small_config(), 1, &err), 0);
    char **vocab;
    int count;
    cr_assert_eq(dit_read_vocab("models/tiny/vocab.txt", &vocab, &count, &err), 0, "%s", err.msg);
    float text[5 * 8];
    cr_assert_eq(dit_encode_prompt(&m, vocab, count, "a purple circle", text, &err), -1);
    cr_assert(strstr(err.msg, "purple") && strstr(err.msg, "triangle") && strstr(err.msg, "gray"), "%s", err.msg);
    /* Known words map to their embedding rows, padding stays zero; case is ignored. */
    cr_assert_eq(dit_encode_prompt(&m, vocab, count, "A  red", text, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(text, m.w.token_embedding + 0 * 8, 8 * sizeof(float)), 0);
    cr_assert_eq(memcmp(text + 8, m.w.token_embedding + 4 * 8, 8 * sizeof(float)), 0);
    for (int i = 16; i < 40; i++) cr_assert_eq(text[i], 0.0f);
    /* More words than text_len rows is an error, not a silent truncation. */
    cr_assert_eq(dit_encode_prompt(&m, vocab, count, "a a a a a a", text, &err), -1);
    cr_assert(strstr(err.msg, "more than 5 words"), "%s", err.msg);
    dit_free_vocab(vocab, count);
    dit_free(&m);
}

/* Interface v2 module plans (models/backend.h ModulePlan) on the CPU engine: copying the modules' pre-gate outputs
 * out does not change the block; supplying exactly those outputs gives the same tokens bit for bit; supplied outputs
 * enter with this step's gates (checked against a double-precision sum); and a supplied self-attention output is
 * seen by the cross-attention and FFN that follow (PAB's case). */
Test(forward, module_plans_copy_and_supply_pre_gate_outputs) {
    const DitConfig *cfg = fixture_small_config();
    DitModel m;
    DitState s;
    Error err;
    cr_assert_eq(dit_init_random(&m, cfg, 21, &err), 0, "%s", err.msg);
    cr_assert_eq(dit_state_init(&s, cfg, 2, 4, 6, &err), 0, "%s", err.msg);
    const size_t n = (size_t)cfg->in_dim * 2 * 4 * 6, tn = (size_t)cfg->text_len * cfg->text_dim;
    const int d = cfg->dim;
    float *x = malloc(n * sizeof(float)), *text = calloc(tn, sizeof(float));
    fixture_random(x, n, 3);
    fixture_random(text, 2 * (size_t)cfg->text_dim, 4);
    dit_embed(&m, &s, x, 512.0f, text);
    const size_t nt = (size_t)s.L * d;
    float *t0 = malloc(nt * sizeof(float)), *a = malloc(nt * sizeof(float)), *y[MODULE_COUNT], *z[MODULE_COUNT];
    for (int k = 0; k < MODULE_COUNT; k++) {
        y[k] = calloc(nt, sizeof(float)), z[k] = malloc(nt * sizeof(float));
        fixture_random(z[k], nt, 10 + k);
    }
    memcpy(t0, s.tokens, nt * sizeof(float));
    const int layer = 1;

    ModulePlan copy = {{MODULE_COMPUTE, MODULE_COMPUTE, MODULE_COMPUTE}, {y[0], y[1], y[2]}};
    dit_block(&m, &s, layer, NULL, &copy);
    memcpy(a, s.tokens, nt * sizeof(float));
    for (int k = 0; k < MODULE_COUNT; k++) {
        double mag = 0;
        for (size_t i = 0; i < nt; i++) mag += fabs(y[k][i]);
        cr_assert_gt(mag, 0.0, "module %d's output was copied out", k);
    }
    memcpy(s.tokens, t0, nt * sizeof(float));
    dit_block(&m, &s, layer, NULL, NULL);
    cr_assert_eq(memcmp(s.tokens, a, nt * sizeof(float)), 0, "copying the outputs out changes nothing");

    ModulePlan same = {{MODULE_SUPPLY, MODULE_SUPPLY, MODULE_SUPPLY}, {y[0], y[1], y[2]}};
    memcpy(s.tokens, t0, nt * sizeof(float));
    dit_block(&m, &s, layer, NULL, &same);
    cr_assert_eq(memcmp(s.tokens, a, nt * sizeof(float)), 0, "supplying the computed outputs reproduces the block");

    /* x + z_sa * gate_msa + z_ca + z_ffn * gate_mlp, gates = modulation + e0 of this call. */
    ModulePlan all = {{MODULE_SUPPLY, MODULE_SUPPLY, MODULE_SUPPLY}, {z[0], z[1], z[2]}};
    memcpy(s.tokens, t0, nt * sizeof(float));
    dit_block(&m, &s, layer, NULL, &all);
    const float *mod = m.w.blocks[layer].modulation;
    double worst = 0;
    for (int r = 0; r < s.L; r++)
        for (int c = 0; c < d; c++) {
            const size_t i = (size_t)r * d + c;
            const double g_sa = (double)mod[2 * d + c] + s.e0[2 * d + c], g_ffn = (double)mod[5 * d + c] + s.e0[5 * d + c];
            const double want = t0[i] + z[0][i] * g_sa + z[1][i] + z[2][i] * g_ffn;
            worst = fmax(worst, fabs(s.tokens[i] - want));
        }
    cr_assert_leq(worst, 1e-5, "supplied outputs with this call's gates: max error %.3g", worst);

    /* Supplying only self-attention: cross-attention and the FFN run on the updated tokens. */
    ModulePlan first = {{MODULE_SUPPLY, MODULE_COMPUTE, MODULE_COMPUTE}, {z[0], NULL, NULL}};
    memcpy(s.tokens, t0, nt * sizeof(float));
    dit_block(&m, &s, layer, NULL, &first);
    memcpy(a, s.tokens, nt * sizeof(float));
    float *gate = malloc((size_t)d * sizeof(float));
    for (int c = 0; c < d; c++) gate[c] = mod[2 * d + c] + s.e0[2 * d + c];
    memcpy(s.tokens, t0, nt * sizeof(float));
    gated_residual(s.tokens, z[0], gate, s.L, d);
    memset(y[0], 0, nt * sizeof(float));
    ModulePlan zero_first = {{MODULE_SUPPLY, MODULE_COMPUTE, MODULE_COMPUTE}, {y[0], NULL, NULL}};
    dit_block(&m, &s, layer, NULL, &zero_first);
    cr_assert_eq(memcmp(s.tokens, a, nt * sizeof(float)), 0, "cross-attention and FFN see the supplied update");

    for (int k = 0; k < MODULE_COUNT; k++) free(y[k]), free(z[k]);
    free(x), free(text), free(t0), free(a), free(gate);
    dit_state_free(&s);
    dit_free(&m);
}
