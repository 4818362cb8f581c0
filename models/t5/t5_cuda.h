/* The umT5 encoder of models/t5/t5.h on one GPU (CUDA builds only: models/t5/t5_cuda.cu), computing what t5_encode
 * computes, in fp32 activations: T5Cuda is opened once from an open T5Encoder (weights uploaded), then encodes any
 * number of prompts.
 *
 * Weights: every block matrix goes to the device as stored (BF16, F16 or F32; umT5-XXL in BF16 is ~9.3 GB), the norms
 * and relative position tables as fp32. A BF16/F16 matrix is widened to fp32 on the device into one scratch sized for
 * the largest matrix (XXL: 10,240 x 4,096 fp32, 168 MB) right before its product, and every product is a cuBLAS
 * SGEMM with fp32 inputs and accumulation (no TF32): the same numbers the CPU multiplies, so the two backends agree to
 * rounding (summation order). The token embedding (2.1 GB in XXL) stays on the host: the n rows a prompt needs are
 * gathered by t5_embed and uploaded. Activations: (3 dim + 4 dim_attn + 2 dim_ffn + heads n) n floats (XXL, 512
 * tokens: 168 MB). Attention per head as cuBLAS strided-batched GEMMs (scores [heads][n][n]), the relative bias added
 * in the softmax kernel.
 *
 * Errors: opening fails with "no CUDA device available: <reason>" when the runtime finds no GPU, "cannot load
 * cuBLAS: ..." when libcublas is missing, or names the allocation that did not fit; a failing kernel or cuBLAS call
 * names the step. */
#ifndef CACHEBENCH_T5_CUDA_H
#define CACHEBENCH_T5_CUDA_H

#include "core/error.h"
#include "models/t5/t5.h"

typedef struct T5Cuda T5Cuda;

/* enc is borrowed (its token embedding is read by every encode): it must outlive the device encoder. */
int t5_cuda_open(T5Cuda **out, const T5Encoder *enc, Error *err);
/* out[n][dim] (host memory) = t5_encode(enc, ids, n). */
int t5_cuda_encode(T5Cuda *dev, const int *ids, int n, float *out, Error *err);
void t5_cuda_close(T5Cuda *dev);

#endif
