/* Writes the seed corpora of the fuzz targets (`make fuzz-corpus`; the results are committed under fuzz/corpus/,
 * so this only runs again when a format changes). Everything is generated here: small valid inputs of every kind
 * the readers accept, plus a few near misses. The run-record seeds come from the CLI itself (see the make rule).
 * The shared metric-oracle images are deliberately not used: they are not ours to copy. */
#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz/micro_config.h"
#include "metrics/image.h"
#include "models/dit/dit.h"
#include "models/safetensors.h"

static const char *root;

static void die(const char *what, const char *msg) {
    fprintf(stderr, "make_corpus: %s: %s\n", what, msg);
    exit(1);
}

static void out_path(char *buf, size_t cap, const char *target, const char *name) {
    snprintf(buf, cap, "%s/%s", root, target);
    if (mkdir(buf, 0777) && errno != EEXIST) die(buf, strerror(errno));
    snprintf(buf, cap, "%s/%s/%s", root, target, name);
}

static void write_file(const char *target, const char *name, const void *bytes, size_t len) {
    char path[512];
    out_path(path, sizeof path, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(bytes, 1, len, f) != len || fclose(f)) die(path, "cannot write");
}

/* A raw safetensors file: little-endian header length, the header text, then data_len bytes of a pattern. */
static void write_raw_safetensors(const char *target, const char *name, const char *header, size_t data_len) {
    size_t hl = strlen(header), total = 8 + hl + data_len;
    unsigned char *buf = malloc(total);
    if (!buf) die(name, "out of memory");
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    for (size_t i = 0; i < data_len; i++) buf[8 + hl + i] = (unsigned char)(i * 37 + 11);
    write_file(target, name, buf, total);
    free(buf);
}

