/* Wan-family checkpoints on disk: which files make up a model, what its config is, and its tensors under their
 * official Wan2.1 names (wan/modules/model.py). README "Running Wan2.1 / Model folders" is the user's view.
 *
 * Accepted paths:
 *   DIR with config.json and diffusion_pytorch_model.safetensors, or shards diffusion_pytorch_model-*.safetensors
 *       listed by diffusion_pytorch_model.safetensors.index.json ("weight_map": tensor -> shard): the official
 *       Wan-AI layout, and a diffusers transformer folder alike;
 *   DIR with transformer/ (the diffusers pipeline layout): the same inside transformer/;
 *   FILE.safetensors, e.g. ComfyUI's repackaged model: its config is config.json beside it when there is one, else
 *       the caller's preset (--model) or inferred from the tensor shapes (checkpoint_config);
 *   FILE.safetensors.index.json: that shard set.
 * Names: official names, the same with ComfyUI's "model.diffusion_model." prefix (when any tensor has it, only
 * those tensors are the transformer; the others, e.g. a VAE in the same file, are ignored), or diffusers names
 * (WanTransformer3DModel), mapped to the official ones as diffusers' scripts/convert_wan_to_diffusers.py renames
 * them, including the fused projections attn1.to_qkv and attn2.to_kv (split into equal row blocks).
 * Every error names the file and the problem. */
#ifndef CACHEBENCH_CHECKPOINT_H
#define CACHEBENCH_CHECKPOINT_H

#include <stddef.h>

#include "core/error.h"
#include "models/dit/config.h"
#include "models/safetensors.h"

#define CHECKPOINT_PATH_MAX 4096

typedef struct {
    char *name;                 /* official Wan2.1 name (owned) */
    const StTensor *tensor;     /* on disk, in one of the checkpoint's files */
    const char *file;           /* that file's path (owned by its StFile) */
    int part, parts;            /* row block `part` of `parts` (fused to_qkv / to_kv); 0 of 1 otherwise */
    int used;                   /* set by checkpoint_find */
} CheckpointTensor;

typedef struct {
    char path[CHECKPOINT_PATH_MAX];        /* as given */
    char layout[160];                      /* e.g. "official folder, 2 shards, official names" */
    StFile *files;
    int num_files;
    CheckpointTensor *tensors;             /* sorted by official name */
    int num_tensors;
    int is_folder;                         /* the digest covers config.json, the index and every shard */
    int has_config;                        /* config.json was read into config */
    DitConfig config;
    char config_path[CHECKPOINT_PATH_MAX]; /* "" when none */
    char index_path[CHECKPOINT_PATH_MAX];  /* "" unless sharded */
} Checkpoint;

/* Finds the files, reads config.json when present, opens (memory-maps and validates) every shard and builds the
 * official-name table. Fails on: a missing or malformed config.json in a folder, an unsupported model_type or
 * architecture option, an index naming a missing shard or disagreeing with the shards, a tensor in two shards,
 * an unknown diffusers name, two names giving one official tensor. */
int checkpoint_open(Checkpoint *ck, const char *path, Error *err);
void checkpoint_close(Checkpoint *ck);

/* The config to build. preset non-NULL (--model): config.json, when there is one, must agree on every
 * architecture field, else an error naming config.json, the field and both values; the preset is returned.
 * preset NULL: config.json's; without one, the tiny preset for a file holding token_embedding.weight, else a
 * Wan2.1 T2V config inferred from the tensor shapes with head width 128 (both released sizes). A config equal to
 * a preset's architecture takes the preset's name (TeaCache's built-in coefficients key on it). */
int checkpoint_config(const Checkpoint *ck, const DitConfig *preset, DitConfig *out, Error *err);

/* The tensor with this official name (marked used), or NULL. */
const CheckpointTensor *checkpoint_find(Checkpoint *ck, const char *name);
/* The tensor as it is to be read: a fused projection's row block becomes its own StTensor (name = on-disk name). */
void checkpoint_view(const CheckpointTensor *t, StTensor *view);
/* Every tensor was used by the model; else an error naming the first unused one and its file. */
int checkpoint_check_all_used(const Checkpoint *ck, const char *config_name, Error *err);

/* Identity of the weights: a single file's own SHA-256; for a folder the SHA-256 of the lines
 * "<file name> <sha256>\n" of config.json, the index (if any) and each shard in name order. */
int checkpoint_sha256(const Checkpoint *ck, char hex[65], Error *err);

#endif
