#include "models/dit/checkpoint.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/sha256.h"

#define OFFICIAL_WEIGHTS "diffusion_pytorch_model.safetensors"
#define OFFICIAL_INDEX "diffusion_pytorch_model.safetensors.index.json"
#define COMFY_PREFIX "model.diffusion_model."
#define CONFIG_MAX_BYTES (16u << 20)
/* Wan2.1's released sizes both use 128-wide heads (1536/12, 5120/40); the weights do not record the head count. */
#define WAN_HEAD_DIM 128

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int join(char *out, size_t cap, const char *dir, const char *name, Error *err) {
    if ((size_t)snprintf(out, cap, "%s/%s", dir, name) >= cap) return error_set(err, "%s: path too long", dir);
    return 0;
}

/* Reads a small text file (config.json, the index) whole; NUL-terminated, free with free(). */
static char *read_text(const char *path, Error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        error_set(err, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(CONFIG_MAX_BYTES + 1);
    size_t n = buf ? fread(buf, 1, CONFIG_MAX_BYTES + 1, f) : 0;
    int bad = !buf || ferror(f);
    fclose(f);
    if (bad || n > CONFIG_MAX_BYTES) {
        error_set(err, "%s: %s", path, !buf ? "out of memory" : bad ? "read failed" : "larger than 16 MiB");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

static cJSON *read_json_object(const char *path, Error *err) {
    char *text = read_text(path, err);
    if (!text) return NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 1);
    if (!root) error_set(err, "%s: not valid JSON (error near byte %td)", path, end ? end - text : (ptrdiff_t)0);
    else if (!cJSON_IsObject(root)) {
        error_set(err, "%s: not a JSON object", path);
        cJSON_Delete(root);
        root = NULL;
    }
    free(text);
    return root;
}

/* ---------------------------------------------------------------------------------------------------------------
 * config.json
 * ------------------------------------------------------------------------------------------------------------- */

/* key absent -> *out = def (required: error); present -> a positive integer. */
static int json_positive_int(const cJSON *root, const char *key, int def, int required, int *out, const char *path,
                             Error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) return error_set(err, "%s: missing \"%s\"", path, key);
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 1 ||
        v->valuedouble > (1 << 30))
        return error_set(err, "%s: \"%s\" must be a positive integer", path, key);
    *out = (int)v->valuedouble;
    return 0;
}

static int json_eps(const cJSON *root, float *out, const char *path, Error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "eps");
    if (!v) {
        *out = 1e-6f;
        return 0;
    }
    if (!cJSON_IsNumber(v) || !(v->valuedouble > 0 && v->valuedouble < 1))
        return error_set(err, "%s: \"eps\" must be a number in (0, 1)", path);
    *out = (float)v->valuedouble;
    return 0;
}

static int json_patch(const cJSON *root, DitConfig *c, const char *path, Error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "patch_size");
    int p[3] = {1, 2, 2};
    if (v) {
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 3)
            return error_set(err, "%s: \"patch_size\" must be an array of 3 positive integers", path);
        for (int i = 0; i < 3; i++) {
            const cJSON *x = cJSON_GetArrayItem(v, i);
            if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble) || x->valuedouble < 1 ||
                x->valuedouble > 64)
                return error_set(err, "%s: \"patch_size\" must be an array of 3 positive integers", path);
            p[i] = (int)x->valuedouble;
        }
    }
    c->patch_t = p[0], c->patch_h = p[1], c->patch_w = p[2];
    return 0;
}

/* An option whose value must be `want` (a boolean) when present: the model runs only that variant. */
static int json_require_bool(const cJSON *root, const char *key, int want, const char *path, Error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (v && (!cJSON_IsBool(v) || cJSON_IsTrue(v) != want))
        return error_set(err, "%s: \"%s\" must be %s: cachebench implements Wan2.1 with %s", path, key,
                         want ? "true" : "false", want ? key : "no such option");
    return 0;
}

static int json_require_absent(const cJSON *root, const char *key, const char *what, const char *path, Error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (v && !cJSON_IsNull(v))
        return error_set(err, "%s: \"%s\" is set: this is %s; cachebench runs text-to-video (t2v) models only", path,
                         key, what);
    return 0;
}