static void safetensors_seeds(void) {
    char path[512];
    Error err = {{0}};
    const float a[6] = {1, -2, 3.5f, 0, 1e-3f, -7}, b[4] = {0.5f, 0.25f, -1, 65504}, c[4] = {1, 2, 3, 4};
    StWriteTensor t[3] = {{.name = "a", .dtype = ST_F32, .ndim = 2, .shape = {2, 3}, .data = a},
                          {.name = "b.weight", .dtype = ST_F16, .ndim = 1, .shape = {4}, .data = b},
                          {.name = "c", .dtype = ST_BF16, .ndim = 2, .shape = {2, 2}, .data = c}};
    out_path(path, sizeof path, "safetensors", "three_dtypes.safetensors");
    if (st_write(path, t, 3, &err)) die(path, err.msg);
    out_path(path, sizeof path, "safetensors", "no_tensors.safetensors");
    if (st_write(path, t, 0, &err)) die(path, err.msg);
    StWriteTensor scalar = {.name = "scalar", .dtype = ST_F32, .ndim = 0, .data = a};
    out_path(path, sizeof path, "safetensors", "scalar.safetensors");
    if (st_write(path, &scalar, 1, &err)) die(path, err.msg);
    write_raw_safetensors("safetensors", "empty_object.safetensors", "{}", 0);
    write_raw_safetensors("safetensors", "other_dtypes_unaligned.safetensors",
                          "{\"i\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                          "\"d\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[8,16]},"
                          "\"h\":{\"dtype\":\"F16\",\"shape\":[1,1],\"data_offsets\":[16,18]},"
                          "\"f\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[19,23]},"
                          "\"z\":{\"dtype\":\"BF16\",\"shape\":[0,5],\"data_offsets\":[23,23]},"
                          "\"__metadata__\":{\"format\":\"pt\"}}   ",
                          23);
    /* Near misses: each trips exactly one check. */
    write_raw_safetensors("safetensors", "overlap.safetensors",
                          "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                          "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                          12);
    write_raw_safetensors("safetensors", "past_end.safetensors",
                          "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8);
}

/* dit_for_each_tensor callback collecting the micro model's tensors for st_write. */
typedef struct {
    StWriteTensor list[128];
    int count;
    StDtype dtype;
} Collect;

static int collect(void *user, const char *name, int ndim, const int64_t *shape, const float **slot) {
    Collect *c = user;
    if (c->count == 128) return -1;
    StWriteTensor *t = &c->list[c->count++];
    t->name = strdup(name);
    t->dtype = c->dtype;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->data = *slot;
    return 0;
}

static void micro_model(const char *target, const char *name, StDtype dtype) {
    DitModel m;
    Error err = {{0}};
    if (dit_init_random(&m, &FUZZ_MICRO_CONFIG, 7, &err)) die(name, err.msg);
    Collect c = {.dtype = dtype};
    if (dit_for_each_tensor(&m, collect, &c)) die(name, "more than 128 tensors");
    char path[512];
    out_path(path, sizeof path, target, name);
    if (st_write(path, c.list, c.count, &err)) die(path, err.msg);
    for (int i = 0; i < c.count; i++) free((char *)c.list[i].name);
    dit_free(&m);
}

/* One PNG of any colour type and depth through libpng directly (image_write_png only writes RGB8). Pixel bytes are
 * a pattern; rowbytes follow from width, channels and depth. */
static void png_seed(const char *name, int width, int height, int color, int depth, int interlace, int with_trns) {
    char path[512];
    out_path(path, sizeof path, "png", name);
    FILE *f = fopen(path, "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!f || !info) die(path, "cannot create");
    if (setjmp(png_jmpbuf(png))) die(path, "libpng error");
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, depth, color, interlace,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (color == PNG_COLOR_TYPE_PALETTE) {
        png_color palette[4] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {9, 99, 199}};
        png_set_PLTE(png, info, palette, 4);
        if (with_trns) {
            png_byte alpha[2] = {0, 128};
            png_set_tRNS(png, info, alpha, 2, NULL);
        }
    } else if (with_trns) {
        png_color_16 key = {.red = 1, .green = 2, .blue = 3, .gray = 1};
        png_set_tRNS(png, info, NULL, 0, &key);
    }
    png_write_info(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    png_bytep row = malloc(rowbytes);
    int passes = png_set_interlace_handling(png);
    for (int p = 0; p < passes; p++)
        for (int y = 0; y < height; y++) {
            for (size_t i = 0; i < rowbytes; i++) row[i] = (png_byte)(y * 31 + i * 7);
            if (color == PNG_COLOR_TYPE_PALETTE && depth == 8)
                for (size_t i = 0; i < rowbytes; i++) row[i] &= 3; /* stay inside the 4-entry palette */
            png_write_row(png, row);
        }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(row);
    if (fclose(f)) die(path, "cannot write");
}

static void png_seeds(void) {
    char path[512];
    Error err = {{0}};
    uint8_t rgb[2 * 3 * 3];
    for (size_t i = 0; i < sizeof rgb; i++) rgb[i] = (uint8_t)(i * 13);
    out_path(path, sizeof path, "png", "rgb8_3x2.png");
    if (image_write_png(path, rgb, 2, 3, &err)) die(path, err.msg);
    png_seed("gray1_5x3.png", 5, 3, PNG_COLOR_TYPE_GRAY, 1, PNG_INTERLACE_NONE, 0);
    png_seed("gray8_trns_2x2.png", 2, 2, PNG_COLOR_TYPE_GRAY, 8, PNG_INTERLACE_NONE, 1);
    png_seed("gray_alpha16_2x3.png", 2, 3, PNG_COLOR_TYPE_GRAY_ALPHA, 16, PNG_INTERLACE_NONE, 0);
    png_seed("palette8_trns_3x3.png", 3, 3, PNG_COLOR_TYPE_PALETTE, 8, PNG_INTERLACE_NONE, 1);
    png_seed("rgba16_2x2.png", 2, 2, PNG_COLOR_TYPE_RGB_ALPHA, 16, PNG_INTERLACE_NONE, 0);
    png_seed("rgb8_adam7_9x9.png", 9, 9, PNG_COLOR_TYPE_RGB, 8, PNG_INTERLACE_ADAM7, 0);
}

static void spec_seeds(void) {
    static const char *const specs[] = {
        "none", "static", "static:interval=3,warmup=5", "teacache", "teacache:thresh=0.08,variant=e,warmup=1,cutoff=1",
        "teacache:variant=e0,coeffs=teacache_coeffs_e0.txt", "easycache", "easycache:thresh=0.05,warmup=10",
        "easycache:thresh=0.025,warmup=5", "easycache:", "static:interval=0", "bogus", "none:x=1",
        "teacache:thresh=nan", "static:interval=3,interval=4", "static:interval=2147483647,warmup=2147483647",
        "easycache:thresh=1e308,warmup=0", "teacache:thresh=0,variant=e0,warmup=0,cutoff=99",
        "svg:sparsity=0.5,dense_steps=1,dense_layers=1,rows=4", "easycache+svg:thresh=0.05,warmup=1,sparsity=0.9"};
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "spec%02zu.txt", i);
        write_file("strategy_spec", name, specs[i], strlen(specs[i]));
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus DIR   (writes DIR/<target>/...)\n");
        return 2;
    }
    root = argv[1];
    if (mkdir(root, 0777) && errno != EEXIST) die(root, strerror(errno));
    safetensors_seeds();
    micro_model("safetensors", "micro_bf16.safetensors", ST_BF16);
    micro_model("dit_load", "micro_f32.safetensors", ST_F32);
    micro_model("dit_load", "micro_f16.safetensors", ST_F16);
    micro_model("dit_load", "micro_bf16.safetensors", ST_BF16);
    png_seeds();
    spec_seeds();
    return 0;
}
