#include "metrics/image.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Frames are at most a few thousand pixels a side; the cap keeps h*w*3 far from overflow and rejects absurd
 * headers (a corrupt IHDR) before any allocation. */
enum { IMAGE_MAX_SIDE = 1 << 15 };

/* libpng reports errors through a callback that must not return: keep the message and jump back to the caller,
 * which owns the cleanup. Warnings are dropped because library code never prints. */
typedef struct {
    jmp_buf jmp;
    char msg[256];
} PngFailure;

static void png_on_error(png_structp png, png_const_charp msg) {
    PngFailure *failure = png_get_error_ptr(png);
    snprintf(failure->msg, sizeof failure->msg, "%s", msg);
    longjmp(failure->jmp, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

int image_read_png(const char *path, Image *img, Error *err) {
    memset(img, 0, sizeof *img);
    FILE *f = fopen(path, "rb");
    if (!f) return error_set(err, "%s: cannot open: %s", path, strerror(errno));
    unsigned char sig[8];
    if (fread(sig, 1, sizeof sig, f) != sizeof sig || png_sig_cmp(sig, 0, sizeof sig) != 0) {
        fclose(f);
        return error_set(err, "%s: not a PNG file (no PNG signature)", path);
    }

    PngFailure failure;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &failure, png_on_error, png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        fclose(f);
        return error_set(err, "%s: out of memory creating the PNG reader", path);
    }
    /* Written between setjmp and a possible longjmp, so volatile to keep their values for the cleanup. */
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(failure.jmp)) {
        png_destroy_read_struct(&png, &info, NULL);
        free(pixels);
        free(rows);
        fclose(f);
        return error_set(err, "%s: corrupt or truncated PNG: %s", path, failure.msg);
    }

    png_init_io(png, f);
    png_set_sig_bytes(png, sizeof sig);
    png_set_user_limits(png, IMAGE_MAX_SIDE, IMAGE_MAX_SIDE);
    png_read_info(png, info);
    /* Deflate expands at most 1032:1, so a file of N bytes holds at most ~1032 N bytes of filtered rows. A header
     * declaring more is corrupt, and is rejected before it makes us allocate gigabytes (a 69-byte file declaring
     * 32768x32768 RGB asked for 3 GB; found by fuzz/fuzz_png.c). */
    struct stat st;
    double raw_bytes = (double)png_get_image_height(png, info) * ((double)png_get_rowbytes(png, info) + 1.0);
    if (fstat(fileno(f), &st) == 0 && raw_bytes > 1032.0 * (double)st.st_size + 4096.0) {
        char msg[160]; /* not failure.msg: png_on_error copies the message into it */
        snprintf(msg, sizeof msg, "header declares %ux%u pixels, more than a %lld-byte file can hold",
                 (unsigned)png_get_image_width(png, info), (unsigned)png_get_image_height(png, info),
                 (long long)st.st_size);
        png_error(png, msg);
    }
    int color = png_get_color_type(png, info);
    int depth = png_get_bit_depth(png, info);
    /* Every input becomes RGB8: expand palettes and low-bit gray, turn tRNS into alpha and then drop all alpha
     * (frames are opaque; the stored colour is what gets compared), round 16-bit down to 8, replicate gray. */
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    png_set_strip_alpha(png);
    if (depth == 16) png_set_scale_16(png);
    if (!(color & PNG_COLOR_MASK_COLOR)) png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);

    png_uint_32 width = png_get_image_width(png, info), height = png_get_image_height(png, info);
    size_t stride = (size_t)width * 3;
    if (png_get_channels(png, info) != 3 || png_get_bit_depth(png, info) != 8 ||
        png_get_rowbytes(png, info) != stride) {
        png_error(png, "unsupported layout after conversion to RGB8");
    }
    pixels = malloc(stride * height);
    rows = malloc(sizeof(png_bytep) * height);
    if (!pixels || !rows) png_error(png, "out of memory for the pixels");
    for (png_uint_32 y = 0; y < height; y++) rows[y] = pixels + y * stride;
    png_read_image(png, rows);
    png_read_end(png, NULL);

    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    fclose(f);
    img->height = (int)height;
    img->width = (int)width;
    img->rgb = pixels;
    return 0;
}

int image_write_png(const char *path, const uint8_t *rgb, int height, int width, Error *err) {
    if (height <= 0 || width <= 0 || height > IMAGE_MAX_SIDE || width > IMAGE_MAX_SIDE)
        return error_set(err, "%s: cannot write a %dx%d image (sides must be in [1, %d])", path, width, height,
                         IMAGE_MAX_SIDE);
    char tmp[4096];
    /* Per process: sweep workers and `plot` may redraw one folder's plots at the same time. */
    if (snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid()) >= (int)sizeof tmp)
        return error_set(err, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return error_set(err, "%s: cannot create: %s", tmp, strerror(errno));

    PngFailure failure;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &failure, png_on_error, png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        fclose(f);
        remove(tmp);
        return error_set(err, "%s: out of memory creating the PNG writer", path);
    }
    if (setjmp(failure.jmp)) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        remove(tmp);
        return error_set(err, "%s: writing PNG failed: %s", path, failure.msg);
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < height; y++) png_write_row(png, rgb + (size_t)y * width * 3);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);

    if (fclose(f) != 0) {
        int e = errno;
        remove(tmp);
        return error_set(err, "%s: writing failed: %s", tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return error_set(err, "%s: cannot rename %s into place: %s", path, tmp, strerror(e));
    }
    return 0;
}

void image_free(Image *img) {
    free(img->rgb);
    memset(img, 0, sizeof *img);
}
