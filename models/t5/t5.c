/* umT5 encoder (see t5.h). */
#include "models/t5/t5.h"

#include <cblas.h>
#include <dirent.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "models/kernels.h"

/* A BF16/F16 weight is converted T5_BLOCK_FLOATS at a time (16 MB of fp32: 1,024 rows of 4,096 or 409 of 10,240),
 * whole rows, at least T5_MIN_BLOCK_ROWS: large enough for sgemm to run near its peak on each block. */
#define T5_BLOCK_FLOATS ((size_t)1 << 22)
#define T5_MIN_BLOCK_ROWS 64

static int block_rows(int K) {
    size_t rows = T5_BLOCK_FLOATS / (size_t)K;
    return rows < T5_MIN_BLOCK_ROWS ? T5_MIN_BLOCK_ROWS : (int)rows;
}

int t5_relative_bucket(int rel, int num_buckets, int max_distance) {
    int half = num_buckets / 2, max_exact = half / 2;
    int bucket = rel > 0 ? half : 0;
    int a = rel < 0 ? -rel : rel;
    if (a < max_exact) return bucket + a;
    /* float32 throughout, truncated, as torch computes it (the boundaries at 16, 32, 64 land on exact values) */
    float scaled = logf((float)a / (float)max_exact) / (float)log((double)max_distance / max_exact) *
                   (float)(half - max_exact);
    int large = max_exact + (int)scaled;
    return bucket + (large < half - 1 ? large : half - 1);
}

/* Enough for every K' <= K: a block is at most T5_BLOCK_FLOATS, or T5_MIN_BLOCK_ROWS rows when rows are longer. */
size_t t5_matmul_scratch_floats(int K) {
    size_t min_block = (size_t)T5_MIN_BLOCK_ROWS * (size_t)K;
    return min_block > T5_BLOCK_FLOATS ? min_block : T5_BLOCK_FLOATS;
}

static void convert_rows(float *dst, const T5Matrix *w, int r0, int nr) {
    size_t count = (size_t)nr * w->cols, base = (size_t)r0 * w->cols;
    if (w->dtype == ST_BF16) {
        const uint16_t *src = (const uint16_t *)w->data + base;
#pragma omp parallel for schedule(static) if (count >= 65536)
        for (size_t i = 0; i < count; i++) {
            uint32_t bits = (uint32_t)src[i] << 16;
            memcpy(&dst[i], &bits, 4);
        }
    } else {
        const uint16_t *src = (const uint16_t *)w->data + base;
#pragma omp parallel for schedule(static) if (count >= 65536)
        for (size_t i = 0; i < count; i++) dst[i] = st_f16_to_f32(src[i]);
    }
}

void t5_matmul(float *out, const float *in, const T5Matrix *w, int M, float *scratch) {
    int N = w->rows, K = w->cols;
    if (w->dtype == ST_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, in, K, (const float *)w->data, K, 0.0f,
                    out, N);
        return;
    }
    int rows = block_rows(K);
    for (int r0 = 0; r0 < N; r0 += rows) {
        int nr = N - r0 < rows ? N - r0 : rows;
        convert_rows(scratch, w, r0, nr);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, nr, K, 1.0f, in, K, scratch, K, 0.0f, out + r0, N);
    }
}

/* ---- loading ---- */

static const StTensor *find_tensor(const T5Encoder *enc, const char *name, const StFile **file) {
    for (int i = 0; i < enc->num_files; i++) {
        const StTensor *t = st_find(&enc->files[i], name);
        if (t) {
            if (file) *file = &enc->files[i];
            return t;
        }
    }
    return NULL;
}

static const char *where(const T5Encoder *enc) { return enc->num_files == 1 ? enc->files[0].path : "the weights"; }

