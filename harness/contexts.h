/* Prompt contexts for models without a word vocabulary (the Wan configs): the text-encoder output of each prompt,
 * read from a safetensors file instead of running umT5-XXL here (docs: wan.md §4, README "Prompt contexts").
 *
 * File: one tensor per prompt, keyed by its prompt id, plus the negative prompt's under CONTEXTS_NEGATIVE_KEY (or
 * another key the user names). Each is [n_tokens, text_dim] in F32, BF16 or F16 with 1 <= n_tokens <= text_len:
 * the encoder output trimmed to the prompt's token count, as wan/text2video.py passes it to the DiT. The DiT
 * (wan/modules/model.py) zero-pads every context to text_len rows; contexts_fill does the same.
 * scripts/make_contexts.py writes such files with the official encoder (or random ones for tests). */
#ifndef CACHEBENCH_CONTEXTS_H
#define CACHEBENCH_CONTEXTS_H

#include "core/error.h"
#include "models/safetensors.h"

#define CONTEXTS_NEGATIVE_KEY "__negative__"

typedef struct {
    StFile file;
    char sha256[65];
    int text_len, text_dim;
} PromptContexts;

/* Opens the file for a model with the given text_len and text_dim and hashes it. Errors name the file. */
int contexts_open(PromptContexts *c, const char *path, int text_len, int text_dim, Error *err);
void contexts_close(PromptContexts *c);

/* Checks the context under key: present, rank 2, F32/BF16/F16, width text_dim, 1..text_len rows, all finite.
 * what names the key in messages ("prompt id 'p3'", "negative prompt"). */
int contexts_check(const PromptContexts *c, const char *key, const char *what, Error *err);

/* Writes the context under key into text[text_len][text_dim], rows past its token count zero. Checks as above. */
int contexts_fill(const PromptContexts *c, const char *key, const char *what, float *text, Error *err);

/* Opens path and checks the contexts of every id and of negative_key, closing the file again: what run and sweep
 * do before any work. The first problem is reported, naming the file and the id. */
int contexts_check_all(const char *path, const char *const *ids, int n_ids, const char *negative_key, int text_len,
                       int text_dim, Error *err);

#endif
