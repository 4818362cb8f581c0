/* The Wan2.1-style video DiT on the CPU in fp32 (DESIGN §2): weights, staged forward, FLOP counts.
 *
 * Ownership: dit_load fills a DitModel whose weights live in one arena (F32 tensors point straight into the
 * memory-mapped file; F16/BF16 are converted into the arena); dit_free releases both. A DitState holds the
 * activations of one model call for one geometry; dit_state_init allocates them, dit_state_free releases them.
 *
 * Stages (so strategies can act between them):
 *   dit_embed : x [in_dim][F][H][W], timestep, text [text_len][text_dim] -> tokens [L][dim], e [dim], e0 [6][dim],
 *               context [text_len][dim]
 *   dit_block : tokens -> tokens (layer i), attention per an optional plan, each module computed or supplied per an
 *               optional module plan (models/backend.h ModulePlan)
 *   dit_head  : tokens, e -> out [out_dim][F][H][W]
 */
#ifndef CACHEBENCH_DIT_H
#define CACHEBENCH_DIT_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "models/backend.h"
#include "models/dit/config.h"

#ifdef __cplusplus
extern "C" { /* usable from the CUDA engine (models/dit/engine_cuda.cu) */
#endif

typedef struct {
    const float *modulation;                 /* [6][dim] */
    const float *sa_q_w, *sa_q_b, *sa_k_w, *sa_k_b, *sa_v_w, *sa_v_b, *sa_o_w, *sa_o_b;
    const float *sa_norm_q, *sa_norm_k;      /* [dim] */
    const float *norm3_w, *norm3_b;          /* [dim] */
    const float *ca_q_w, *ca_q_b, *ca_k_w, *ca_k_b, *ca_v_w, *ca_v_b, *ca_o_w, *ca_o_b;
    const float *ca_norm_q, *ca_norm_k;
    const float *ffn1_w, *ffn1_b, *ffn2_w, *ffn2_b;
} DitBlockWeights;

typedef struct {
    const float *token_embedding;            /* [vocab][text_dim], only when cfg.vocab_size > 0 */
    const float *patch_w, *patch_b;          /* [dim][in_dim*pt*ph*pw], [dim] */
    const float *text1_w, *text1_b, *text2_w, *text2_b;
    const float *time1_w, *time1_b, *time2_w, *time2_b;
    const float *proj_w, *proj_b;            /* [6*dim][dim], [6*dim] */
    DitBlockWeights *blocks;                 /* [num_layers] */
    const float *head_modulation;            /* [2][dim] */
    const float *head_w, *head_b;            /* [out_dim*pt*ph*pw][dim] */
} DitWeights;

typedef struct {
    DitConfig cfg;
    DitWeights w;
    char weights_path[1024];
    char weights_sha256[65];
    char weights_layout[160];    /* how the checkpoint was read, e.g. "folder, 2 shards, official names" */
    /* owned */
    void *file;                  /* Checkpoint* (models/dit/checkpoint.h; F32 weights point into its mappings); NULL if random */
    float *arena;
    size_t arena_floats;
    DitBlockWeights *block_storage;
} DitModel;

/* Loads and validates a checkpoint: a safetensors file or a model folder (official, sharded, diffusers, ComfyUI:
 * models/dit/checkpoint.h). The config is preset when non-NULL (a config.json must agree with it), else the
 * checkpoint's own (config.json, or inferred from a single file's shapes). Every tensor the config needs must be
 * present with the exact shape, dtype F32/F16/BF16, and finite values, and every tensor must be used. F32 tensors
 * stay in the memory-mapped files; F16/BF16 are converted once into the arena and their file pages released.
 * Errors name the file and the tensor. */
int dit_load(DitModel *m, const DitConfig *preset, const char *path, Error *err);
/* Random weights with Wan-like scales (Philox keyed by seed), for tests and benchmarks without a checkpoint. */
int dit_init_random(DitModel *m, const DitConfig *cfg, uint64_t seed, Error *err);
void dit_free(DitModel *m);

/* Calls fn once per tensor the config needs, with its checkpoint name, shape and the weight slot to fill. */
typedef int (*DitTensorFn)(void *user, const char *name, int ndim, const int64_t *shape, const float **slot);
int dit_for_each_tensor(DitModel *m, DitTensorFn fn, void *user);

typedef struct {
    int F, H, W;                 /* input grid (latent or pixel) */
    int tf, th, tw, L;           /* token grid */
    float *tokens;               /* [L][dim] block-stack state */
    float *e, *e0;               /* [dim], [6][dim] */
    float *context;              /* [text_len][dim] */
    /* scratch */
    float *patches;              /* [L][in_dim*pt*ph*pw] / head output [L][out_dim*pt*ph*pw] */
    float *norm, *q, *k, *v, *attn, *proj, *hidden;
    float *ctx_k, *ctx_v, *text_hidden;
    float *mod;                  /* [6][dim] */
    float *rope_cos, *rope_sin;  /* [L][head_dim/2] */
    float *att_scratch;
    const float *x_in;           /* the input of the last embed, borrowed (DIT_PREDICT_X0: head converts with it) */
    float sigma;                 /* dit_x0_sigma of its timestep */
    size_t att_scratch_floats;
} DitState;

/* cfg.prediction is usable: x0 prediction needs in_dim == out_dim and sigma_min > 0. */
int dit_check_prediction(const DitConfig *cfg, Error *err);
/* The sigma an x0-predicting head divides by at this timestep: max(timestep / 1000, sigma_min). */
float dit_x0_sigma(const DitConfig *cfg, float timestep);

int dit_state_init(DitState *s, const DitConfig *cfg, int F, int H, int W, Error *err);
void dit_state_free(DitState *s);

void dit_embed(const DitModel *m, DitState *s, const float *x, float timestep, const float *text);
void dit_block(const DitModel *m, DitState *s, int layer, AttentionPlan *plan, const ModulePlan *modules);
void dit_head(const DitModel *m, DitState *s, float *out);
/* embed + every block (dense) + head. */
void dit_forward(const DitModel *m, DitState *s, const float *x, float timestep, const float *text, float *out);

/* FLOPs (2 per multiply-add) of the matrix work of each stage; elementwise work is not counted. */
double dit_flops_embed(const DitConfig *cfg, int L);
double dit_flops_block(const DitConfig *cfg, int L);
/* One module of a block (the three sum to dit_flops_block). */
double dit_flops_module(const DitConfig *cfg, int L, BlockModule module);
double dit_flops_head(const DitConfig *cfg, int L);
double dit_flops_forward(const DitConfig *cfg, int L);
/* Attention-only part of one block's self-attention: 4·L²·dim. */
double dit_flops_self_attention(const DitConfig *cfg, int L);

/* Prompt words -> text conditioning [text_len][text_dim] through token_embedding (models with a vocabulary).
 * An empty prompt gives all zeros (the unconditional branch). vocab: words[vocab_size], e.g. from dit_read_vocab. */
int dit_encode_prompt(const DitModel *m, char **vocab, int vocab_size, const char *prompt, float *text, Error *err);
/* Reads a vocabulary file (one word per line); *words is allocated, free with dit_free_vocab. */
int dit_read_vocab(const char *path, char ***words, int *count, Error *err);
void dit_free_vocab(char **words, int count);

#ifdef __cplusplus
}
#endif

#endif
