/* The VAE decoder on one NVIDIA GPU (models/vae/vae_cuda.cu): the backend of models/vae/vae_backend.h in FP32.
 *
 * Compiled only in CUDA builds (models/cuda.mk defines CACHEBENCH_CUDA for every C file); callers use it under
 * #ifdef CACHEBENCH_CUDA. The weights are uploaded once per decoder (FP32, ~280 MiB for Wan2.1), every buffer of
 * the streaming state lives on the device, convolutions are im2col kernels + cublasSgemm (cuBLAS is dlopen'ed like
 * the DiT engine's), the per-frame attention is three GEMMs around a row softmax. Only each decoded RGB frame comes
 * back to the host. Errors (no device, cuBLAS missing, a failed kernel) are returned with the step named. */
#ifndef CACHEBENCH_VAE_CUDA_H
#define CACHEBENCH_VAE_CUDA_H

#include "core/error.h"
#include "models/vae/vae.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Like vae_decoder_new, on the GPU; "no CUDA device available: ..." when there is none. */
int vae_decoder_new_cuda(VaeDecoder **d, const VaeModel *m, int H, int W, Error *err);

#ifdef __cplusplus
}
#endif

#endif
