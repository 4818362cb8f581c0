/* Prompt contexts from text with the umT5 encoder (models/t5/): what `encode` writes, and what `run`/`sweep
 * --text-encoder` encode once and cache.
 *
 * The contexts file (harness/contexts.h) holds one F32 [n_tokens, dim] tensor per prompt id, trimmed to the prompt's
 * tokens including </s>, and the negative prompt's under CONTEXTS_NEGATIVE_KEY. The cache file is
 * DIR/contexts-<key>.safetensors, key = the first 16 hex digits of a SHA-256 over the encoder files (path, size,
 * modification time of each .safetensors), the tokenizer (its SHA-256), every (id, text) and the negative text: a
 * changed prompt, encoder or tokenizer gives a new file, an unchanged set reuses the old one. The backend is not part
 * of the key: CPU and CUDA contexts agree to rounding (tests/test_t5.c holds them within 1e-4), so the cache keeps
 * whichever backend made the file first. */
#ifndef CACHEBENCH_TEXT_ENCODER_H
#define CACHEBENCH_TEXT_ENCODER_H

#include <stddef.h>

#include "core/error.h"

typedef struct {
    const char *encoder;        /* .safetensors file or folder of them */
    const char *tokenizer;      /* spiece.model or a folder holding it; NULL: looked up beside the encoder */
    const char *const *ids;     /* [n] prompt ids */
    const char *const *texts;   /* [n] prompt texts */
    int n;
    const char *negative;       /* NULL or "": Wan's default negative prompt, as wan/text2video.py does */
    const char *progress;       /* prefix of the per-prompt progress lines on stderr, e.g. "cachebench encode" */
    const char *backend;        /* "cpu" (also NULL) or "cuda": the encoder on the GPU (models/t5/t5_cuda.h) */
} TextEncodeJob;

/* Tokenizes and encodes every text and the negative; writes out_path atomically (.tmp, then rename). */
int text_encode_contexts(const TextEncodeJob *job, const char *out_path, Error *err);

/* The cache file of a job in dir (see above); does not create anything. */
int text_contexts_cache_path(const TextEncodeJob *job, const char *dir, char *out, size_t cap, Error *err);

/* The cache file of a job in dir, encoded first when it is not there yet (dir is created). */
int text_contexts_cached(const TextEncodeJob *job, const char *dir, char *out, size_t cap, Error *err);

#endif