static int check_model_type(const cJSON *root, const char *path, Error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (!v) return 0; /* WanModel's default is t2v */
    if (!cJSON_IsString(v)) return error_set(err, "%s: \"model_type\" must be a string", path);
    if (strcmp(v->valuestring, "t2v") != 0)
        return error_set(err,
                         "%s: model_type \"%.40s\" is not supported: cachebench runs text-to-video (t2v) models only",
                         path, v->valuestring);
    return 0;
}

/* Fields every Wan config shares (the presets' run defaults: 480p x 81 frames, 50 steps, shift 5, guide 5). */
static void wan_defaults(DitConfig *c) {
    memset(c, 0, sizeof *c);
    c->freq_dim = 256, c->text_dim = 4096, c->text_len = 512, c->eps = 1e-6f, c->rope_theta = 10000.0f;
    c->patch_t = 1, c->patch_h = 2, c->patch_w = 2;
    c->prediction = DIT_PREDICT_VELOCITY;
    c->frames = 21, c->height = 60, c->width = 104;
    c->default_steps = 50, c->default_shift = 5.0f, c->default_guidance = 5.0f;
    c->default_solver = "unipc"; /* wan/text2video.py's sample_solver default */
}

/* Official keys (WanModel's constructor arguments; text_dim and patch_size are not saved by WanModel and default to
 * 4096 and [1, 2, 2]). */
static int parse_official_config(const cJSON *root, DitConfig *c, const char *path, Error *err) {
    if (check_model_type(root, path, err)) return -1;
    if (json_positive_int(root, "dim", 0, 1, &c->dim, path, err) ||
        json_positive_int(root, "ffn_dim", 0, 1, &c->ffn_dim, path, err) ||
        json_positive_int(root, "num_heads", 0, 1, &c->num_heads, path, err) ||
        json_positive_int(root, "num_layers", 0, 1, &c->num_layers, path, err) ||
        json_positive_int(root, "in_dim", 16, 0, &c->in_dim, path, err) ||
        json_positive_int(root, "out_dim", 16, 0, &c->out_dim, path, err) ||
        json_positive_int(root, "freq_dim", 256, 0, &c->freq_dim, path, err) ||
        json_positive_int(root, "text_len", 512, 0, &c->text_len, path, err) ||
        json_positive_int(root, "text_dim", 4096, 0, &c->text_dim, path, err) || json_eps(root, &c->eps, path, err) ||
        json_patch(root, c, path, err) || json_require_bool(root, "qk_norm", 1, path, err) ||
        json_require_bool(root, "cross_attn_norm", 1, path, err))
        return -1;
    const cJSON *window = cJSON_GetObjectItemCaseSensitive(root, "window_size");
    if (window && !(cJSON_IsArray(window) && cJSON_GetArraySize(window) == 2 &&
                    cJSON_GetArrayItem(window, 0)->valuedouble == -1 && cJSON_GetArrayItem(window, 1)->valuedouble == -1))
        return error_set(err, "%s: \"window_size\" must be [-1, -1]: cachebench implements global attention only",
                         path);
    return 0;
}

/* diffusers WanTransformer3DModel keys. text_len is not a diffusers key (its pipeline pads prompts to 512);
 * cachebench reads it when present. */
static int parse_diffusers_config(const cJSON *root, DitConfig *c, const char *path, Error *err) {
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(root, "_class_name");
    if (cls && (!cJSON_IsString(cls) || strcmp(cls->valuestring, "WanTransformer3DModel") != 0))
        return error_set(err, "%s: _class_name \"%.60s\" is not supported: cachebench runs WanTransformer3DModel "
                         "(Wan2.1 text-to-video) only", path, cJSON_IsString(cls) ? cls->valuestring : "?");
    int heads, head_dim;
    if (json_positive_int(root, "num_attention_heads", 0, 1, &heads, path, err) ||
        json_positive_int(root, "attention_head_dim", 0, 1, &head_dim, path, err) ||
        json_positive_int(root, "ffn_dim", 0, 1, &c->ffn_dim, path, err) ||
        json_positive_int(root, "num_layers", 0, 1, &c->num_layers, path, err) ||
        json_positive_int(root, "in_channels", 16, 0, &c->in_dim, path, err) ||
        json_positive_int(root, "out_channels", c->in_dim, 0, &c->out_dim, path, err) ||
        json_positive_int(root, "freq_dim", 256, 0, &c->freq_dim, path, err) ||
        json_positive_int(root, "text_dim", 4096, 0, &c->text_dim, path, err) ||
        json_positive_int(root, "text_len", 512, 0, &c->text_len, path, err) || json_eps(root, &c->eps, path, err) ||
        json_patch(root, c, path, err) || json_require_bool(root, "cross_attn_norm", 1, path, err) ||
        json_require_absent(root, "image_dim", "an image-to-video model", path, err) ||
        json_require_absent(root, "added_kv_proj_dim", "an image-to-video model", path, err) ||
        json_require_absent(root, "pos_embed_seq_len", "a first-last-frame model", path, err))
        return -1;
    if ((double)heads * head_dim > (1 << 30)) return error_set(err, "%s: num_attention_heads x attention_head_dim is too large", path);
    c->num_heads = heads, c->dim = heads * head_dim;
    const cJSON *qk = cJSON_GetObjectItemCaseSensitive(root, "qk_norm");
    if (qk && !(cJSON_IsString(qk) && strcmp(qk->valuestring, "rms_norm_across_heads") == 0))
        return error_set(err, "%s: \"qk_norm\" must be \"rms_norm_across_heads\" (Wan2.1's RMSNorm over all heads)",
                         path);
    return 0;
}

