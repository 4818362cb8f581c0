/* An engine runs the model's stages on one backend. The runner and strategies only see this table and
 * backend memory, so a CUDA engine plugs in with no change to them (DESIGN §2 "Backends").
 *
 * Ownership: engine_create_* returns an engine that borrows the model (the model must outlive it);
 * engine->destroy frees everything the engine allocated. */
#ifndef CACHEBENCH_ENGINE_H
#define CACHEBENCH_ENGINE_H

#include "core/error.h"
#include "models/backend.h"
#include "models/dit/dit.h"

#ifdef __cplusplus
extern "C" { /* usable from the CUDA engine (models/dit/engine_cuda.cu) */
#endif

typedef struct Engine Engine;
struct Engine {
    const char *backend;            /* "cpu" | "cuda" */
    char device[128];               /* human-readable device name */
    const VecOps *ops;              /* vector ops on this engine's memory */
    const DitModel *model;
    int L;                          /* tokens per call for the prepared geometry */
    void *impl;

    /* Allocates activations for a latent grid F x H x W. */
    int (*prepare)(Engine *e, int F, int H, int W, Error *err);
    /* Host <-> engine copies of n floats. */
    void (*upload)(Engine *e, float *dst, const float *src, size_t n);
    void (*download)(Engine *e, float *dst, const float *src, size_t n);
    /* x: engine memory [in_dim][F][H][W]; text: engine memory [text_len][text_dim]. */
    void (*embed)(Engine *e, const float *x, float timestep, const float *text);
    /* One block. plan: attention per head (NULL: dense); modules: each module computed or supplied (NULL: all
     * computed, nothing copied out). models/backend.h */
    void (*block)(Engine *e, int layer, AttentionPlan *plan, const ModulePlan *modules);
    void (*head)(Engine *e, float *out);
    /* Waits for queued device work (timing); NULL on synchronous backends. */
    void (*synchronize)(Engine *e);
    /* Stage tensors in engine memory, valid after prepare. */
    float *(*tokens)(Engine *e);
    const float *(*time_embedding)(Engine *e);
    const float *(*time_projection)(Engine *e);
    void (*destroy)(Engine *e);
};

int engine_create_cpu(Engine **out, const DitModel *model, Error *err);
/* Defined only in CUDA builds (models/dit/engine_cuda.cu); engine_create returns a clear error otherwise. */
int engine_create(Engine **out, const char *backend, const DitModel *model, Error *err);

#ifdef __cplusplus
}
#endif

#endif
