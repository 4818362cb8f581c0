#include "results/strip.h"

#include <stdlib.h>
#include <string.h>

int strip_compose(const uint8_t *const *videos, int rows, int frames, int height, int width, int scale, int gap,
                  Image *out, Error *err) {
    memset(out, 0, sizeof *out);
    if (rows < 1 || frames < 1 || height < 1 || width < 1 || scale < 1 || gap < 0)
        return error_set(err, "strip: bad layout %d rows of %d frames %dx%d (scale %d, gap %d)", rows, frames, height,
                         width, scale, gap);
    const long cell_h = (long)scale * height, cell_w = (long)scale * width;
    const long H = rows * cell_h + (rows - 1) * (long)gap, W = frames * cell_w + (frames - 1) * (long)gap;
    if (H > 65535 || W > 65535) return error_set(err, "strip: %ldx%ld pixels is too large for one image", W, H);
    uint8_t *rgb = malloc((size_t)H * W * 3);
    if (!rgb) return error_set(err, "out of memory");
    memset(rgb, 255, (size_t)H * W * 3);
    for (int r = 0; r < rows; r++)
        for (int f = 0; f < frames; f++) {
            const uint8_t *frame = videos[r] + (size_t)f * height * width * 3;
            const long y0 = r * (cell_h + gap), x0 = f * (cell_w + gap);
            for (long y = 0; y < cell_h; y++)
                for (long x = 0; x < cell_w; x++)
                    memcpy(rgb + ((y0 + y) * W + x0 + x) * 3, frame + ((y / scale) * width + x / scale) * 3, 3);
        }
    out->height = (int)H;
    out->width = (int)W;
    out->rgb = rgb;
    return 0;
}