static int check_architecture(const DitConfig *c, const char *path, Error *err) {
    if (c->dim % c->num_heads)
        return error_set(err, "%s: dim %d is not a multiple of num_heads %d", path, c->dim, c->num_heads);
    if ((c->dim / c->num_heads) % 2)
        return error_set(err, "%s: head width dim/num_heads = %d must be even (RoPE rotates pairs)", path,
                         c->dim / c->num_heads);
    return 0;
}

/* A config equal to a preset's architecture takes its name; any other is named by its shape. */
static void name_config(DitConfig *c) {
    const DitConfig *preset = dit_config_matching(c);
    if (preset) snprintf(c->name, sizeof c->name, "%s", preset->name);
    else snprintf(c->name, sizeof c->name, "wan2.1-t2v-custom-d%d-h%d-l%d", c->dim, c->num_heads, c->num_layers);
}

static int read_config(Checkpoint *ck, Error *err) {
    cJSON *root = read_json_object(ck->config_path, err);
    if (!root) return -1;
    wan_defaults(&ck->config);
    int rc;
    if (cJSON_GetObjectItemCaseSensitive(root, "num_attention_heads"))
        rc = parse_diffusers_config(root, &ck->config, ck->config_path, err);
    else if (cJSON_GetObjectItemCaseSensitive(root, "dim") || cJSON_GetObjectItemCaseSensitive(root, "num_heads"))
        rc = parse_official_config(root, &ck->config, ck->config_path, err);
    else
        rc = error_set(err, "%s: not a Wan2.1 transformer config (neither official keys \"dim\", \"num_heads\" nor "
                       "diffusers keys \"num_attention_heads\", \"attention_head_dim\")", ck->config_path);
    cJSON_Delete(root);
    if (rc || check_architecture(&ck->config, ck->config_path, err)) return -1;
    name_config(&ck->config);
    ck->has_config = 1;
    return 0;
}

/* ---------------------------------------------------------------------------------------------------------------
 * Names
 * ------------------------------------------------------------------------------------------------------------- */

/* diffusers -> official, as scripts/convert_wan_to_diffusers.py renames (official -> diffusers) in reverse.
 * Stems take ".weight" / ".bias"; a fused stem lists the official stems of its equal row blocks. */
typedef struct {
    const char *diffusers;
    const char *official[3];
} NameRule;

static const NameRule TOP_RULES[] = {
    {"patch_embedding", {"patch_embedding"}},
    {"condition_embedder.time_embedder.linear_1", {"time_embedding.0"}},
    {"condition_embedder.time_embedder.linear_2", {"time_embedding.2"}},
    {"condition_embedder.text_embedder.linear_1", {"text_embedding.0"}},
    {"condition_embedder.text_embedder.linear_2", {"text_embedding.2"}},
    {"condition_embedder.time_proj", {"time_projection.1"}},
    {"proj_out", {"head.head"}},
};

