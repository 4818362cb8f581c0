/* Wan2.1 checkpoint folders (models/dit/checkpoint.h): one random 2-layer Wan-shaped model written in every layout
 * a user may have (official single file and shards with an index, diffusers transformer/ with plain and fused
 * projections, ComfyUI single file with and without its prefix; F32 and BF16) must load to the same forward output,
 * bit-identical within a dtype; every bad input is refused with a message naming the file; scripts/convert_wan.py
 * turns a .pth into a file that loads to the same model.
 *
 * The diffusers names are written by an independent transcription of diffusers'
 * scripts/convert_wan_to_diffusers.py (TRANSFORMER_KEYS_RENAME_DICT applied as ordered str.replace), not by the
 * loader's own map. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "core/sha256.h"
#include "models/dit/checkpoint.h"
#include "models/dit/dit.h"
#include "models/safetensors.h"
#include "tests/fixtures.h"

/* dim 64, 2 heads, ffn 128, text_dim 32, text_len 8, 4 channels, patch 1x2x2, 2 layers. */
static DitConfig wan_small(void) {
    DitConfig c = {.name = "test-wan", .in_dim = 4, .out_dim = 4, .patch_t = 1, .patch_h = 2, .patch_w = 2,
                   .dim = 64, .ffn_dim = 128, .num_heads = 2, .num_layers = 2, .freq_dim = 256, .text_dim = 32,
                   .text_len = 8, .eps = 1e-6f, .rope_theta = 10000.0f, .frames = 2, .height = 4, .width = 4,
                   .default_steps = 2, .default_shift = 5.0f, .default_guidance = 5.0f};
    return c;
}

static const char OFFICIAL_CONFIG[] =
    "{\"_class_name\": \"WanModel\", \"_diffusers_version\": \"0.30.0\", \"dim\": 64, \"eps\": 1e-06, "
    "\"ffn_dim\": 128, \"freq_dim\": 256, \"in_dim\": 4, \"model_type\": \"t2v\", \"num_heads\": 2, "
    "\"num_layers\": 2, \"out_dim\": 4, \"text_len\": 8, \"text_dim\": 32}\n";
static const char DIFFUSERS_CONFIG[] =
    "{\"_class_name\": \"WanTransformer3DModel\", \"_diffusers_version\": \"0.33.0\", \"added_kv_proj_dim\": null, "
    "\"attention_head_dim\": 32, \"cross_attn_norm\": true, \"eps\": 1e-06, \"ffn_dim\": 128, \"freq_dim\": 256, "
    "\"image_dim\": null, \"in_channels\": 4, \"num_attention_heads\": 2, \"num_layers\": 2, \"out_channels\": 4, "
    "\"patch_size\": [1, 2, 2], \"pos_embed_seq_len\": null, \"qk_norm\": \"rms_norm_across_heads\", "
    "\"rope_max_seq_len\": 1024, \"text_dim\": 32, \"text_len\": 8}\n";

static char *dir;
static DitModel ref_model;
static void setup(void) {
    dir = fixture_tmpdir();
    DitConfig c = wan_small();
    Error err;
    cr_assert_eq(dit_init_random(&ref_model, &c, 77, &err), 0, "%s", err.msg);
}
static void teardown(void) {
    dit_free(&ref_model);
    fixture_rmdir(dir);
    free(dir);
}
TestSuite(checkpoint, .init = setup, .fini = teardown);

/* ---- writing the layouts ---- */

typedef struct {
    StWriteTensor t[256];
    char names[256][160];
    float *owned[64];
    int count, owned_count;
} Tensors;

typedef struct {
    Tensors *out;
    StDtype dtype;
} Collect;

static int collect(void *user, const char *name, int ndim, const int64_t *shape, const float **slot) {
    Collect *c = user;
    Tensors *ts = c->out;
    cr_assert_lt(ts->count, 256);
    snprintf(ts->names[ts->count], sizeof ts->names[0], "%s", name);
    StWriteTensor *w = &ts->t[ts->count];
    *w = (StWriteTensor){.name = ts->names[ts->count], .dtype = c->dtype, .ndim = ndim, .data = *slot};
    memcpy(w->shape, shape, (size_t)ndim * sizeof *shape);
    ts->count++;
    return 0;
}

/* The reference model's tensors under their official names. */
static void official_tensors(Tensors *ts, StDtype dtype) {
    memset(ts, 0, sizeof *ts);
    Collect c = {ts, dtype};
    dit_for_each_tensor(&ref_model, collect, &c);
}

