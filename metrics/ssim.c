/* SSIM exactly as scikit-image 0.19 structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
 * use_sample_covariance=False, data_range=1, channel_axis=-1) computes it, in double:
 * per channel, the five moments (x, y, x², y², xy) are filtered with scipy.ndimage's Gaussian (truncate 3.5, so
 * radius 5, 11 taps), first along rows of the image (axis 0) then along columns (axis 1); the SSIM map is
 * averaged over the valid region (a 5-pixel border cropped on every side); the result is the mean over channels.
 * skimage filters the whole image with mode 'reflect' and then crops, but every pixel that survives the crop only
 * ever sees in-image pixels, so computing the valid region alone gives the same numbers without any padding. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "metrics/metrics.h"

enum { SSIM_RADIUS = 5, SSIM_TAPS = 2 * SSIM_RADIUS + 1, SSIM_MOMENTS = 5 };

/* scipy.ndimage._gaussian_kernel1d: exp(-0.5 / sigma² · x²) for x in [-r, r], normalised to sum 1. */
static void ssim_gaussian_taps(double taps[SSIM_TAPS]) {
    const double sigma2 = 1.5 * 1.5;
    double sum = 0.0;
    for (int i = 0; i < SSIM_TAPS; i++) {
        double x = i - SSIM_RADIUS;
        taps[i] = exp(-0.5 / sigma2 * (x * x));
        sum += taps[i];
    }
    for (int i = 0; i < SSIM_TAPS; i++) taps[i] /= sum;
}

/* Sum of the SSIM map over one output row (valid row i, image row i + radius) of channel c.
 * vert holds SSIM_MOMENTS * width doubles: the column-filtered moments of that row. */
static double ssim_row_sum(const uint8_t *a, const uint8_t *b, int width, int i, int c, const double taps[SSIM_TAPS],
                           const double value[256], double *vert) {
    double *vx = vert, *vy = vx + width, *vxx = vy + width, *vyy = vxx + width, *vxy = vyy + width;
    for (int j = 0; j < SSIM_MOMENTS * width; j++) vert[j] = 0.0;
    for (int k = 0; k < SSIM_TAPS; k++) {
        const uint8_t *ra = a + (size_t)(i + k) * width * 3 + c, *rb = b + (size_t)(i + k) * width * 3 + c;
        double t = taps[k];
        for (int j = 0; j < width; j++) {
            double x = value[ra[3 * j]], y = value[rb[3 * j]];
            vx[j] += t * x;
            vy[j] += t * y;
            vxx[j] += t * (x * x);
            vyy[j] += t * (y * y);
            vxy[j] += t * (x * y);
        }
    }
    const double C1 = (0.01 * 1.0) * (0.01 * 1.0), C2 = (0.03 * 1.0) * (0.03 * 1.0);
    double sum = 0.0;
    for (int j = 0; j + SSIM_TAPS <= width; j++) {
        double ux = 0, uy = 0, uxx = 0, uyy = 0, uxy = 0;
        for (int k = 0; k < SSIM_TAPS; k++) {
            double t = taps[k];
            ux += t * vx[j + k];
            uy += t * vy[j + k];
            uxx += t * vxx[j + k];
            uyy += t * vyy[j + k];
            uxy += t * vxy[j + k];
        }
        /* Same expressions, same order as skimage (population covariance: cov_norm = 1). Identical inputs
         * therefore give numerator == denominator bit for bit, and SSIM exactly 1. */
        double sx = uxx - ux * ux, sy = uyy - uy * uy, sxy = uxy - ux * uy;
        double A1 = 2 * ux * uy + C1, A2 = 2 * sxy + C2;
        double B1 = ux * ux + uy * uy + C1, B2 = sx + sy + C2;
        sum += (A1 * A2) / (B1 * B2);
    }
    return sum;
}

int ssim_frame_u8(const uint8_t *a, const uint8_t *b, int height, int width, double *out, Error *err) {
    if (height < SSIM_TAPS || width < SSIM_TAPS)
        return error_set(err, "SSIM needs frames of at least %dx%d (its Gaussian window), got %dx%d", SSIM_TAPS,
                         SSIM_TAPS, width, height);
    double taps[SSIM_TAPS], value[256];
    ssim_gaussian_taps(taps);
    for (int v = 0; v < 256; v++) value[v] = v / 255.0;

    int valid_h = height - 2 * SSIM_RADIUS, valid_w = width - 2 * SSIM_RADIUS;
    int threads = omp_get_max_threads();
    /* One row of filtered moments per thread, and one partial sum per (channel, row): summing those in a fixed
     * order afterwards keeps the result independent of the thread count and schedule. */
    double *vert = malloc(sizeof(double) * SSIM_MOMENTS * width * threads);
    double *row_sums = malloc(sizeof(double) * 3 * valid_h);
    if (!vert || !row_sums) {
        free(vert);
        free(row_sums);
        return error_set(err, "out of memory for SSIM of a %dx%d frame", width, height);
    }
    /* Small frames are done before threads would even wake up. */
#pragma omp parallel for collapse(2) schedule(static) if (height * width >= 128 * 128)
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < valid_h; i++)
            row_sums[c * valid_h + i] = ssim_row_sum(a, b, width, i, c, taps, value,
                                                     vert + (size_t)SSIM_MOMENTS * width * omp_get_thread_num());
    double mean = 0.0;
    for (int c = 0; c < 3; c++) {
        double sum = 0.0;
        for (int i = 0; i < valid_h; i++) sum += row_sums[c * valid_h + i];
        mean += sum / ((double)valid_h * valid_w);
    }
    free(vert);
    free(row_sums);
    *out = mean / 3.0;
    return 0;
}
