/* safetensors reader (memory-mapped, fully validated) and writer.
 *
 * File format: 8-byte little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F32"|"F16"|"BF16"|..., "shape": [..], "data_offsets": [begin, end]}, ..., "__metadata__": {...}},
 * then the data section; offsets are relative to the start of the data section.
 *
 * st_open validates everything before returning: header length inside the file, JSON parses and is an object,
 * every entry has a known dtype, an integer shape and two integer offsets, offsets lie inside the data section,
 * begin <= end, dtype size x prod(shape) == end - begin, and no two tensors overlap. Any failure returns -1 with a
 * message naming the file and (where there is one) the tensor. */
#ifndef CACHEBENCH_SAFETENSORS_H
#define CACHEBENCH_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef enum { ST_F32 = 0, ST_F16, ST_BF16, ST_OTHER } StDtype;

#define ST_MAX_DIMS 8

typedef struct {
    char *name;                 /* owned by the StFile */
    StDtype dtype;
    char dtype_name[16];        /* as written in the header, e.g. "F64" for ST_OTHER */
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;           /* points into the mapping */
    size_t nbytes;
} StTensor;

typedef struct {
    char *path;                 /* owned copy */
    void *map;
    size_t map_size;
    StTensor *tensors;
    int num_tensors;
} StFile;

int st_open(StFile *f, const char *path, Error *err);
void st_close(StFile *f);
/* NULL when absent. */
const StTensor *st_find(const StFile *f, const char *name);

/* Elements of a shape (1 for ndim 0), and the shape as "[a, b, c]" for messages (truncated to cap). */
size_t st_numel(int ndim, const int64_t *shape);
void st_format_shape(char *buf, size_t cap, int ndim, const int64_t *shape);
/* Releases the resident pages of t's bytes (whole pages only; they are re-read from the file if touched again):
 * after a tensor was converted to a copy, its mapping need not count towards the process's memory. */
void st_drop_pages(const StTensor *t);

/* Converts any of F32/F16/BF16 to float32 (dst has prod(shape) floats). Returns -1 for other dtypes. */
int st_to_f32(const StTensor *t, float *dst, Error *err);

/* Writer: all tensors are given as float32 in memory and stored with the requested dtype (F32, F16 or BF16,
 * round-to-nearest-even). Written to path + ".tmp" then renamed, so a failed write leaves nothing behind. */
typedef struct {
    const char *name;
    StDtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const float *data;
} StWriteTensor;

int st_write(const char *path, const StWriteTensor *tensors, int count, Error *err);

/* Half-precision conversions shared with the CUDA backend and tests. */
float st_f16_to_f32(uint16_t h);
float st_bf16_to_f32(uint16_t h);
uint16_t st_f32_to_f16(float f);
uint16_t st_f32_to_bf16(float f);

#endif
