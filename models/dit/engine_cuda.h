/* The CUDA engine (models/dit/engine_cuda.cu): the Engine of models/dit/engine.h on one NVIDIA GPU (DESIGN §2 "Backends").
 *
 * Compiled only where nvcc is found (models/cuda.mk, which also defines CACHEBENCH_CUDA for every C file); callers
 * use these functions under #ifdef CACHEBENCH_CUDA. In such a build engine_create(…, "cuda", …) creates this engine
 * with the options of the environment (cuda_options_from_env).
 *
 * What runs where: weights are uploaded once at creation (GEMM matrices in the compute precision, every vector —
 * biases, norm weights, modulation — in fp32); activations live on the device for one geometry (prepare); GEMMs go
 * through cuBLAS (cublasGemmEx, FP32 accumulation), everything else through models/cuda_kernels.cu. The residual
 * stream, GEMM outputs and norm statistics are fp32 in both precisions; in bf16 mode the GEMM inputs (normalised
 * tokens, attention outputs, FFN hidden, text/time MLP inputs) and attention's q, k, v are stored in bf16.
 *
 * Precision (CACHEBENCH_CUDA_PRECISION):
 *   bf16 (default) BF16 storage of weights and GEMM/attention inputs, FP32 accumulation: within 2e-2 of the CPU.
 *   fp32           FP32 everywhere (cuBLAS in pedantic math: no TF32), for checking: within 1e-4 of the CPU.
 * Attention kernel (CACHEBENCH_CUDA_ATTENTION):
 *   simple (default) CUDA cores, FP32 math, any precision; head_dim a multiple of 4 up to 128.
 *   mma              bf16 tensor cores (mma.sync), bf16 only; head_dim 16, 32, 64 or 128. Several times faster;
 *                    opt-in until its parity test (tests/test_cuda.c) has passed on a GPU.
 * Sparse VideoGen plans (models/sparse_attention.h) run on the device with the contract of the CPU's svg_attention:
 * profiling and the block-sparse kernel (the simple kernel over the key sets of models/svg_grid.h, in either
 * precision); only the profiling's per-row sums of squares come back to the host, which classifies the heads.
 *
 * Libraries: the CUDA runtime is linked statically and cuBLAS (libcublas.so.<major of the build's CUDA>) is loaded
 * with dlopen when an engine is created, so a CUDA build starts, and runs on the CPU, on machines without CUDA
 * libraries or a GPU. Running on a GPU needs a driver for the build's CUDA major version (CUDA 13: driver >= 580).
 *
 * Errors: creation and prepare return them through Error. The stage functions of the Engine table return nothing,
 * so a CUDA failure inside them is remembered (engine_cuda_error) and made visible to the runner: euler_cfg then
 * reports every value as non-finite (the run is recorded as failed) and download fills its output with NaN. */
#ifndef CACHEBENCH_ENGINE_CUDA_H
#define CACHEBENCH_ENGINE_CUDA_H

#include <stddef.h>

#include "core/error.h"
#include "models/dit/dit.h"
#include "models/dit/engine.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { CUDA_PRECISION_BF16 = 0, CUDA_PRECISION_FP32 = 1 } CudaPrecision;
typedef enum { CUDA_ATTENTION_SIMPLE = 0, CUDA_ATTENTION_MMA = 1 } CudaAttention;

typedef struct {
    CudaPrecision precision;
    CudaAttention attention;
} CudaOptions;

typedef struct {
    char name[256];         /* cudaDeviceProp.name, e.g. "NVIDIA H100 80GB HBM3" */
    int major, minor;       /* compute capability */
    int sm_count;
    size_t total_bytes;     /* device memory */
} CudaDeviceInfo;

/* Defaults (bf16, simple) overridden by CACHEBENCH_CUDA_PRECISION=bf16|fp32 and CACHEBENCH_CUDA_ATTENTION=simple|mma;
 * any other value is an error naming the variable and the valid values. */
int cuda_options_from_env(CudaOptions *opt, Error *err);
const char *cuda_precision_name(CudaPrecision p);
const char *cuda_attention_name(CudaAttention a);

/* Device 0. Fails with "no CUDA device available: <reason>" when the runtime finds none (no driver, no GPU). */
int cuda_device_info(CudaDeviceInfo *info, Error *err);

/* The engine for model (borrowed; it must outlive the engine) on device 0. opt NULL means the defaults. Fails when
 * no device is available, the device is older than compute capability 8.0, the options do not fit the model's
 * head_dim, or the weights do not fit in device memory. */
int engine_create_cuda(Engine **out, const DitModel *model, const CudaOptions *opt, Error *err);

/* The first CUDA or cuBLAS failure inside a stage of this (CUDA) engine, or NULL when there was none. */
const char *engine_cuda_error(const Engine *e);
/* Device bytes the engine holds: weights (fixed at creation) and activations (of the prepared geometry). */
void engine_cuda_bytes(const Engine *e, size_t *weights, size_t *activations);

/* Device memory in use (all processes) and in total, from cudaMemGetInfo. */
int cuda_memory_used(size_t *used, size_t *total, Error *err);

/* Test hook: runs the engine's attention kernel for opt (fp32: simple on float; bf16: simple or mma on bf16 inputs
 * and output) on host arrays q [Lq][heads*hd], k, v [Lk][heads*hd]; out [Lq][heads*hd] receives the result as float. */
int cuda_attention_run(float *out, const float *q, const float *k, const float *v, int Lq, int Lk, int heads,
                       int head_dim, const CudaOptions *opt, Error *err);

/* Test hook: Sparse VideoGen attention (simple kernel, in opt's precision) with the contract of the CPU's svg_attention
 * (models/sparse_attention.h) on host arrays q, k, v, out [L][heads*hd], L = plan->frames * plan->tokens_per_frame:
 * profiles when plan->profile_rows > 0, and fills the plan (patterns, band, sink, densities, FLOPs) as the CPU does. */
int cuda_svg_attention_run(float *out, const float *q, const float *k, const float *v, int heads, int head_dim,
                           AttentionPlan *plan, const CudaOptions *opt, Error *err);

#ifdef __cplusplus
}
#endif

#endif