static void free_tensors(Tensors *ts) {
    for (int i = 0; i < ts->owned_count; i++) free(ts->owned[i]);
}

static void replace_all(char *s, size_t cap, const char *from, const char *to) {
    char out[256] = "";
    size_t used = 0, fl = strlen(from), tl = strlen(to);
    for (const char *p = s; *p;) {
        if (strncmp(p, from, fl) == 0) {
            cr_assert_lt(used + tl, sizeof out);
            memcpy(out + used, to, tl);
            used += tl, p += fl;
        } else {
            cr_assert_lt(used + 1, sizeof out);
            out[used++] = *p++;
        }
    }
    out[used] = '\0';
    snprintf(s, cap, "%s", out);
}

/* diffusers' TRANSFORMER_KEYS_RENAME_DICT (T2V entries), applied in its order to every official name. */
static void to_diffusers(Tensors *ts) {
    static const char *const RENAME[][2] = {
        {"time_embedding.0", "condition_embedder.time_embedder.linear_1"},
        {"time_embedding.2", "condition_embedder.time_embedder.linear_2"},
        {"text_embedding.0", "condition_embedder.text_embedder.linear_1"},
        {"text_embedding.2", "condition_embedder.text_embedder.linear_2"},
        {"time_projection.1", "condition_embedder.time_proj"},
        {"head.modulation", "scale_shift_table"},
        {"head.head", "proj_out"},
        {"modulation", "scale_shift_table"},
        {"ffn.0", "ffn.net.0.proj"},
        {"ffn.2", "ffn.net.2"},
        {"norm2", "norm__placeholder"},
        {"norm3", "norm2"},
        {"norm__placeholder", "norm3"},
        {"self_attn.q", "attn1.to_q"},
        {"self_attn.k", "attn1.to_k"},
        {"self_attn.v", "attn1.to_v"},
        {"self_attn.o", "attn1.to_out.0"},
        {"self_attn.norm_q", "attn1.norm_q"},
        {"self_attn.norm_k", "attn1.norm_k"},
        {"cross_attn.q", "attn2.to_q"},
        {"cross_attn.k", "attn2.to_k"},
        {"cross_attn.v", "attn2.to_v"},
        {"cross_attn.o", "attn2.to_out.0"},
        {"cross_attn.norm_q", "attn2.norm_q"},
        {"cross_attn.norm_k", "attn2.norm_k"},
    };
    for (int i = 0; i < ts->count; i++)
        for (size_t r = 0; r < sizeof RENAME / sizeof RENAME[0]; r++)
            replace_all(ts->names[i], sizeof ts->names[i], RENAME[r][0], RENAME[r][1]);
}

static int find_name(const Tensors *ts, const char *name) {
    for (int i = 0; i < ts->count; i++)
        if (strcmp(ts->names[i], name) == 0) return i;
    cr_assert_fail("test writer: no tensor %s", name);
    return -1;
}

/* WanAttention.fuse_projections on a diffusers-named list: attn1 q|k|v -> to_qkv, attn2 k|v -> to_kv (rows
 * concatenated), the parts removed. */
static void fuse(Tensors *ts, int layer, const char *attn, const char *fused, const char *const *parts, int n,
                 const char *suffix) {
    char name[160];
    int idx[3];
    size_t part_numel = 1;
    for (int k = 0; k < n; k++) {
        snprintf(name, sizeof name, "blocks.%d.%s.%s.%s", layer, attn, parts[k], suffix);
        idx[k] = find_name(ts, name);
    }
    const StWriteTensor *first = &ts->t[idx[0]];
    for (int d = 0; d < first->ndim; d++) part_numel *= (size_t)first->shape[d];
    float *data = malloc((size_t)n * part_numel * sizeof(float));
    for (int k = 0; k < n; k++) memcpy(data + k * part_numel, ts->t[idx[k]].data, part_numel * sizeof(float));
    ts->owned[ts->owned_count++] = data;
    StWriteTensor merged = *first;
    merged.shape[0] *= n;
    merged.data = data;
    /* Replace the first part with the fused tensor, drop the others (from the highest index down). */
    snprintf(ts->names[idx[0]], sizeof ts->names[0], "blocks.%d.%s.%s.%s", layer, attn, fused, suffix);
    merged.name = ts->names[idx[0]];
    ts->t[idx[0]] = merged;
    for (int k = n - 1; k >= 1; k--) {
        int j = idx[k];
        for (int m = j; m + 1 < ts->count; m++) {
            ts->t[m] = ts->t[m + 1];
            memcpy(ts->names[m], ts->names[m + 1], sizeof ts->names[0]);
            ts->t[m].name = ts->names[m];
        }
        ts->count--;
        for (int q = 0; q < n; q++)
            if (idx[q] > j) idx[q]--;
    }
}

