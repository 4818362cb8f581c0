/* Frame strips: videos [frames][height][width][3] laid out as rows of frames in one RGB image, for
 * `cachebench export` (one video, frames side by side) and the report's baseline-vs-strategies picture. */
#ifndef CACHEBENCH_STRIP_H
#define CACHEBENCH_STRIP_H

#include <stdint.h>

#include "core/error.h"
#include "metrics/image.h"

/* Row r, frame f is drawn at (r·(scale·height + gap), f·(scale·width + gap)), each pixel repeated scale×scale
 * times (nearest neighbour: no smoothing hides what a strategy changed); the gaps are white. out->rgb is
 * malloc'd (free with image_free). */
int strip_compose(const uint8_t *const *videos, int rows, int frames, int height, int width, int scale, int gap,
                  Image *out, Error *err);

#endif
