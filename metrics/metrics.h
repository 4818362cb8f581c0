/* Quality metrics (DESIGN §7). Frames are uint8 RGB [H][W][3], interpreted as values/255 in [0,1].
 * PSNR: 10·log10(1/MSE); identical inputs give +INFINITY.
 * SSIM: Gaussian window 11, sigma 1.5, C1 = 0.01^2, C2 = 0.03^2, per channel, valid region, mean over channels
 *       (scikit-image structural_similarity with gaussian_weights=True, use_sample_covariance=False, data_range=1).
 * LPIPS v0.1, AlexNet backbone + linear heads, inputs scaled to [-1,1], spatial mean; weights embedded at build time. */
#ifndef CACHEBENCH_METRICS_H
#define CACHEBENCH_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

double psnr_u8(const uint8_t *a, const uint8_t *b, size_t n);
/* Mean SSIM of one RGB frame; -1 with a message when the frame is smaller than the 11x11 window. */
int ssim_frame_u8(const uint8_t *a, const uint8_t *b, int height, int width, double *out, Error *err);

/* One run's quality against its baseline; the run record (results/record.h) stores it under /metrics. */
typedef struct {
    int frames;
    double *psnr, *ssim, *lpips;     /* [frames]; lpips NULL when unavailable */
    double psnr_mean, ssim_mean, lpips_mean;
    int lpips_available;
    char baseline[1024];
} RunMetrics;

void run_metrics_free(RunMetrics *m);

typedef struct LpipsNet LpipsNet;
/* 1 when the build embedded a complete set of LPIPS weights. */
int lpips_available(void);
/* Why LPIPS is unavailable (which files were missing at build time); "" when available. */
const char *lpips_unavailable_reason(void);
/* Fails (with the reason) when unavailable. */
int lpips_create(LpipsNet **net, Error *err);
/* Reads the weights at run time from dir, laid out like LPIPS_WEIGHTS_DIR (features.N.{weight,bias}.f32,
 * linK.weight.f32: raw little-endian float32, C order); each file must hold exactly its shape. For
 * `cachebench metrics --lpips-weights DIR` and for tests with synthetic backbones. */
int lpips_create_from_dir(LpipsNet **net, const char *dir, Error *err);
/* A seeded random backbone (He-normal convs, small biases, small non-negative heads): its values mean nothing;
 * for benchmarks and for tests of properties that hold for any weights (identity, symmetry). */
int lpips_create_synthetic(LpipsNet **net, uint64_t seed, Error *err);
void lpips_destroy(LpipsNet *net);
/* 1 when AlexNet's layers fit a frame of this size (at least 31x31); LPIPS is undefined for smaller frames. */
int lpips_fits(int height, int width);
int lpips_frame_u8(LpipsNet *net, const uint8_t *a, const uint8_t *b, int height, int width, double *out, Error *err);

/* Compares two videos [frames][height][width][3] frame by frame: per-frame and mean PSNR/SSIM/LPIPS into out
 * (arrays allocated here, freed with run_metrics_free). net may be NULL: LPIPS is then left unavailable (NAN);
 * so it is for frames too small for AlexNet (lpips_fits), e.g. latent-sized previews of a model without a decoder.
 * The video-level PSNR is over all pixels (10·log10(1/MSE) of the whole video), not a mean of frame PSNRs. */
int metrics_compare_videos(const uint8_t *a, const uint8_t *b, int frames, int height, int width, LpipsNet *net,
                           RunMetrics *out, Error *err);

#endif
