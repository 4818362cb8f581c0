/* PNG images as 8-bit RGB, [height][width][3] row-major: the frame layout the metrics and the video records use.
 * Reading converts every PNG colour type to RGB8 with libpng's transforms: gray -> RGB, palette -> RGB,
 * 16-bit -> 8-bit (rounded), alpha and tRNS transparency dropped (the colour values are kept as stored, not
 * composited). Writing is atomic: "<path>.tmp" then rename, so an interrupted export never leaves half a file. */
#ifndef CACHEBENCH_IMAGE_H
#define CACHEBENCH_IMAGE_H

#include <stdint.h>

#include "core/error.h"

typedef struct {
    int height, width;
    uint8_t *rgb;        /* [height][width][3], owned */
} Image;

/* Errors (missing file, not a PNG, corrupt or truncated data) name the file. */
int image_read_png(const char *path, Image *img, Error *err);
int image_write_png(const char *path, const uint8_t *rgb, int height, int width, Error *err);
/* Frees the pixels and zeroes the struct. */
void image_free(Image *img);

#endif
