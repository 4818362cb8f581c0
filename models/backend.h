/* The backend seam: everything the runner and the strategies need from a compute device.
 * CPU (models/backend_cpu.c) is the specification; CUDA implements the same table.
 * Buffers handed out by a backend live in its memory (host for CPU, device for CUDA); strategies touch
 * them only through VecOps, so their reductions run on the device with no full-tensor copies to the host. */
#ifndef CACHEBENCH_BACKEND_H
#define CACHEBENCH_BACKEND_H

#include <stddef.h>

#include "core/error.h"

#ifdef __cplusplus
extern "C" { /* usable from the CUDA engine (models/dit/engine_cuda.cu) */
#endif

/* Vector operations on backend memory. Reductions return host doubles (accumulated in double). */
typedef struct {
    void *ctx;
    float *(*alloc)(void *ctx, size_t n);            /* n floats, zero-filled; NULL on failure */
    void (*release)(void *ctx, float *p);
    double (*mean_abs)(void *ctx, const float *a, size_t n);
    double (*mean_abs_diff)(void *ctx, const float *a, const float *b, size_t n);
    void (*sub)(void *ctx, float *out, const float *a, const float *b, size_t n); /* out = a - b */
    void (*add)(void *ctx, float *out, const float *a, const float *b, size_t n); /* out = a + b */
    void (*copy)(void *ctx, float *dst, const float *src, size_t n);
    /* Classifier-free guidance: out = vu + g * (vc - vu) (out = vc when vu is NULL), rounded as written; returns how
     * many values of out are not finite. out may alias vc or vu. */
    size_t (*guide)(void *ctx, float *out, const float *vc, const float *vu, float g, size_t n);
    /* out = a * x + b * y, each product and the sum rounded separately (no fused multiply-add); out may alias x or y.
     * The solvers' update (harness/solvers/). */
    void (*axpby)(void *ctx, float *out, float a, const float *x, float b, const float *y, size_t n);
} VecOps;

/* The CPU implementation (plain host arrays, OpenMP). ctx is unused. */
const VecOps *cpu_vec_ops(void);

/* Per-layer attention plan. Dense unless an attention-level strategy (SVG) fills it. */
typedef enum { ATTN_DENSE = 0, ATTN_SPATIAL = 1, ATTN_TEMPORAL = 2 } AttnPattern;

typedef struct {
    int num_heads;
    AttnPattern *pattern;   /* [num_heads]; NULL = all dense */
    int band_tokens;        /* half-width of the sparse band, in tokens; <= 0: the backend derives it from sparsity */
    double flops_dense;     /* filled by the backend: attention FLOPs a dense layer would spend */
    double flops_done;      /* filled by the backend: attention FLOPs actually spent */
    /* Sparse VideoGen (models/sparse_attention.h). Set by the strategy at every attention_plan call: */
    double sparsity;        /* target fraction of masked (query, key) pairs, used when band_tokens <= 0 */
    int block;              /* SVG_BLOCK (models/svg_grid.h): the official band rounding and 128x128 blocks; 0: exact */
    int profile_rows;       /* > 0: classify every non-dense head now (spatial or temporal) from this many query rows */
    unsigned long long profile_seed; /* seed of those rows (svg_profile_row) */
    /* Filled by the backend for a sparse layer: */
    int frames, tokens_per_frame; /* token grid of the call, frame-major: L = frames * tokens_per_frame */
    int sink_tokens;        /* pattern positions [0, sink_tokens) (P) are always attended */
    float *density;         /* [num_heads] or NULL (owner: whoever allocated the plan): mask density of each head */
} AttentionPlan;

/* Per-layer module plan (interface v2, H2): what the engine does with each of a block's three modules. A module's
 * output is taken before its gate: self-attention after its output projection, cross-attention after its output
 * projection, the FFN after its second linear. The engine always applies this step's modulation (modulation + e0),
 * the gates and the residual adds, whatever the mode:
 *   x += y_sa * gate_msa;   x += y_ca;   x += y_ffn * gate_mlp.
 * COMPUTE: the engine runs the module; when out[m] is non-NULL it also copies y into it.
 * SUPPLY:  the engine does not run the module and reads y from out[m] (must be non-NULL).
 * Modules run in order, each on the tokens the previous one left, so supplying self-attention changes what
 * cross-attention and the FFN see (PAB). */
typedef enum { MODULE_SELF_ATTN = 0, MODULE_CROSS_ATTN = 1, MODULE_FFN = 2, MODULE_COUNT = 3 } BlockModule;
typedef enum { MODULE_COMPUTE = 0, MODULE_SUPPLY = 1 } ModuleMode;

typedef struct {
    ModuleMode mode[MODULE_COUNT];
    float *out[MODULE_COUNT];   /* [L][dim] backend memory owned by the strategy, or NULL */
} ModulePlan;

#ifdef __cplusplus
}
#endif

#endif