/* Finds name with the given shape (a dimension of -1 is taken from the tensor and returned through it). */
static const StTensor *require(const T5Encoder *enc, const char *name, int64_t *d0, int64_t *d1, int ndim,
                               Error *err) {
    const StFile *file = NULL;
    const StTensor *t = find_tensor(enc, name, &file);
    if (!t) {
        error_set(err, "%s: tensor '%s' is missing", where(enc), name);
        return NULL;
    }
    if (t->dtype == ST_OTHER) {
        error_set(err, "%s: tensor '%s' has dtype %s (expected F32, F16 or BF16)", file->path, name, t->dtype_name);
        return NULL;
    }
    int64_t want[2] = {*d0, d1 ? *d1 : 0};
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = want[i] < 0 ? t->shape[i] > 0 : t->shape[i] == want[i];
    if (!ok) {
        char got[128] = "", exp[128] = "";
        for (int i = 0; i < t->ndim; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        for (int i = 0; i < ndim; i++) {
            if (want[i] < 0) snprintf(exp + strlen(exp), sizeof exp - strlen(exp), "%s*", i ? ", " : "");
            else snprintf(exp + strlen(exp), sizeof exp - strlen(exp), "%s%lld", i ? ", " : "", (long long)want[i]);
        }
        error_set(err, "%s: tensor '%s' has shape [%s], expected [%s]", file->path, name, got, exp);
        return NULL;
    }
    *d0 = t->shape[0];
    if (d1) *d1 = t->shape[1];
    return t;
}

static int load_matrix(const T5Encoder *enc, const char *name, int64_t rows, int64_t cols, T5Matrix *m, Error *err) {
    const StTensor *t = require(enc, name, &rows, &cols, 2, err);
    if (!t) return -1;
    *m = (T5Matrix){t->dtype, t->data, (int)rows, (int)cols};
    return 0;
}

static int load_vector(const T5Encoder *enc, const char *name, int64_t len, float **out, Error *err) {
    const StTensor *t = require(enc, name, &len, NULL, 1, err);
    if (!t) return -1;
    *out = malloc((size_t)len * sizeof **out);
    if (!*out) return error_set(err, "out of memory loading '%s'", name);
    return st_to_f32(t, *out, err);
}

typedef struct {
    const char *embedding, *q, *k, *v, *o, *norm1, *norm2, *gate, *fc1, *fc2, *rel_bias, *final_norm;
} NameScheme;

static const NameScheme OFFICIAL_NAMES = {
    "token_embedding.weight",  "blocks.%d.attn.q.weight",     "blocks.%d.attn.k.weight",
    "blocks.%d.attn.v.weight", "blocks.%d.attn.o.weight",     "blocks.%d.norm1.weight",
    "blocks.%d.norm2.weight",  "blocks.%d.ffn.gate.0.weight", "blocks.%d.ffn.fc1.weight",
    "blocks.%d.ffn.fc2.weight", "blocks.%d.pos_embedding.embedding.weight", "norm.weight"};
static const NameScheme HF_NAMES = {
    "shared.weight",
    "encoder.block.%d.layer.0.SelfAttention.q.weight",
    "encoder.block.%d.layer.0.SelfAttention.k.weight",
    "encoder.block.%d.layer.0.SelfAttention.v.weight",
    "encoder.block.%d.layer.0.SelfAttention.o.weight",
    "encoder.block.%d.layer.0.layer_norm.weight",
    "encoder.block.%d.layer.1.layer_norm.weight",
    "encoder.block.%d.layer.1.DenseReluDense.wi_0.weight",
    "encoder.block.%d.layer.1.DenseReluDense.wi_1.weight",
    "encoder.block.%d.layer.1.DenseReluDense.wo.weight",
    "encoder.block.%d.layer.0.SelfAttention.relative_attention_bias.weight",
    "encoder.final_layer_norm.weight"};

static int open_files(T5Encoder *enc, const char *path, Error *err) {
    struct stat sb;
    if (stat(path, &sb) != 0) return error_set(err, "%s: no such file or folder", path);
    if (!S_ISDIR(sb.st_mode)) {
        enc->files = calloc(1, sizeof *enc->files);
        if (!enc->files) return error_set(err, "out of memory");
        if (st_open(&enc->files[0], path, err)) return -1;
        enc->num_files = 1;
        return 0;
    }
    struct dirent **names = NULL;
    int n = scandir(path, &names, NULL, alphasort), rc = 0;
    if (n < 0) return error_set(err, "%s: cannot list the folder", path);
    enc->files = calloc((size_t)n + 1, sizeof *enc->files);
    if (!enc->files) rc = error_set(err, "out of memory");
    for (int i = 0; i < n; i++) {
        size_t len = strlen(names[i]->d_name);
        if (rc == 0 && len > 12 && strcmp(names[i]->d_name + len - 12, ".safetensors") == 0) {
            char file[4096];
            snprintf(file, sizeof file, "%s/%s", path, names[i]->d_name);
            if (st_open(&enc->files[enc->num_files], file, err)) rc = -1;
            else enc->num_files++;
        }
        free(names[i]);
    }
    free(names);
    if (rc == 0 && enc->num_files == 0) rc = error_set(err, "%s: no .safetensors file in the folder", path);
    return rc;
}

int t5_encoder_open(T5Encoder *enc, const char *path, Error *err) {
    memset(enc, 0, sizeof *enc);
    if (open_files(enc, path, err)) goto fail;
    const NameScheme *names = NULL;
    const char *embedding_name = NULL;
    if (find_tensor(enc, OFFICIAL_NAMES.embedding, NULL)) {
        names = &OFFICIAL_NAMES, embedding_name = OFFICIAL_NAMES.embedding, enc->official_names = 1;
    } else if (find_tensor(enc, HF_NAMES.embedding, NULL)) {
        names = &HF_NAMES, embedding_name = HF_NAMES.embedding;
    } else if (find_tensor(enc, "encoder.embed_tokens.weight", NULL)) {
        names = &HF_NAMES, embedding_name = "encoder.embed_tokens.weight";
    } else {
        error_set(err, "%s: no umT5 token embedding (looked for 'token_embedding.weight', 'shared.weight', "
                       "'encoder.embed_tokens.weight')", path);
        goto fail;
    }
    T5Config *c = &enc->cfg;
    if (load_matrix(enc, embedding_name, -1, -1, &enc->embedding, err)) goto fail;
    c->vocab = enc->embedding.rows, c->dim = enc->embedding.cols;
    char name[256];
    for (;;) {
        snprintf(name, sizeof name, names->q, c->layers);
        if (!find_tensor(enc, name, NULL)) break;
        c->layers++;
    }
    if (c->layers == 0) {
        snprintf(name, sizeof name, names->q, 0);
        error_set(err, "%s: tensor '%s' is missing (no encoder block)", path, name);
        goto fail;
    }
    enc->layers = calloc((size_t)c->layers, sizeof *enc->layers);
    if (!enc->layers) {
        error_set(err, "out of memory");
        goto fail;
    }
    for (int l = 0; l < c->layers; l++) {
        T5Layer *L = &enc->layers[l];
        int64_t dim_attn = l ? c->dim_attn : -1, ffn = l ? c->dim_ffn : -1;
        int64_t buckets = l ? c->buckets : -1, heads = l ? c->heads : -1;
#define NAME(field) (snprintf(name, sizeof name, names->field, l), name)
        if (load_matrix(enc, NAME(q), dim_attn, c->dim, &L->q, err)) goto fail;
        c->dim_attn = L->q.rows;
        if (load_matrix(enc, NAME(k), c->dim_attn, c->dim, &L->k, err) ||
            load_matrix(enc, NAME(v), c->dim_attn, c->dim, &L->v, err) ||
            load_matrix(enc, NAME(o), c->dim, c->dim_attn, &L->o, err) ||
            load_matrix(enc, NAME(gate), ffn, c->dim, &L->gate, err))
            goto fail;
        c->dim_ffn = L->gate.rows;
        if (load_matrix(enc, NAME(fc1), c->dim_ffn, c->dim, &L->fc1, err) ||
            load_matrix(enc, NAME(fc2), c->dim, c->dim_ffn, &L->fc2, err) ||
            load_vector(enc, NAME(norm1), c->dim, &L->norm1, err) ||
            load_vector(enc, NAME(norm2), c->dim, &L->norm2, err))
            goto fail;
        const StTensor *t = require(enc, NAME(rel_bias), &buckets, &heads, 2, err);
        if (!t) goto fail;
        c->buckets = (int)buckets, c->heads = (int)heads;
        if (c->buckets < 4 || c->dim_attn % c->heads != 0) {
            const StFile *file = NULL;
            find_tensor(enc, name, &file);
            error_set(err, "%s: tensor '%s' has shape [%d, %d]: needs >= 4 buckets and heads dividing %d",
                      file->path, name, c->buckets, c->heads, c->dim_attn);
            goto fail;
        }
        L->rel_bias = malloc((size_t)c->buckets * c->heads * sizeof(float));
        if (!L->rel_bias) {
            error_set(err, "out of memory");
            goto fail;
        }
        if (st_to_f32(t, L->rel_bias, err)) goto fail;
#undef NAME
    }
    if (load_vector(enc, names->final_norm, c->dim, &enc->final_norm, err)) goto fail;
    return 0;
fail:
    t5_encoder_close(enc);
    return -1;
}

void t5_encoder_close(T5Encoder *enc) {
    if (enc->layers)
        for (int l = 0; l < enc->cfg.layers; l++) {
            free(enc->layers[l].norm1);
            free(enc->layers[l].norm2);
            free(enc->layers[l].rel_bias);
        }
    free(enc->layers);
    free(enc->final_norm);
    for (int i = 0; i < enc->num_files; i++) st_close(&enc->files[i]);
    free(enc->files);
    memset(enc, 0, sizeof *enc);
}

/* ---- forward ---- */

/* out[i] = softmax_j(q_i . k_j + bias[bucket(j - i)]) v, per head; q, k, v, out: [n][heads * hd]. */
static void self_attention(float *out, const float *q, const float *k, const float *v, const float *rel_bias,
                           const int *bucket_of_rel, int n, int heads, int hd, float *scores_all) {
    int stride = heads * hd;
#pragma omp parallel for schedule(dynamic, 1)
    for (int h = 0; h < heads; h++) {
        float *s = scores_all + (size_t)omp_get_thread_num() * n * n;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, hd, 1.0f, q + h * hd, stride, k + h * hd, stride,
                    0.0f, s, n);
        for (int i = 0; i < n; i++) {
            float *row = s + (size_t)i * n, mx = -INFINITY, sum = 0.0f;
            for (int j = 0; j < n; j++) {
                row[j] += rel_bias[bucket_of_rel[j - i + n - 1] * heads + h];
                mx = row[j] > mx ? row[j] : mx;
            }
            for (int j = 0; j < n; j++) sum += row[j] = expf(row[j] - mx);
            for (int j = 0; j < n; j++) row[j] /= sum;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, hd, n, 1.0f, s, n, v + h * hd, stride, 0.0f,
                    out + h * hd, stride);
    }
}