static const NameRule BLOCK_RULES[] = {
    {"attn1.to_q", {"self_attn.q"}},        {"attn1.to_k", {"self_attn.k"}},
    {"attn1.to_v", {"self_attn.v"}},        {"attn1.to_out.0", {"self_attn.o"}},
    {"attn1.norm_q", {"self_attn.norm_q"}}, {"attn1.norm_k", {"self_attn.norm_k"}},
    {"attn2.to_q", {"cross_attn.q"}},       {"attn2.to_k", {"cross_attn.k"}},
    {"attn2.to_v", {"cross_attn.v"}},       {"attn2.to_out.0", {"cross_attn.o"}},
    {"attn2.norm_q", {"cross_attn.norm_q"}}, {"attn2.norm_k", {"cross_attn.norm_k"}},
    /* diffusers' (norm1, norm2, norm3) are the official (norm1, norm3, norm2); only the cross-attention norm has
     * parameters. */
    {"norm2", {"norm3"}},
    {"ffn.net.0.proj", {"ffn.0"}},          {"ffn.net.2", {"ffn.2"}},
    /* WanAttention.fuse_projections: q|k|v rows of self-attention, k|v rows of cross-attention. */
    {"attn1.to_qkv", {"self_attn.q", "self_attn.k", "self_attn.v"}},
    {"attn2.to_kv", {"cross_attn.k", "cross_attn.v"}},
};

/* Official names of one diffusers tensor into out[0..*count); -1 when the name is unknown. */
static int diffusers_to_official(const char *name, char out[3][256], int *count) {
    char block[32] = "";
    const char *rest = name;
    const NameRule *rules = TOP_RULES;
    size_t nrules = sizeof TOP_RULES / sizeof TOP_RULES[0];
    if (strncmp(name, "blocks.", 7) == 0) {
        char *end;
        long layer = strtol(name + 7, &end, 10);
        if (end == name + 7 || *end != '.' || layer < 0 || layer > 100000) return -1;
        snprintf(block, sizeof block, "blocks.%ld.", layer);
        rest = end + 1;
        rules = BLOCK_RULES;
        nrules = sizeof BLOCK_RULES / sizeof BLOCK_RULES[0];
    }
    if (strcmp(rest, "scale_shift_table") == 0) {
        snprintf(out[0], 256, "%s%s", block, block[0] ? "modulation" : "head.modulation");
        *count = 1;
        return 0;
    }
    const char *dot = strrchr(rest, '.');
    if (!dot || (strcmp(dot, ".weight") != 0 && strcmp(dot, ".bias") != 0)) return -1;
    for (size_t i = 0; i < nrules; i++) {
        size_t len = strlen(rules[i].diffusers);
        if ((size_t)(dot - rest) != len || strncmp(rest, rules[i].diffusers, len) != 0) continue;
        *count = 0;
        for (int k = 0; k < 3 && rules[i].official[k]; k++)
            snprintf(out[(*count)++], 256, "%s%s%s", block, rules[i].official[k], dot);
        return 0;
    }
    return -1;
}

static int looks_diffusers(const char *name) {
    return strncmp(name, "condition_embedder.", 19) == 0 || strcmp(name, "proj_out.weight") == 0 ||
           strcmp(name, "scale_shift_table") == 0 || strstr(name, ".attn1.") || strstr(name, ".attn2.");
}

static int compare_entries(const void *a, const void *b) {
    const CheckpointTensor *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c) return c;
    /* Unfused before fused, so a fused duplicate of a present unfused tensor is the one dropped. */
    return (x->parts > 1) - (y->parts > 1);
}

static int add_entry(Checkpoint *ck, int *cap, const char *name, const StTensor *t, const char *file, int part,
                     int parts, Error *err) {
    if (ck->num_tensors == *cap) {
        int grown_cap = *cap ? 2 * *cap : 1024;
        CheckpointTensor *grown = realloc(ck->tensors, (size_t)grown_cap * sizeof *grown);
        if (!grown) return error_set(err, "%s: out of memory", file);
        ck->tensors = grown, *cap = grown_cap;
    }
    CheckpointTensor *e = &ck->tensors[ck->num_tensors];
    *e = (CheckpointTensor){.name = strdup(name), .tensor = t, .file = file, .part = part, .parts = parts};
    if (!e->name) return error_set(err, "%s: out of memory", file);
    ck->num_tensors++;
    return 0;
}