static void fuse_all(Tensors *ts) {
    static const char *const qkv[] = {"to_q", "to_k", "to_v"}, *const kv[] = {"to_k", "to_v"};
    for (int layer = 0; layer < 2; layer++)
        for (int b = 0; b < 2; b++) {
            const char *suffix = b ? "bias" : "weight";
            fuse(ts, layer, "attn1", "to_qkv", qkv, 3, suffix);
            fuse(ts, layer, "attn2", "to_kv", kv, 2, suffix);
        }
}

static void prefix_all(Tensors *ts, const char *prefix) {
    for (int i = 0; i < ts->count; i++) {
        char name[160];
        snprintf(name, sizeof name, "%s%s", prefix, ts->names[i]);
        snprintf(ts->names[i], sizeof ts->names[i], "%s", name);
    }
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

static void make_dir(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", dir, name);
    cr_assert_eq(mkdir(out, 0755), 0, "mkdir %s", out);
}

static void write_tensors(const char *path, const StWriteTensor *t, int count) {
    Error err;
    cr_assert_eq(st_write(path, t, count, &err), 0, "%s", err.msg);
}

/* An official folder: config.json + one file, or shards split after `split` tensors with the index. */
static void write_official(const char *folder, StDtype dtype, int shards) {
    char path[4300];
    Tensors ts;
    official_tensors(&ts, dtype);
    snprintf(path, sizeof path, "%s/config.json", folder);
    write_file(path, OFFICIAL_CONFIG);
    if (shards == 1) {
        snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", folder);
        write_tensors(path, ts.t, ts.count);
        return;
    }
    /* Shard 1: everything up to the end of block 0; shard 2: the rest. */
    int split = find_name(&ts, "blocks.1.modulation");
    char index[16384];
    size_t len = (size_t)snprintf(index, sizeof index, "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {");
    for (int i = 0; i < ts.count; i++)
        len += (size_t)snprintf(index + len, sizeof index - len, "%s\"%s\": \"diffusion_pytorch_model-0000%d-of-00002.safetensors\"",
                                i ? ", " : "", ts.names[i], i < split ? 1 : 2);
    snprintf(index + len, sizeof index - len, "}}\n");
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors.index.json", folder);
    write_file(path, index);
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model-00001-of-00002.safetensors", folder);
    write_tensors(path, ts.t, split);
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model-00002-of-00002.safetensors", folder);
    write_tensors(path, ts.t + split, ts.count - split);
}

/* A diffusers pipeline folder: DIR/transformer/{config.json, diffusion_pytorch_model.safetensors}. */
static void write_diffusers(const char *folder, StDtype dtype, int fused) {
    char path[4300];
    Tensors ts;
    official_tensors(&ts, dtype);
    to_diffusers(&ts);
    if (fused) fuse_all(&ts);
    snprintf(path, sizeof path, "%s/transformer", folder);
    cr_assert_eq(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/transformer/config.json", folder);
    write_file(path, DIFFUSERS_CONFIG);
    snprintf(path, sizeof path, "%s/transformer/diffusion_pytorch_model.safetensors", folder);
    write_tensors(path, ts.t, ts.count);
    free_tensors(&ts);
}

/* ---- loading and comparing ---- */

#define GRID_F 2
#define GRID_H 4
#define GRID_W 4
#define OUT_N (4 * GRID_F * GRID_H * GRID_W)

static void forward(const DitModel *m, float *out) {
    Error err;
    DitState s;
    cr_assert_eq(dit_state_init(&s, &m->cfg, GRID_F, GRID_H, GRID_W, &err), 0, "%s", err.msg);
    float x[OUT_N], text[8 * 32] = {0};
    fixture_random(x, OUT_N, 5);
    fixture_random(text, 3 * 32, 6); /* three "tokens", zero padding */
    dit_forward(m, &s, x, 731.0f, text, out);
    dit_state_free(&s);
}

/* Loads path (preset NULL: the checkpoint's own config) and returns its forward output. */
static void load_forward(const char *path, const DitConfig *preset, float *out, char *layout, size_t cap) {
    DitModel m;
    Error err = {{0}};
    cr_assert_eq(dit_load(&m, preset, path, &err), 0, "%s: %s", path, err.msg);
    DitConfig want = wan_small();
    const char *field;
    char a[32], b[32];
    cr_assert_eq(dit_config_compare(&m.cfg, &want, &field, a, b, sizeof a), 0, "%s: config %s is %s, want %s", path,
                 field, a, b);
    cr_assert_eq(strlen(m.weights_sha256), 64);
    if (layout) snprintf(layout, cap, "%s", m.weights_layout);
    forward(&m, out);
    dit_free(&m);
}

static double max_rel_diff(const float *a, const float *b, size_t n) {
    double diff = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        diff = fmax(diff, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs((double)b[i]));
    }
    return diff / scale;
}

Test(checkpoint, every_layout_loads_the_same_model) {
    float want[OUT_N], got[OUT_N], bf16_first[OUT_N];
    forward(&ref_model, want);
    char path[4300], layout[160];
    const DitConfig small = wan_small();
    for (int bf16 = 0; bf16 < 2; bf16++) {
        const StDtype dtype = bf16 ? ST_BF16 : ST_F32;
        const char *tag = bf16 ? "bf16" : "f32";
        int n = 0;
        struct { const char *what; char path[4400]; const DitConfig *preset; const char *layout; } cases[7];
#define CASE(desc, pre, lay) (cases[n].what = desc, cases[n].preset = pre, cases[n].layout = lay, cases[n++].path)
        char folder[2048];
        snprintf(path, sizeof path, "official-%s", tag);
        make_dir(folder, sizeof folder, path);
        write_official(folder, dtype, 1);
        snprintf(CASE("official folder", NULL, "folder, one file, official names"), 4400, "%s", folder);
        /* The official folder's file given directly: config.json beside it is its config. */
        snprintf(CASE("official file", NULL, "single file, official names"), 4400,
                 "%s/diffusion_pytorch_model.safetensors", folder);

        snprintf(path, sizeof path, "sharded-%s", tag);
        make_dir(folder, sizeof folder, path);
        write_official(folder, dtype, 2);
        snprintf(CASE("sharded folder", NULL, "folder, 2 shards, official names"), 4400, "%s", folder);

        snprintf(path, sizeof path, "diffusers-%s", tag);
        make_dir(folder, sizeof folder, path);
        write_diffusers(folder, dtype, 0);
        snprintf(CASE("diffusers pipeline", NULL, "diffusers pipeline folder, one file, diffusers names"), 4400, "%s",
                 folder);

        snprintf(path, sizeof path, "diffusers-fused-%s", tag);
        make_dir(folder, sizeof folder, path);
        write_diffusers(folder, dtype, 1);
        /* The transformer/ folder itself is a folder with config.json too. */
        snprintf(CASE("diffusers transformer/, fused qkv", NULL, "folder, one file, diffusers names"), 4400,
                 "%s/transformer", folder);

        /* ComfyUI: one file, no config.json: the config comes from the preset (--model). */
        Tensors ts;
        official_tensors(&ts, dtype);
        snprintf(CASE("ComfyUI file", &small, "single file, official names"), 4400, "%s/comfy-%s.safetensors", dir,
                 tag);
        write_tensors(cases[n - 1].path, ts.t, ts.count);
        prefix_all(&ts, "model.diffusion_model.");
        /* A full ComfyUI checkpoint also holds other models' tensors, without the prefix: ignored. */
        float vae_w[6] = {1, 2, 3, 4, 5, 6};
        snprintf(ts.names[ts.count], sizeof ts.names[0], "first_stage_model.decoder.conv_in.weight");
        ts.t[ts.count] = (StWriteTensor){.name = ts.names[ts.count], .dtype = ST_F32, .ndim = 2, .shape = {2, 3},
                                         .data = vae_w};
        ts.count++;
        snprintf(CASE("ComfyUI file with prefix", &small, "single file, official names with prefix"), 4400,
                 "%s/comfy-prefixed-%s.safetensors", dir, tag);
        write_tensors(cases[n - 1].path, ts.t, ts.count);
#undef CASE
        for (int i = 0; i < n; i++) {
            load_forward(cases[i].path, cases[i].preset, got, layout, sizeof layout);
            cr_assert(strstr(layout, cases[i].layout), "%s (%s): layout '%s' should contain '%s'", cases[i].what,
                      tag, layout, cases[i].layout);
            if (!bf16) {
                cr_assert_eq(memcmp(got, want, sizeof got), 0, "%s (F32) must reproduce the model bit for bit",
                             cases[i].what);
            } else if (i == 0) {
                memcpy(bf16_first, got, sizeof got);
                /* BF16 keeps 8 significant bits per weight: the output moves by about a percent, not more. */
                double rel = max_rel_diff(got, want, OUT_N);
                cr_assert(rel > 0 && rel < 0.05, "BF16 output differs from F32 by %.3g (relative to max)", rel);
            } else {
                cr_assert_eq(memcmp(got, bf16_first, sizeof got), 0, "%s (BF16) must match the official BF16 folder",
                             cases[i].what);
            }
        }
    }
}

Test(checkpoint, single_file_config_is_inferred_from_shapes) {
    /* dim 256 = 2 heads of Wan's 128: the head count is the one thing the weights do not record. */
    DitConfig c = wan_small();
    c.dim = 256;
    char path[4300];
    snprintf(path, sizeof path, "%s/infer.safetensors", dir);
    DitModel src, m;
    Error err = {{0}};
    cr_assert_eq(dit_init_random(&src, &c, 3, &err), 0);
    Tensors ts;
    memset(&ts, 0, sizeof ts);
    Collect col = {&ts, ST_F32};
    dit_for_each_tensor(&src, collect, &col);
    write_tensors(path, ts.t, ts.count);
    cr_assert_eq(dit_load(&m, NULL, path, &err), 0, "%s", err.msg);
    c.text_len = 512; /* not in the weights: Wan's default */
    const char *field;
    char a[32], b[32];
    cr_assert_eq(dit_config_compare(&m.cfg, &c, &field, a, b, sizeof a), 0, "inferred %s = %s, want %s", field, a, b);
    cr_assert_str_eq(m.cfg.name, "wan2.1-t2v-custom-d256-h2-l2");
    dit_free(&m);

    /* dim 64 cannot be split into 128-wide heads: the error says what to do. */
    official_tensors(&ts, ST_F32);
    snprintf(path, sizeof path, "%s/noinfer.safetensors", dir);
    write_tensors(path, ts.t, ts.count);
    cr_assert_eq(dit_load(&m, NULL, path, &err), -1);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, "num_heads") && strstr(err.msg, "--model"), "%s", err.msg);
    dit_free(&src);
}