int t5_embed(const T5Encoder *enc, const int *ids, int n, float *out, Error *err) {
    const T5Config *c = &enc->cfg;
    if (n <= 0) return error_set(err, "no tokens to encode");
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab)
            return error_set(err, "token id %d at position %d is outside the vocabulary (%d entries): the tokenizer "
                                  "does not belong to these weights", ids[i], i, c->vocab);
    for (int i = 0; i < n; i++) {
        T5Matrix row = enc->embedding;
        row.rows = 1;
        size_t bytes = enc->embedding.dtype == ST_F32 ? 4 : 2;
        row.data = (const char *)enc->embedding.data + (size_t)ids[i] * c->dim * bytes;
        if (row.dtype == ST_F32) memcpy(out + (size_t)i * c->dim, row.data, (size_t)c->dim * sizeof(float));
        else convert_rows(out + (size_t)i * c->dim, &row, 0, 1);
    }
    return 0;
}

int t5_encode(const T5Encoder *enc, const int *ids, int n, float *out, Error *err) {
    const T5Config *c = &enc->cfg;
    if (t5_embed(enc, ids, n, out, err)) return -1;
    int widest = c->dim > c->dim_attn ? c->dim : c->dim_attn;
    widest = widest > c->dim_ffn ? widest : c->dim_ffn;
    size_t nd = (size_t)n * c->dim, na = (size_t)n * c->dim_attn, nf = (size_t)n * c->dim_ffn;
    int threads = omp_get_max_threads();
    float *h = malloc(nd * sizeof(float)), *q = malloc(na * sizeof(float)), *k = malloc(na * sizeof(float)),
          *v = malloc(na * sizeof(float)), *att = malloc(na * sizeof(float)), *g = malloc(nf * sizeof(float)),
          *f = malloc(nf * sizeof(float)), *y = malloc(nd * sizeof(float)),
          *scores = malloc((size_t)threads * n * n * sizeof(float)),
          *scratch = malloc(t5_matmul_scratch_floats(widest) * sizeof(float));
    int *bucket_of_rel = malloc((size_t)(2 * n - 1) * sizeof(int));
    int rc = 0;
    if (!h || !q || !k || !v || !att || !g || !f || !y || !scores || !scratch || !bucket_of_rel) {
        rc = error_set(err, "out of memory encoding %d tokens", n);
        goto done;
    }
    for (int r = -(n - 1); r <= n - 1; r++) bucket_of_rel[r + n - 1] = t5_relative_bucket(r, c->buckets, T5_MAX_DISTANCE);
    float *x = out;
    for (int l = 0; l < c->layers; l++) {
        const T5Layer *L = &enc->layers[l];
        rmsnorm(h, x, L->norm1, n, c->dim, T5_NORM_EPS);
        t5_matmul(q, h, &L->q, n, scratch);
        t5_matmul(k, h, &L->k, n, scratch);
        t5_matmul(v, h, &L->v, n, scratch);
        self_attention(att, q, k, v, L->rel_bias, bucket_of_rel, n, c->heads, c->dim_attn / c->heads, scores);
        t5_matmul(y, att, &L->o, n, scratch);
        for (size_t i = 0; i < nd; i++) x[i] += y[i];
        rmsnorm(h, x, L->norm2, n, c->dim, T5_NORM_EPS);
        t5_matmul(g, h, &L->gate, n, scratch);
        t5_matmul(f, h, &L->fc1, n, scratch);
        gelu_tanh(g, nf);
        for (size_t i = 0; i < nf; i++) g[i] *= f[i];
        t5_matmul(y, g, &L->fc2, n, scratch);
        for (size_t i = 0; i < nd; i++) x[i] += y[i];
    }
    rmsnorm(x, x, enc->final_norm, n, c->dim, T5_NORM_EPS);
done:
    free(h), free(q), free(k), free(v), free(att), free(g), free(f), free(y), free(scores), free(scratch);
    free(bucket_of_rel);
    return rc;
}