/* Builds the official-name table over every open file. */
static int build_table(Checkpoint *ck, Error *err) {
    int prefixed = 0, diffusers = 0, cap = 0;
    for (int f = 0; f < ck->num_files; f++)
        for (int i = 0; i < ck->files[f].num_tensors; i++)
            prefixed |= strncmp(ck->files[f].tensors[i].name, COMFY_PREFIX, strlen(COMFY_PREFIX)) == 0;
    for (int f = 0; f < ck->num_files; f++)
        for (int i = 0; i < ck->files[f].num_tensors; i++) {
            const char *name = ck->files[f].tensors[i].name;
            if (prefixed && strncmp(name, COMFY_PREFIX, strlen(COMFY_PREFIX)) != 0) continue;
            diffusers |= looks_diffusers(name + (prefixed ? strlen(COMFY_PREFIX) : 0));
        }
    for (int f = 0; f < ck->num_files; f++) {
        const StFile *file = &ck->files[f];
        for (int i = 0; i < file->num_tensors; i++) {
            const StTensor *t = &file->tensors[i];
            const char *name = t->name;
            if (prefixed) {
                if (strncmp(name, COMFY_PREFIX, strlen(COMFY_PREFIX)) != 0) continue; /* not the transformer */
                name += strlen(COMFY_PREFIX);
            }
            if (!diffusers) {
                if (add_entry(ck, &cap, name, t, file->path, 0, 1, err)) return -1;
                continue;
            }
            char official[3][256];
            int count;
            if (diffusers_to_official(name, official, &count))
                return error_set(err, "%s: unknown diffusers tensor name '%s' (not a weight of a Wan2.1 text-to-video "
                                 "WanTransformer3DModel)", file->path, t->name);
            if (count > 1 && (t->ndim < 1 || t->shape[0] % count))
                return error_set(err, "%s: fused tensor '%s' cannot be split into %d equal row blocks", file->path,
                                 t->name, count);
            for (int k = 0; k < count; k++)
                if (add_entry(ck, &cap, official[k], t, file->path, k, count, err)) return -1;
        }
    }
    qsort(ck->tensors, (size_t)ck->num_tensors, sizeof *ck->tensors, compare_entries);
    int kept = 0;
    for (int i = 0; i < ck->num_tensors; i++) {
        CheckpointTensor *e = &ck->tensors[i];
        if (kept > 0 && strcmp(ck->tensors[kept - 1].name, e->name) == 0) {
            const CheckpointTensor *prev = &ck->tensors[kept - 1];
            if (e->parts > 1 && prev->parts == 1) { /* both fused and unfused projections saved: use the unfused */
                free(e->name);
                continue;
            }
            if (strcmp(prev->file, e->file) != 0)
                return error_set(err, "tensor '%s' is in two shards: %s and %s", prev->tensor->name, prev->file,
                                 e->file);
            return error_set(err, "%s: tensors '%s' and '%s' both give the official tensor '%s'", e->file,
                             prev->tensor->name, e->tensor->name, e->name);
        }
        ck->tensors[kept++] = *e;
    }
    ck->num_tensors = kept;
    snprintf(ck->layout + strlen(ck->layout), sizeof ck->layout - strlen(ck->layout), "%s names%s",
             diffusers ? "diffusers" : "official", prefixed ? " with prefix '" COMFY_PREFIX "'" : "");
    return 0;
}

/* ---------------------------------------------------------------------------------------------------------------
 * Files
 * ------------------------------------------------------------------------------------------------------------- */

static int open_files(Checkpoint *ck, char **paths, int count, Error *err) {
    ck->files = calloc((size_t)count, sizeof *ck->files);
    if (!ck->files) return error_set(err, "%s: out of memory", ck->path);
    for (int i = 0; i < count; i++) {
        if (st_open(&ck->files[i], paths[i], err)) return -1;
        ck->num_files++;
    }
    return 0;
}