Test(checkpoint, preset_must_agree_with_config_json) {
    char folder[2048];
    make_dir(folder, sizeof folder, "official");
    write_official(folder, ST_F32, 1);
    DitConfig other = wan_small();
    other.num_layers = 3;
    DitModel m;
    Error err = {{0}};
    cr_assert_eq(dit_load(&m, &other, folder, &err), -1);
    cr_assert(strstr(err.msg, "config.json") && strstr(err.msg, "num_layers is 2") && strstr(err.msg, "has 3"), "%s",
              err.msg);
    /* A config equal to a preset's architecture takes the preset's name. */
    cr_assert_str_eq(dit_config_matching(dit_config_by_name("wan2.1-t2v-1.3b"))->name, "wan2.1-t2v-1.3b");
    cr_assert_null(dit_config_matching(&other));
}

/* ---- bad input ---- */

/* Loading `path` fails with a message containing every needle. */
static void expect_error(const char *path, const DitConfig *preset, const char *n1, const char *n2, const char *n3) {
    DitModel m;
    Error err = {{0}};
    cr_assert_eq(dit_load(&m, preset, path, &err), -1, "%s must be refused", path);
    const char *needles[] = {n1, n2, n3};
    for (int i = 0; i < 3; i++)
        cr_assert(!needles[i] || strstr(err.msg, needles[i]), "message should contain '%s': %s", needles[i], err.msg);
}

