#include "harness/contexts.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/sha256.h"

int contexts_open(PromptContexts *c, const char *path, int text_len, int text_dim, Error *err) {
    memset(c, 0, sizeof *c);
    if (st_open(&c->file, path, err)) return error_prefix(err, "contexts");
    if (sha256_file_hex(path, c->sha256, err)) {
        st_close(&c->file);
        return -1;
    }
    c->text_len = text_len;
    c->text_dim = text_dim;
    return 0;
}

void contexts_close(PromptContexts *c) {
    st_close(&c->file);
    memset(c, 0, sizeof *c);
}

/* The checks that need no data: the tensor's presence, rank, dtype and shape. */
static const StTensor *find_checked(const PromptContexts *c, const char *key, const char *what, Error *err) {
    const char *path = c->file.path;
    const StTensor *t = st_find(&c->file, key);
    if (!t) {
        error_set(err, "%s: no context for %s (tensor '%s' is missing; scripts/make_contexts.py writes one per prompt "
                       "id and '%s' for the negative prompt)", path, what, key, CONTEXTS_NEGATIVE_KEY);
        return NULL;
    }
    if (t->dtype != ST_F32 && t->dtype != ST_BF16 && t->dtype != ST_F16) {
        error_set(err, "%s: context of %s has dtype %s (expected F32, BF16 or F16)", path, what, t->dtype_name);
        return NULL;
    }
    if (t->ndim != 2) {
        error_set(err, "%s: context of %s has rank %d (expected [n_tokens, %d])", path, what, t->ndim, c->text_dim);
        return NULL;
    }
    if (t->shape[1] != c->text_dim) {
        error_set(err, "%s: context of %s is %lld wide, the model's text_dim is %d", path, what,
                  (long long)t->shape[1], c->text_dim);
        return NULL;
    }
    if (t->shape[0] < 1 || t->shape[0] > c->text_len) {
        error_set(err, "%s: context of %s has %lld tokens (expected 1 to text_len = %d)", path, what,
                  (long long)t->shape[0], c->text_len);
        return NULL;
    }
    return t;
}

int contexts_fill(const PromptContexts *c, const char *key, const char *what, float *text, Error *err) {
    const StTensor *t = find_checked(c, key, what, err);
    if (!t) return -1;
    size_t n = (size_t)t->shape[0] * (size_t)c->text_dim;
    if (st_to_f32(t, text, err)) return error_prefix(err, "%s", c->file.path);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(text[i]))
            return error_set(err, "%s: context of %s has a non-finite value at token %zu, channel %zu", c->file.path,
                             what, i / (size_t)c->text_dim, i % (size_t)c->text_dim);
    memset(text + n, 0, ((size_t)c->text_len * c->text_dim - n) * sizeof *text);
    return 0;
}

int contexts_check(const PromptContexts *c, const char *key, const char *what, Error *err) {
    float *text = malloc((size_t)c->text_len * c->text_dim * sizeof *text);
    if (!text) return error_set(err, "out of memory");
    int rc = contexts_fill(c, key, what, text, err);
    free(text);
    return rc;
}

int contexts_check_all(const char *path, const char *const *ids, int n_ids, const char *negative_key, int text_len,
                       int text_dim, Error *err) {
    PromptContexts c;
    if (contexts_open(&c, path, text_len, text_dim, err)) return -1;
    int rc = 0;
    char what[128];
    for (int i = 0; i < n_ids && !rc; i++) {
        snprintf(what, sizeof what, "prompt id '%.64s'", ids[i]);
        rc = contexts_check(&c, ids[i], what, err);
    }
    if (!rc) {
        snprintf(what, sizeof what, "the negative prompt (key '%.64s')", negative_key);
        rc = contexts_check(&c, negative_key, what, err);
    }
    contexts_close(&c);
    return rc;
}
