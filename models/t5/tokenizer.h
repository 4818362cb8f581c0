/* umT5 prompt tokenizer, as Wan2.1 runs it (wan/modules/tokenizers.py, HuggingfaceTokenizer with
 * clean='whitespace', seq_len 512, add_special_tokens): clean the text, SentencePiece-encode it, append </s> (no
 * BOS), keep at most text_len - 1 pieces so that </s> always survives, pad to text_len with the pad id and a mask.
 *
 * Cleaning (t5_clean_text) is our C version of ftfy.fix_text + html.unescape twice + whitespace collapse + strip,
 * reduced to what changes prompt text: see README "Prompt contexts from text" for the exact list and the gap. */
#ifndef CACHEBENCH_T5_TOKENIZER_H
#define CACHEBENCH_T5_TOKENIZER_H

#include "core/error.h"
#include "models/t5/spm_shim.h"

#define T5_TEXT_LEN 512

/* Where spiece.model is found for an encoder at `encoder` (a .safetensors file or a folder), when no tokenizer path
 * is given: the first existing of DIR/spiece.model, DIR/google/umt5-xxl/spiece.model, DIR/tokenizer/spiece.model,
 * DIR/../tokenizer/spiece.model (Diffusers: text_encoder/ beside tokenizer/), where DIR is the folder itself or the
 * file's folder. `explicit` (may be NULL) is a spiece.model file or a folder holding one. Fills out (cap bytes);
 * errors list the places looked at. */
int t5_find_tokenizer(const char *encoder, const char *explicit_path, char *out, size_t cap, Error *err);

/* Returns a malloc'd cleaned copy of UTF-8 text (NULL only when out of memory). Invalid UTF-8 bytes become U+FFFD
 * as Python's decoding with errors='replace' would. */
char *t5_clean_text(const char *text);

typedef struct {
    int ids[T5_TEXT_LEN];
    int mask[T5_TEXT_LEN];  /* 1 for the n_tokens real tokens, 0 for padding */
    int n_tokens;           /* including </s>: the length the context is trimmed to */
    int n_untruncated;      /* the count before truncation (pieces + </s>); > T5_TEXT_LEN means truncated */
} T5Tokens;

/* Cleans and tokenizes text. The model must have an </s> id. */
int t5_tokenize(const SpmModel *spm, const char *text, T5Tokens *out, Error *err);

#endif