Test(checkpoint, config_json_errors_name_the_file) {
    char folder[2048], config[4400];
    make_dir(folder, sizeof folder, "bad");
    write_official(folder, ST_F32, 1);
    snprintf(config, sizeof config, "%s/config.json", folder);
    remove(config);
    expect_error(folder, NULL, folder, "missing config.json", NULL);
    write_file(config, "{\"dim\": 64, \"num_heads\": 2,");
    expect_error(folder, NULL, config, "not valid JSON", NULL);
    write_file(config, "{\"dim\": 64, \"num_heads\": 2, \"num_layers\": 2}");
    expect_error(folder, NULL, config, "missing \"ffn_dim\"", NULL);
    write_file(config, "{\"dim\": \"64\", \"num_heads\": 2, \"num_layers\": 2, \"ffn_dim\": 128}");
    expect_error(folder, NULL, config, "\"dim\" must be a positive integer", NULL);
    write_file(config, "{\"dim\": 64, \"num_heads\": 3, \"num_layers\": 2, \"ffn_dim\": 128}");
    expect_error(folder, NULL, config, "not a multiple of num_heads", NULL);
    write_file(config, "{\"model_type\": \"i2v\", \"dim\": 64, \"num_heads\": 2, \"num_layers\": 2, \"ffn_dim\": 128}");
    expect_error(folder, NULL, config, "model_type \"i2v\" is not supported", "t2v");
    write_file(config, "{\"hidden\": 64}");
    expect_error(folder, NULL, config, "not a Wan2.1 transformer config", NULL);

    char pipeline[2048], tconfig[4400];
    make_dir(pipeline, sizeof pipeline, "bad-diffusers");
    write_diffusers(pipeline, ST_F32, 0);
    snprintf(tconfig, sizeof tconfig, "%s/transformer/config.json", pipeline);
    write_file(tconfig, "{\"num_attention_heads\": 2, \"attention_head_dim\": 32, \"ffn_dim\": 128, \"num_layers\": 2, "
                        "\"image_dim\": 1280}");
    expect_error(pipeline, NULL, tconfig, "image_dim", "image-to-video");
}

