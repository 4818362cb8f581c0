#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/metrics.h"

void run_metrics_free(RunMetrics *m) {
    free(m->psnr);
    free(m->ssim);
    free(m->lpips);
    memset(m, 0, sizeof *m);
}

static int compare_fail(RunMetrics *out) {
    run_metrics_free(out);
    return -1;
}

int metrics_compare_videos(const uint8_t *a, const uint8_t *b, int frames, int height, int width, LpipsNet *net,
                           RunMetrics *out, Error *err) {
    memset(out, 0, sizeof *out);
    if (frames <= 0 || height <= 0 || width <= 0)
        return error_set(err, "cannot compare videos of %d frames of %dx%d", frames, width, height);
    size_t frame_values = (size_t)height * width * 3;
    if (!lpips_fits(height, width)) net = NULL;
    out->psnr = malloc(sizeof(double) * frames);
    out->ssim = malloc(sizeof(double) * frames);
    out->lpips = net ? malloc(sizeof(double) * frames) : NULL;
    if (!out->psnr || !out->ssim || (net && !out->lpips)) {
        error_set(err, "out of memory for the metrics of %d frames", frames);
        return compare_fail(out);
    }
    double ssim_sum = 0.0, lpips_sum = 0.0;
    for (int f = 0; f < frames; f++) {
        const uint8_t *fa = a + f * frame_values, *fb = b + f * frame_values;
        out->psnr[f] = psnr_u8(fa, fb, frame_values);
        if (ssim_frame_u8(fa, fb, height, width, &out->ssim[f], err) != 0) {
            error_prefix(err, "frame %d", f);
            return compare_fail(out);
        }
        ssim_sum += out->ssim[f];
        if (net) {
            if (lpips_frame_u8(net, fa, fb, height, width, &out->lpips[f], err) != 0) {
                error_prefix(err, "frame %d", f);
                return compare_fail(out);
            }
            lpips_sum += out->lpips[f];
        }
    }
    out->frames = frames;
    out->psnr_mean = psnr_u8(a, b, frame_values * frames);
    out->ssim_mean = ssim_sum / frames;
    out->lpips_mean = net ? lpips_sum / frames : NAN;
    out->lpips_available = net != NULL;
    return 0;
}
