/* A C view of Debian's libsentencepiece (C++): load a SentencePiece model (spiece.model) and encode text to ids
 * with the model's own normalisation (the NFKC charsmap stored in the model) and Viterbi segmentation.
 * Implemented in spm_shim.cc; every C++ exception and status stays inside the shim and comes back as an Error. */
#ifndef CACHEBENCH_T5_SPM_SHIM_H
#define CACHEBENCH_T5_SPM_SHIM_H

#include "core/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct SpmModel SpmModel;

/* NULL on failure, with err naming the path and the library's reason. */
SpmModel *spm_model_load(const char *path, Error *err);
void spm_model_free(SpmModel *m);

/* Encodes UTF-8 text into at most cap ids, no BOS, no EOS. *n_total receives the full count (which may exceed
 * cap: the first cap ids are written). Returns 0, or -1 with err set. */
int spm_model_encode(const SpmModel *m, const char *text, int *ids, int cap, int *n_total, Error *err);

/* The special ids as stored in the model: -1 when the model has none. */
int spm_model_eos_id(const SpmModel *m);
int spm_model_pad_id(const SpmModel *m);
int spm_model_vocab_size(const SpmModel *m);

#ifdef __cplusplus
}
#endif

#endif