Test(checkpoint, shard_errors_name_the_files) {
    char folder[2048], index[4400], shard2[4400], text[16384];
    make_dir(folder, sizeof folder, "shards");
    write_official(folder, ST_F32, 2);
    snprintf(index, sizeof index, "%s/diffusion_pytorch_model.safetensors.index.json", folder);
    snprintf(shard2, sizeof shard2, "%s/diffusion_pytorch_model-00002-of-00002.safetensors", folder);

    /* A tensor present in both shards (the index lists it for one). */
    Tensors ts;
    official_tensors(&ts, ST_F32);
    int split = find_name(&ts, "blocks.1.modulation");
    StWriteTensor extra[128];
    int n = 0;
    for (int i = split; i < ts.count; i++) extra[n++] = ts.t[i];
    extra[n++] = ts.t[0]; /* also in shard 1 */
    write_tensors(shard2, extra, n);
    expect_error(folder, NULL, "in two shards", "00001-of-00002", "00002-of-00002");

    /* An index naming a shard that is not there. */
    FILE *f = fopen(index, "r");
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = '\0';
    char *p = strstr(text, "00002-of-00002");
    memcpy(p, "00002-of-00003", 14);
    write_file(index, text);
    expect_error(folder, NULL, index, "00002-of-00003.safetensors", "missing");

    /* A malformed index. */
    write_file(index, "{\"weight_map\": []}");
    expect_error(folder, NULL, index, "weight_map", NULL);
}

/* Writes the official F32 tensors through `edit` into a single file with a config.json beside it. */
static void expect_tensor_error(const char *tag, void (*edit)(Tensors *), const char *n1, const char *n2) {
    char folder[2048], path[4400];
    make_dir(folder, sizeof folder, tag);
    snprintf(path, sizeof path, "%s/config.json", folder);
    write_file(path, OFFICIAL_CONFIG);
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", folder);
    Tensors ts;
    official_tensors(&ts, ST_F32);
    edit(&ts);
    write_tensors(path, ts.t, ts.count);
    expect_error(folder, NULL, folder, n1, n2); /* the folder given, or the file in it */
    free_tensors(&ts);
}

static void drop_norm_k(Tensors *ts) {
    int i = find_name(ts, "blocks.1.cross_attn.norm_k.weight");
    ts->t[i] = ts->t[--ts->count];
}
static void shrink_ffn(Tensors *ts) { ts->t[find_name(ts, "blocks.0.ffn.0.weight")].shape[0] = 64; }
static void add_layer(Tensors *ts) {
    ts->t[ts->count] = ts->t[find_name(ts, "blocks.1.modulation")];
    snprintf(ts->names[ts->count], sizeof ts->names[0], "blocks.2.modulation");
    ts->t[ts->count].name = ts->names[ts->count];
    ts->count++;
}
static void unknown_diffusers(Tensors *ts) {
    to_diffusers(ts);
    snprintf(ts->names[0], sizeof ts->names[0], "blocks.0.attn1.to_z.weight");
}

