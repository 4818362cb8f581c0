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
    const char *default_solver;     /* a solver of harness/solvers/ by name: Wan's own (unipc) for Wan configs */
} DitConfig;

/* Wan2.1's default negative prompt (wan/configs/shared_config.py, sample_neg_prompt): the uncond branch's text when
 * none is given, as wan/text2video.py does. Data of the Wan pipeline, kept beside the Wan configs. */
#define WAN_DEFAULT_NEGATIVE_PROMPT                                                                                       \
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，丑陋的，" \
    "残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，"  \
    "三条腿，背景人很多，倒着走"

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
