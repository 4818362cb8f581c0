/* Model configurations are data: one table row per named config (models/dit/config.c).
 * Field names follow Wan2.1's WanModel constructor. */
#ifndef CACHEBENCH_CONFIG_H
#define CACHEBENCH_CONFIG_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" { /* usable from the CUDA engine (models/dit/engine_cuda.cu) */
#endif

/* What the network's head predicts. The model always returns the flow-matching velocity v = noise - x0 (for
 * x_t = (1 - sigma) x0 + sigma noise, sigma = timestep / 1000); with DIT_PREDICT_X0 the head's output is x0_hat and the
 * head stage returns v = (x_t - x0_hat) / max(sigma, sigma_min). Wan2.1 predicts v; the tiny pixel-space model
 * predicts x0 (training/tiny/TRAINING.md says why). */
typedef enum { DIT_PREDICT_VELOCITY = 0, DIT_PREDICT_X0 = 1 } DitPrediction;

#define DIT_CONFIG_NAME_MAX 64

typedef struct {
    char name[DIT_CONFIG_NAME_MAX]; /* a value, so a config read from a checkpoint's config.json carries its own */
    int in_dim, out_dim;            /* latent (or pixel) channels in and out */
    int patch_t, patch_h, patch_w;  /* Conv3d kernel = stride */
    int dim, ffn_dim, num_heads, num_layers;
    int freq_dim;                   /* sinusoidal timestep embedding width (256) */
    int text_dim, text_len;         /* text encoder width; context padded with zeros to text_len */
    int vocab_size;                 /* >0: the model embeds word tokens itself (token_embedding.weight) */
    float eps;                      /* LayerNorm / RMSNorm epsilon */
    float rope_theta;
    DitPrediction prediction;
    float sigma_min;                /* DIT_PREDICT_X0: the sigma clip of the conversion to v */
    /* Default run geometry (latent grid, channels-first [C][F][H][W]) and sampler. */
    int frames, height, width;
    int default_steps;
    float default_shift, default_guidance;
} DitConfig;

/* NULL when the name is unknown. */
const DitConfig *dit_config_by_name(const char *name);
/* The built-in config whose architecture (every field a checkpoint determines) equals c's; NULL if none. */
const DitConfig *dit_config_matching(const DitConfig *c);
/* 0 when a and b have the same architecture; else -1 with the first differing field's name in *field and both
 * values printed into a_val / b_val. */
int dit_config_compare(const DitConfig *a, const DitConfig *b, const char **field, char *a_val, char *b_val, size_t cap);
/* Comma-separated list of known names, for error messages. */
const char *dit_config_names(void);

#ifdef __cplusplus
}
#endif

#endif