Test(checkpoint, tensor_errors_name_the_file_and_tensor) {
    expect_tensor_error("missing", drop_norm_k, "missing tensor", "blocks.1.cross_attn.norm_k.weight");
    expect_tensor_error("shape", shrink_ffn, "blocks.0.ffn.0.weight", "has shape [64, 64]");
    expect_tensor_error("extra", add_layer, "unexpected tensor", "blocks.2.modulation");
    expect_tensor_error("unknown", unknown_diffusers, "unknown diffusers tensor name", "blocks.0.attn1.to_z.weight");
}

Test(checkpoint, cli_runs_a_folder_and_refuses_a_bad_one, .timeout = 60) {
    char folder[2048], out[4400], log[8192];
    make_dir(folder, sizeof folder, "cli");
    write_official(folder, ST_BF16, 2);
    snprintf(out, sizeof out, "%s/out", dir);
    const char *args[] = {"run", "--weights", folder, "--prompt", "a cat", "--frames", "2", "--height", "4",
                          "--width", "4", "--steps", "2", "--random-context", "--out", out, NULL};
    int rc = fixture_run_cli(log, sizeof log, args);
    cr_assert_eq(rc, 0, "%s", log);
    cr_assert(strstr(log, "loaded") && strstr(log, "2 shards") && strstr(log, "peak RSS") &&
              strstr(log, "wan2.1-t2v-custom-d64-h2-l2"), "%s", log);
    /* A preset that disagrees with config.json: exit 1, the field named, nothing written. */
    char out2[4400];
    snprintf(out2, sizeof out2, "%s/out2", dir);
    const char *bad[] = {"run", "--model", "wan2.1-t2v-1.3b", "--weights", folder, "--prompt", "a cat", "--frames",
                         "2", "--height", "4", "--width", "4", "--steps", "2", "--random-context", "--out", out2, NULL};
    rc = fixture_run_cli(log, sizeof log, bad);
    cr_assert_eq(rc, 1, "%s", log);
    cr_assert(strstr(log, "config.json") && strstr(log, "dim is 64"), "%s", log);
    struct stat st;
    cr_assert_neq(stat(out2, &st), 0, "a refused run must not create %s", out2);
}

/* ---- scripts/convert_wan.py ---- */

