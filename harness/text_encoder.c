#include "harness/text_encoder.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/sha256.h"
#include "harness/contexts.h"
#include "harness/sweep.h" /* sweep_make_dirs */
#include "models/dit/config.h"
#include "models/safetensors.h"
#include "models/t5/t5.h"
#ifdef CACHEBENCH_CUDA
#include "models/t5/t5_cuda.h"
#endif
#include "models/t5/tokenizer.h"

static const char *negative_text(const TextEncodeJob *job) {
    return job->negative && job->negative[0] ? job->negative : WAN_DEFAULT_NEGATIVE_PROMPT;
}

/* The encoder of a job: the host weights, and their device copy when the job runs on CUDA. */
typedef struct {
    T5Encoder host;
    struct T5Cuda *device;  /* models/t5/t5_cuda.h, CUDA builds only; NULL: the CPU encodes */
} Encoders;

static int is_cuda(const TextEncodeJob *job) { return job->backend && strcmp(job->backend, "cuda") == 0; }

static int check_backend(const TextEncodeJob *job, Error *err) {
    if (job->backend && strcmp(job->backend, "cpu") && strcmp(job->backend, "cuda"))
        return error_set(err, "unknown backend '%s' for the umT5 encoder (valid: cpu, cuda)", job->backend);
#ifndef CACHEBENCH_CUDA
    if (is_cuda(job))
        return error_set(err, "umT5 encoder on cuda: this build has no CUDA backend (nvcc was not found at build "
                              "time, or CUDA=0)");
#endif
    return 0;
}

static int encoders_open(Encoders *e, const TextEncodeJob *job, Error *err) {
    if (t5_encoder_open(&e->host, job->encoder, err)) return -1;
#ifdef CACHEBENCH_CUDA
    if (is_cuda(job) && t5_cuda_open(&e->device, &e->host, err))
        return error_prefix(err, "umT5 encoder on cuda");
#endif
    return 0;
}

static void encoders_close(Encoders *e) {
#ifdef CACHEBENCH_CUDA
    t5_cuda_close(e->device);
#endif
    if (e->host.files) t5_encoder_close(&e->host);
}

static int encoders_run(const Encoders *e, const int *ids, int n, float *out, Error *err) {
#ifdef CACHEBENCH_CUDA
    if (e->device) return t5_cuda_encode(e->device, ids, n, out, err);
#endif
    return t5_encode(&e->host, ids, n, out, err);
}

/* Tokenizes and encodes one text into a malloc'd [n_tokens][dim] context. */
static int encode_one(const SpmModel *spm, const Encoders *encoders, const TextEncodeJob *job, const char *label,
                      const char *text, int index, int total, float **ctx, int *n_tokens, Error *err) {
    const T5Encoder *enc = &encoders->host;
    T5Tokens tok;
    if (t5_tokenize(spm, text, &tok, err)) return error_prefix(err, "%s", label);
    *ctx = malloc((size_t)tok.n_tokens * enc->cfg.dim * sizeof(float));
    if (!*ctx) return error_set(err, "%s: out of memory", label);
    double t0 = clock_seconds();
    if (encoders_run(encoders, tok.ids, tok.n_tokens, *ctx, err)) return error_prefix(err, "%s", label);
    *n_tokens = tok.n_tokens;
    fprintf(stderr, "%s: [%d/%d] %s: %d tokens", job->progress, index, total, label, tok.n_tokens);
    if (tok.n_untruncated > T5_TEXT_LEN)
        fprintf(stderr, " (truncated from %d to %d as Wan does)", tok.n_untruncated, T5_TEXT_LEN);
    fprintf(stderr, ", %.1f s\n", clock_seconds() - t0);
    return 0;
}