static int compare_strings(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The shard set of an index: opens each named shard once and checks that the index and the shards agree. */
static int open_sharded(Checkpoint *ck, const char *dir, Error *err) {
    cJSON *root = read_json_object(ck->index_path, err);
    if (!root) return -1;
    char **shards = NULL;
    int num_shards = 0, rc = -1;
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(map) || !map->child) {
        error_set(err, "%s: \"weight_map\" is missing, empty or not an object", ck->index_path);
        goto done;
    }
    int entries = cJSON_GetArraySize(map);
    shards = calloc((size_t)entries, sizeof *shards);
    if (!shards) {
        error_set(err, "%s: out of memory", ck->index_path);
        goto done;
    }
    for (const cJSON *e = map->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !e->valuestring[0] || strchr(e->valuestring, '/')) {
            error_set(err, "%s: weight_map entry '%s' must name a shard file in the same folder", ck->index_path,
                      e->string);
            goto done;
        }
        int seen = 0;
        for (int i = 0; i < num_shards && !seen; i++) seen = strcmp(shards[i] + strlen(dir) + 1, e->valuestring) == 0;
        if (seen) continue;
        char path[CHECKPOINT_PATH_MAX];
        if (join(path, sizeof path, dir, e->valuestring, err)) goto done;
        if (!exists(path)) {
            error_set(err, "%s: shard %s (named for tensor '%s') is missing", ck->index_path, path, e->string);
            goto done;
        }
        if (!(shards[num_shards] = strdup(path))) {
            error_set(err, "%s: out of memory", ck->index_path);
            goto done;
        }
        num_shards++;
    }
    qsort(shards, (size_t)num_shards, sizeof *shards, compare_strings);
    if (open_files(ck, shards, num_shards, err)) goto done;
    /* Every tensor of a shard is listed for that shard, and every listed tensor is in its shard. */
    for (int f = 0; f < ck->num_files; f++)
        for (int i = 0; i < ck->files[f].num_tensors; i++) {
            const char *name = ck->files[f].tensors[i].name;
            const cJSON *listed = cJSON_GetObjectItemCaseSensitive(map, name);
            if (!listed) {
                error_set(err, "%s: tensor '%s' is not listed in %s", ck->files[f].path, name, ck->index_path);
                goto done;
            }
            if (strcmp(ck->files[f].path + strlen(dir) + 1, listed->valuestring) != 0) {
                char other[CHECKPOINT_PATH_MAX];
                snprintf(other, sizeof other, "%s/%s", dir, listed->valuestring);
                int in_other = 0;
                for (int g = 0; g < ck->num_files; g++)
                    if (strcmp(ck->files[g].path, other) == 0) in_other = st_find(&ck->files[g], name) != NULL;
                if (in_other)
                    error_set(err, "tensor '%s' is in two shards: %s and %s", name, other, ck->files[f].path);
                else
                    error_set(err, "%s: tensor '%s' is in %s, not in %s as the index says", ck->index_path, name,
                              ck->files[f].path, other);
                goto done;
            }
        }
    for (const cJSON *e = map->child; e; e = e->next) {
        char path[CHECKPOINT_PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, e->valuestring);
        for (int f = 0; f < ck->num_files; f++)
            if (strcmp(ck->files[f].path, path) == 0 && !st_find(&ck->files[f], e->string)) {
                error_set(err, "%s: tensor '%s' is listed for %s but that shard does not hold it", ck->index_path,
                          e->string, path);
                goto done;
            }
    }
    rc = 0;
done:
    for (int i = 0; i < num_shards; i++) free(shards[i]);
    free(shards);
    cJSON_Delete(root);
    return rc;
}

/* The folder holding config.json and the weights: DIR, or DIR/transformer for a diffusers pipeline. */
static int open_folder(Checkpoint *ck, const char *dir, Error *err) {
    char base[CHECKPOINT_PATH_MAX], weights[CHECKPOINT_PATH_MAX];
    if (join(base, sizeof base, dir, "transformer", err)) return -1;
    const int pipeline = is_dir(base);
    if (!pipeline) snprintf(base, sizeof base, "%s", dir);
    if (join(ck->config_path, sizeof ck->config_path, base, "config.json", err) ||
        join(ck->index_path, sizeof ck->index_path, base, OFFICIAL_INDEX, err) ||
        join(weights, sizeof weights, base, OFFICIAL_WEIGHTS, err))
        return -1;
    if (!exists(ck->config_path))
        return error_set(err, "%s: missing config.json (a model folder needs one: the official Wan-AI folder or a "
                         "diffusers transformer/ folder has it)", base);
    ck->is_folder = 1;
    if (read_config(ck, err)) return -1;
    const char *kind = pipeline ? "diffusers pipeline folder" : "folder";
    if (exists(ck->index_path)) {
        if (open_sharded(ck, base, err)) return -1;
        snprintf(ck->layout, sizeof ck->layout, "%s, %d shard%s, ", kind, ck->num_files, ck->num_files == 1 ? "" : "s");
        return 0;
    }
    ck->index_path[0] = '\0';
    if (!exists(weights))
        return error_set(err, "%s: no %s or %s", base, OFFICIAL_WEIGHTS, OFFICIAL_INDEX);
    char *one = weights;
    if (open_files(ck, &one, 1, err)) return -1;
    snprintf(ck->layout, sizeof ck->layout, "%s, one file, ", kind);
    return 0;
}