Test(checkpoint, convert_wan_py_round_trip, .timeout = 60) {
    const char *py = fixture_python();
    char cmd[16384];
    /* The reference model as an official .pth state dict (BF16 tensors too: a mixed-dtype file), written by torch
     * from the F32 safetensors file read with numpy. */
    char src[2200], pth[2200], conv[2200], folder[2048];
    snprintf(src, sizeof src, "%s/src.safetensors", dir);
    make_dir(folder, sizeof folder, "converted");
    snprintf(conv, sizeof conv, "%s/diffusion_pytorch_model.safetensors", folder);
    snprintf(pth, sizeof pth, "%s/model.pth", dir);
    Tensors ts;
    official_tensors(&ts, ST_F32);
    write_tensors(src, ts.t, ts.count);
    snprintf(cmd, sizeof cmd,
             "'%s' - <<'EOF'\n"
             "import json, struct, sys\n"
             "try:\n"
             "    import numpy as np, torch\n"
             "except ImportError:\n"
             "    sys.exit(77)\n"
             "raw = open('%s', 'rb').read()\n"
             "n = struct.unpack('<Q', raw[:8])[0]\n"
             "header = json.loads(raw[8:8 + n])\n"
             "state = {}\n"
             "for name, e in header.items():\n"
             "    if name == '__metadata__': continue\n"
             "    a, b = e['data_offsets']\n"
             "    t = torch.from_numpy(np.frombuffer(raw[8 + n + a:8 + n + b], '<f4').reshape(e['shape']).copy())\n"
             "    state[name] = t.bfloat16() if 'ffn' in name else t\n"
             "torch.save(state, '%s')\n"
             "# The converter in this process: torch starts once (seconds on a loaded machine).\n"
             "import runpy\n"
             "sys.argv = ['convert_wan.py', '%s', '%s', '--dtype', 'keep']\n"
             "runpy.run_path('scripts/convert_wan.py', run_name='__main__')\n"
             "EOF",
             py, src, pth, pth, conv);
    int status = system(cmd);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77) cr_skip_test("%s cannot import numpy and torch", py);
    cr_assert_eq(status, 0, "writing the .pth or converting it failed");
    char config[4400];
    snprintf(config, sizeof config, "%s/config.json", folder);
    write_file(config, OFFICIAL_CONFIG);

    /* Names kept, F32 tensors bit-exact, the ffn tensors BF16: the same as our own BF16 rounding. */
    StFile f;
    Error err;
    cr_assert_eq(st_open(&f, conv, &err), 0, "%s", err.msg);
    cr_assert_eq(f.num_tensors, ts.count);
    for (int i = 0; i < ts.count; i++) {
        const StTensor *t = st_find(&f, ts.names[i]);
        cr_assert_not_null(t, "%s lost tensor %s", conv, ts.names[i]);
        size_t n = t->nbytes / (t->dtype == ST_F32 ? 4 : 2);
        float *back = malloc(n * sizeof(float));
        cr_assert_eq(st_to_f32(t, back, &err), 0);
        int is_ffn = strstr(ts.names[i], "ffn") != NULL;
        cr_assert_eq(t->dtype, is_ffn ? ST_BF16 : ST_F32, "%s", ts.names[i]);
        for (size_t k = 0; k < n; k++) {
            float want = is_ffn ? st_bf16_to_f32(st_f32_to_bf16(ts.t[i].data[k])) : ts.t[i].data[k];
            cr_assert_eq(memcmp(&back[k], &want, sizeof want), 0, "%s[%zu]: %g != %g", ts.names[i], k, back[k], want);
        }
        free(back);
    }
    st_close(&f);
    DitModel m;
    cr_assert_eq(dit_load(&m, NULL, folder, &err), 0, "%s", err.msg);
    dit_free(&m);

    /* A missing input: non-zero exit naming it, no output. */
    char missing[4300], out[4300];
    snprintf(missing, sizeof missing, "%s/none.pth", dir);
    snprintf(out, sizeof out, "%s/none.safetensors", dir);
    snprintf(cmd, sizeof cmd, "'%s' scripts/convert_wan.py '%s' '%s' 2>&1", py, missing, out);
    FILE *p = popen(cmd, "r");
    char msg[1024] = {0};
    size_t got = fread(msg, 1, sizeof msg - 1, p);
    msg[got] = '\0';
    cr_assert_neq(pclose(p), 0);
    cr_assert(strstr(msg, missing), "%s", msg);
    struct stat st;
    cr_assert_neq(stat(out, &st), 0);
}

/* ---- SHA-256 of weight files (the identity in every run record; hardware SHA path where the CPU has it) ---- */

Test(sha256, long_input_matches_hashlib) {
    char path[2200], cmd[4600], want[80] = {0}, got[65];
    char *tmp = fixture_tmpdir();
    cr_assert_not_null(tmp);
    snprintf(path, sizeof path, "%s/blob.bin", tmp);
    const size_t n = (1u << 20) + 17; /* many whole blocks plus a tail */
    float *data = malloc(n);
    fixture_random(data, n / sizeof(float), 9);
    FILE *f = fopen(path, "wb");
    cr_assert_eq(fwrite(data, 1, n, f), n);
    fclose(f);
    snprintf(cmd, sizeof cmd, "'%s' -c \"import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],'rb').read()).hexdigest())\" '%s'",
             fixture_python(), path);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    cr_assert_not_null(fgets(want, sizeof want, p));
    pclose(p);
    want[strcspn(want, "\n")] = '\0';
    Error err;
    cr_assert_eq(sha256_file_hex(path, got, &err), 0, "%s", err.msg);
    cr_assert_str_eq(got, want);
    /* Fed in uneven pieces: the buffered and the whole-block paths agree. */
    Sha256 h;
    sha256_init(&h);
    for (size_t at = 0, step = 1; at < n; at += step, step = step * 3 % 1000 + 1)
        sha256_update(&h, (const uint8_t *)data + at, at + step <= n ? step : n - at);
    uint8_t digest[32];
    sha256_final(&h, digest);
    for (int i = 0; i < 32; i++) snprintf(got + 2 * i, 3, "%02x", digest[i]);
    cr_assert_str_eq(got, want);
    free(data);
    fixture_rmdir(tmp);
    free(tmp);
}