int text_encode_contexts(const TextEncodeJob *job, const char *out_path, Error *err) {
    for (int i = 0; i < job->n; i++)
        if (strcmp(job->ids[i], CONTEXTS_NEGATIVE_KEY) == 0)
            return error_set(err, "the prompt id '%s' is reserved for the negative prompt", CONTEXTS_NEGATIVE_KEY);
    if (check_backend(job, err)) return -1;
    Encoders encoders = {0};
    const T5Encoder *enc = &encoders.host;
    SpmModel *spm = NULL;
    StWriteTensor *tensors = NULL;
    int count = 0, rc = -1;
    char spm_path[4096];
    if (t5_find_tokenizer(job->encoder, job->tokenizer, spm_path, sizeof spm_path, err)) goto done;
    if (!(spm = spm_model_load(spm_path, err))) goto done;
    if (encoders_open(&encoders, job, err)) goto done;
    fprintf(stderr, "%s: umT5 encoder %d layers, dim %d, %d heads, ffn %d, vocab %d, on %s; tokenizer %s\n",
            job->progress, enc->cfg.layers, enc->cfg.dim, enc->cfg.heads, enc->cfg.dim_ffn, enc->cfg.vocab,
            is_cuda(job) ? "cuda" : "cpu", spm_path);
    tensors = calloc((size_t)job->n + 1, sizeof *tensors);
    if (!tensors) {
        error_set(err, "out of memory");
        goto done;
    }
    for (int i = 0; i <= job->n; i++) {
        const int is_negative = i == job->n;
        const char *label = is_negative ? CONTEXTS_NEGATIVE_KEY : job->ids[i];
        const char *text = is_negative ? negative_text(job) : job->texts[i];
        float *ctx = NULL;
        int n = 0;
        int failed = encode_one(spm, &encoders, job, label, text, i + 1, job->n + 1, &ctx, &n, err);
        tensors[count++] = (StWriteTensor){label, ST_F32, 2, {n, enc->cfg.dim}, ctx};
        if (failed) goto done;
    }
    rc = st_write(out_path, tensors, count, err);
done:
    for (int i = 0; i < count; i++) free((void *)tensors[i].data);
    free(tensors);
    if (spm) spm_model_free(spm);
    encoders_close(&encoders);
    return rc;
}

/* Hashes what identifies a file without reading it: its path, size and modification time. */
static void hash_stat(Sha256 *h, const char *path, const struct stat *st) {
    char line[4200];
    int n = snprintf(line, sizeof line, "%s\t%lld\t%lld.%09ld\n", path, (long long)st->st_size,
                     (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
    sha256_update(h, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static int compare_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The encoder's .safetensors files (the path itself when it is a file), in name order. */
static int hash_encoder(Sha256 *h, const char *encoder, Error *err) {
    struct stat st;
    if (stat(encoder, &st) != 0) return error_set(err, "%s: no such text encoder file or folder", encoder);
    if (!S_ISDIR(st.st_mode)) {
        hash_stat(h, encoder, &st);
        return 0;
    }
    DIR *d = opendir(encoder);
    if (!d) return error_set(err, "%s: cannot read the folder", encoder);
    char **names = NULL;
    int n = 0, cap = 0, rc = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len < 12 || strcmp(e->d_name + len - 12, ".safetensors")) continue;
        if (n == cap) {
            char **grown = realloc(names, (size_t)(cap = cap ? 2 * cap : 16) * sizeof *names);
            if (!grown) {
                rc = error_set(err, "out of memory");
                break;
            }
            names = grown;
        }
        if (!(names[n] = strdup(e->d_name))) {
            rc = error_set(err, "out of memory");
            break;
        }
        n++;
    }
    closedir(d);
    if (rc == 0) qsort(names, (size_t)n, sizeof *names, compare_names);
    for (int i = 0; i < n && rc == 0; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", encoder, names[i]);
        if (stat(path, &st) != 0) rc = error_set(err, "%s: cannot stat", path);
        else hash_stat(h, path, &st);
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}

int text_contexts_cache_path(const TextEncodeJob *job, const char *dir, char *out, size_t cap, Error *err) {
    Sha256 h;
    sha256_init(&h);
    static const char tag[] = "cachebench umT5 contexts v1\n";
    sha256_update(&h, tag, sizeof tag - 1);
    if (hash_encoder(&h, job->encoder, err)) return -1;
    char spm_path[4096], spm_hex[65];
    if (t5_find_tokenizer(job->encoder, job->tokenizer, spm_path, sizeof spm_path, err) ||
        sha256_file_hex(spm_path, spm_hex, err))
        return -1;
    sha256_update(&h, spm_hex, 64);
    for (int i = 0; i <= job->n; i++) { /* NUL-separated, so that no two lists hash alike */
        const char *id = i < job->n ? job->ids[i] : CONTEXTS_NEGATIVE_KEY;
        const char *text = i < job->n ? job->texts[i] : negative_text(job);
        sha256_update(&h, id, strlen(id) + 1);
        sha256_update(&h, text, strlen(text) + 1);
    }
    uint8_t digest[32];
    sha256_final(&h, digest);
    char key[17];
    for (int i = 0; i < 8; i++) snprintf(key + 2 * i, 3, "%02x", digest[i]);
    if ((size_t)snprintf(out, cap, "%s/contexts-%s.safetensors", dir, key) >= cap)
        return error_set(err, "path too long: %s", dir);
    return 0;
}

int text_contexts_cached(const TextEncodeJob *job, const char *dir, char *out, size_t cap, Error *err) {
    if (text_contexts_cache_path(job, dir, out, cap, err)) return -1;
    if (access(out, R_OK) == 0) {
        fprintf(stderr, "%s: prompt contexts from the cache %s\n", job->progress, out);
        return 0;
    }
    if (sweep_make_dirs(dir, err)) return -1;
    return text_encode_contexts(job, out, err);
}
