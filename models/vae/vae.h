/* The Wan2.1 video VAE decoder on the CPU in fp32 (wan/modules/vae.py `WanVAE.decode`; docs wan.md §5 and §7).
 *
 * Latents [z_dim][F][H][W] -> RGB video [3][T][8H][8W] in [-1, 1], T = 1 + 2^k (F - 1) with k temporal upsamplers
 * (Wan2.1: k = 2, T = 1 + 4 (F - 1)).
 *
 * Streaming: the decoder pushes one frame at a time through the network. Every causal 3-tap convolution keeps the
 * last two frames of its input (the official feat_cache), each temporal upsampler lets the first frame it sees pass
 * without its time_conv (the official 'Rep' marker) and turns every later frame into two. The official decode
 * feeds one latent frame per chunk; with causal convolutions both give the same video (tests/vae_reference.py
 * checks the official chunking against this one). Memory is the weights, two cached frames per causal conv and a
 * few frame buffers: it does not depend on F.
 *
 * Convolutions are im2col over a bounded tile of output rows + cblas_sgemm; attention uses models/kernels.h. */
#ifndef CACHEBENCH_VAE_H
#define CACHEBENCH_VAE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "models/safetensors.h"

#ifdef __cplusplus
extern "C" { /* usable from the CUDA decoder (models/vae/vae_cuda.cu) */
#endif

#define VAE_MAX_STAGES 4
#define VAE_Z_DIM 16 /* the Wan2.1 latent: the only one whose de-normalisation constants are published */

typedef struct {
    int z_dim;                                  /* must be VAE_Z_DIM */
    int dim;                                    /* base width (Wan2.1: 96) */
    int num_stages;                             /* len(dim_mult), 1..VAE_MAX_STAGES */
    int dim_mult[VAE_MAX_STAGES];               /* Wan2.1: 1 2 4 4 */
    int num_res_blocks;                         /* Wan2.1: 2 (each up-stage has num_res_blocks + 1) */
    int temporal_upsample[VAE_MAX_STAGES - 1];  /* per up-stage i < num_stages - 1; Wan2.1: 1 1 0 */
} VaeConfig;

/* The published Wan2.1 VAE (Wan2.1_VAE.pth). */
VaeConfig vae_config_wan21(void);
/* Checks the ranges above; the message names what is wrong. */
int vae_config_check(const VaeConfig *c, Error *err);

/* One convolution. Weights are re-laid out at load as [cout][kt][cin][ks][ks] (PyTorch: [cout][cin][kt][ks][ks]),
 * so that the taps of leading zero frames are a column block the GEMM can skip. */
typedef struct {
    int cin, cout, kt, ks;
    const float *w, *b;
} VaeConv;

typedef enum { VAE_BLOCK_RESIDUAL, VAE_BLOCK_ATTENTION, VAE_BLOCK_UPSAMPLE2D, VAE_BLOCK_UPSAMPLE3D } VaeBlockKind;

typedef struct {
    VaeBlockKind kind;
    int cin, cout;
    int level;            /* spatial scale of its input: (H << level) x (W << level) */
    char name[48];        /* checkpoint prefix, e.g. "decoder.upsamples.4" */
    /* residual: gamma1, conv1 (3x3x3), gamma2, conv2 (3x3x3), shortcut (1x1x1, when cin != cout) */
    const float *gamma1, *gamma2;
    VaeConv conv1, conv2, shortcut;
    int has_shortcut;
    /* attention: gamma1 = norm.gamma, conv1 = to_qkv (1x1, 3C), conv2 = proj (1x1) */
    /* upsample: conv1 = resample.1 (3x3 2-D, cin -> cin/2), conv2 = time_conv (3x1x1, cin -> 2 cin; 3-D only) */
} VaeBlock;

typedef struct {
    VaeConfig cfg;
    VaeConv conv2;             /* top-level 1x1x1 z_dim -> z_dim */
    VaeConv conv_in;           /* decoder.conv1: causal 3x3x3 z_dim -> dims[0] */
    VaeBlock *blocks;          /* middle (3) then the up-stages, in order */
    int num_blocks;
    const float *head_gamma;   /* decoder.head.0.gamma */
    VaeConv head;              /* decoder.head.2: causal 3x3x3 -> 3 */
    float *arena;              /* owned: every weight, float32 */
    size_t arena_floats;
    char weights_path[1024];
} VaeModel;

/* Reads the config from the tensor shapes of a checkpoint (official names, e.g. Wan2.1_VAE converted by
 * scripts/convert_wan_vae.py), then loads it like vae_load. */
int vae_load_auto(VaeModel *m, const char *path, Error *err);
/* Loads a safetensors checkpoint with the official key names (`decoder.*`, `conv2.*`; `encoder.*` and the
 * top-level `conv1.*` are ignored): every tensor the config needs must be present with the exact shape, dtype
 * F32/F16/BF16 and finite values. Errors name the file and the tensor. */
int vae_load(VaeModel *m, const VaeConfig *cfg, const char *path, Error *err);
/* Seeded random weights (Philox), scaled so that activations stay O(1) and the output is mostly inside [-1, 1]. */
int vae_init_random(VaeModel *m, const VaeConfig *cfg, uint64_t seed, Error *err);
/* Writes the same random weights as vae_init_random as a checkpoint with the official names and layouts, stored
 * as dtype (ST_F32, ST_F16 or ST_BF16). */
int vae_write_random(const char *path, const VaeConfig *cfg, uint64_t seed, StDtype dtype, Error *err);
void vae_free(VaeModel *m);

/* Parameters of the decoder of cfg (what vae_load reads), 0 for an invalid config. */
size_t vae_num_params(const VaeConfig *cfg);
/* The spatial upsampling of the decoder: video frames are (scale H) x (scale W) for latents of H x W (Wan2.1: 8). */
int vae_spatial_scale(const VaeConfig *cfg);
/* Frames the decoder gives for F latent frames. */
int vae_num_frames(const VaeConfig *cfg, int F);
/* Nominal FLOPs (2 per multiply-add, every causal tap counted, as PyTorch computes them) of decoding F latent
 * frames of H x W; elementwise work is not counted. */
double vae_flops_decode(const VaeConfig *cfg, int F, int H, int W);

/* Called once per decoded frame, in order: rgb is [3][height][width], clamped to [-1, 1], valid during the call.
 * A non-zero return stops the decode (the callback fills err). */
typedef int (*VaeFrameFn)(void *user, int t, const float *rgb, int height, int width, Error *err);

/* The streaming state for one latent size: caches and buffers. */
typedef struct VaeDecoder VaeDecoder;
int vae_decoder_new(VaeDecoder **d, const VaeModel *m, int H, int W, Error *err);
/* The same on a backend by name: "cpu" (vae_decoder_new) or "cuda" (vae_decoder_new_cuda, models/vae/vae_cuda.h;
 * an error naming the missing CUDA in a build without it). */
int vae_decoder_new_on(VaeDecoder **d, const VaeModel *m, int H, int W, const char *backend, Error *err);
/* Decodes the next latent frame z [z_dim][H][W] (as the DiT produced it, before de-normalisation). */
int vae_decoder_push(VaeDecoder *d, const float *z, VaeFrameFn fn, void *user, Error *err);
/* Bytes the decoder holds (caches, buffers, scratch), not counting the weights. */
size_t vae_decoder_bytes(const VaeDecoder *d);
void vae_decoder_free(VaeDecoder *d);

/* Whole decode: latents [z_dim][F][H][W]. */
int vae_decode(const VaeModel *m, const float *latents, int F, int H, int W, VaeFrameFn fn, void *user, Error *err);
/* The same through a fresh decoder the caller made for latents of H x W (vae_decoder_new, or vae_decoder_new_cuda
 * for the GPU); the decoder is used up (make a new one for the next video). */
int vae_decode_with(VaeDecoder *d, const float *latents, int F, VaeFrameFn fn, void *user, Error *err);
int vae_decode_video_with(VaeDecoder *d, const float *latents, int F, uint8_t *video, Error *err);

/* [3][H][W] in [-1, 1] -> [H][W][3] uint8: (x + 1) / 2 * 255 rounded, as harness/runner.c quantises videos. */
void vae_frame_to_rgb8(const float *rgb, int height, int width, uint8_t *out);
/* Whole decode into uint8 RGB video [T][8H][8W][3] (T = vae_num_frames): what a run record stores in /video. */
int vae_decode_video(const VaeModel *m, const float *latents, int F, int H, int W, uint8_t *video, Error *err);

#ifdef __cplusplus
}
#endif

#endif