int checkpoint_open(Checkpoint *ck, const char *path, Error *err) {
    memset(ck, 0, sizeof *ck);
    if (snprintf(ck->path, sizeof ck->path, "%s", path) >= (int)sizeof ck->path)
        return error_set(err, "weights path too long: %.100s...", path);
    int rc;
    char dir[CHECKPOINT_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    else snprintf(dir, sizeof dir, ".");
    if (is_dir(path)) {
        rc = open_folder(ck, path, err);
    } else if (ends_with(path, ".index.json")) {
        snprintf(ck->index_path, sizeof ck->index_path, "%s", path);
        ck->is_folder = 1;
        rc = join(ck->config_path, sizeof ck->config_path, dir, "config.json", err);
        if (!rc && exists(ck->config_path)) rc = read_config(ck, err);
        else if (!rc) ck->config_path[0] = '\0';
        if (!rc) rc = open_sharded(ck, dir, err);
        if (!rc) snprintf(ck->layout, sizeof ck->layout, "shard index, %d shard%s, ", ck->num_files,
                          ck->num_files == 1 ? "" : "s");
    } else {
        /* One file; a config.json beside it (the official folder's own file given directly) is its config. */
        rc = join(ck->config_path, sizeof ck->config_path, dir, "config.json", err);
        if (!rc && exists(ck->config_path)) rc = read_config(ck, err);
        else if (!rc) ck->config_path[0] = '\0';
        char *one = (char *)path;
        if (!rc) rc = open_files(ck, &one, 1, err);
        if (!rc) snprintf(ck->layout, sizeof ck->layout, "single file, ");
    }
    if (!rc) rc = build_table(ck, err);
    if (rc) checkpoint_close(ck);
    return rc;
}

void checkpoint_close(Checkpoint *ck) {
    for (int i = 0; i < ck->num_files; i++) st_close(&ck->files[i]);
    free(ck->files);
    for (int i = 0; i < ck->num_tensors; i++) free(ck->tensors[i].name);
    free(ck->tensors);
    memset(ck, 0, sizeof *ck);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Config, lookup, identity
 * ------------------------------------------------------------------------------------------------------------- */

static const CheckpointTensor *lookup(const Checkpoint *ck, const char *name) {
    CheckpointTensor key = {.name = (char *)name};
    if (!ck->num_tensors) return NULL;
    /* parts only breaks ties, and the table has no duplicate names left: compare names alone. */
    size_t lo = 0, hi = (size_t)ck->num_tensors;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(ck->tensors[mid].name, key.name);
        if (c == 0) return &ck->tensors[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const CheckpointTensor *checkpoint_find(Checkpoint *ck, const char *name) {
    CheckpointTensor *t = (CheckpointTensor *)lookup(ck, name);
    if (t) t->used = 1;
    return t;
}

void checkpoint_view(const CheckpointTensor *t, StTensor *view) {
    *view = *t->tensor;
    if (t->parts > 1) {
        view->shape[0] /= t->parts;
        view->nbytes /= (size_t)t->parts;
        view->data = (const char *)t->tensor->data + (size_t)t->part * view->nbytes;
    }
}

/* dim0 of an official tensor, or an error naming what is missing for the inference. */
static int infer_dim(const Checkpoint *ck, const char *name, int ndim, int axis, int *out, Error *err) {
    const CheckpointTensor *t = lookup(ck, name);
    if (!t) return error_set(err, "%s: cannot infer the model config: no tensor '%s' (and no config.json)", ck->path, name);
    StTensor v;
    checkpoint_view(t, &v);
    if (v.ndim != ndim || v.shape[axis] < 1 || v.shape[axis] > (1 << 30))
        return error_set(err, "%s: cannot infer the model config: tensor '%s' has %d dims, expected %d", t->file,
                         v.name, v.ndim, ndim);
    *out = (int)v.shape[axis];
    return 0;
}

static int infer_config(const Checkpoint *ck, DitConfig *c, Error *err) {
    if (lookup(ck, "token_embedding.weight")) { /* only the tiny family embeds words itself */
        *c = *dit_config_by_name("tiny");
        return 0;
    }
    wan_defaults(c);
    int head_rows;
    if (infer_dim(ck, "patch_embedding.weight", 5, 0, &c->dim, err) ||
        infer_dim(ck, "patch_embedding.weight", 5, 1, &c->in_dim, err) ||
        infer_dim(ck, "patch_embedding.weight", 5, 2, &c->patch_t, err) ||
        infer_dim(ck, "patch_embedding.weight", 5, 3, &c->patch_h, err) ||
        infer_dim(ck, "patch_embedding.weight", 5, 4, &c->patch_w, err) ||
        infer_dim(ck, "text_embedding.0.weight", 2, 1, &c->text_dim, err) ||
        infer_dim(ck, "time_embedding.0.weight", 2, 1, &c->freq_dim, err) ||
        infer_dim(ck, "blocks.0.ffn.0.weight", 2, 0, &c->ffn_dim, err) ||
        infer_dim(ck, "head.head.weight", 2, 0, &head_rows, err))
        return -1;
    const int volume = c->patch_t * c->patch_h * c->patch_w;
    if (head_rows % volume)
        return error_set(err, "%s: cannot infer out_dim: head.head.weight has %d rows, not a multiple of the patch "
                         "volume %d", ck->path, head_rows, volume);
    c->out_dim = head_rows / volume;
    for (int i = 0; i < ck->num_tensors; i++) {
        const char *n = ck->tensors[i].name;
        if (strncmp(n, "blocks.", 7) == 0) {
            long layer = strtol(n + 7, NULL, 10);
            if (layer >= c->num_layers && layer < 100000) c->num_layers = (int)layer + 1;
        }
    }
    if (c->dim % WAN_HEAD_DIM)
        return error_set(err, "%s: cannot infer num_heads: the weights do not record it and dim %d is not a multiple "
                         "of Wan2.1's head width %d; put a config.json beside the file or pass --model", ck->path,
                         c->dim, WAN_HEAD_DIM);
    c->num_heads = c->dim / WAN_HEAD_DIM;
    name_config(c);
    return 0;
}

int checkpoint_config(const Checkpoint *ck, const DitConfig *preset, DitConfig *out, Error *err) {
    if (preset) {
        const char *field;
        char have[32], want[32];
        if (ck->has_config && dit_config_compare(&ck->config, preset, &field, have, want, sizeof have))
            return error_set(err, "%s: %s is %s but --model %s has %s (leave --model out to use config.json)",
                             ck->config_path, field, have, preset->name, want);
        *out = *preset;
        return 0;
    }
    if (ck->has_config) {
        *out = ck->config;
        return 0;
    }
    return infer_config(ck, out, err);
}

int checkpoint_check_all_used(const Checkpoint *ck, const char *config_name, Error *err) {
    for (int i = 0; i < ck->num_tensors; i++) {
        const CheckpointTensor *t = &ck->tensors[i];
        if (t->used) continue;
        if (strcmp(t->name, t->tensor->name) != 0)
            return error_set(err, "%s: unexpected tensor '%s' (official name '%s'; config %s has no such weight)",
                             t->file, t->tensor->name, t->name, config_name);
        return error_set(err, "%s: unexpected tensor '%s' (config %s has no such weight)", t->file, t->name,
                         config_name);
    }
    return 0;
}

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

int checkpoint_sha256(const Checkpoint *ck, char hex[65], Error *err) {
    if (!ck->is_folder) return sha256_file_hex(ck->files[0].path, hex, err);
    Sha256 h;
    sha256_init(&h);
    const char *extra[2] = {ck->config_path, ck->index_path};
    for (int i = 0; i < 2 + ck->num_files; i++) {
        const char *path = i < 2 ? extra[i] : ck->files[i - 2].path;
        if (!path[0]) continue;
        char file_hex[65], line[CHECKPOINT_PATH_MAX + 80];
        if (sha256_file_hex(path, file_hex, err)) return -1;
        int len = snprintf(line, sizeof line, "%s %s\n", base_name(path), file_hex);
        sha256_update(&h, line, (size_t)len);
    }
    uint8_t digest[32];
    sha256_final(&h, digest);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    return 0;
}
