#include "models/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Tensor bytes are memcpy'd straight into floats, which is only right on a little-endian host. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian");

/* Same bound as the reference Rust implementation: a real header is kilobytes, so anything near this is corrupt,
 * and it keeps the malloc for the header copy reasonable. */
#define ST_MAX_HEADER_BYTES 100000000ull
/* JSON numbers are doubles: integers above 2^53 cannot be represented exactly, so they cannot be trusted. */
#define ST_MAX_JSON_INT 9007199254740992.0

typedef struct {
    const char *name;
    StDtype dtype;
    size_t size;
} DtypeInfo;

static const DtypeInfo DTYPES[] = {
    {"F32", ST_F32, 4},       {"F16", ST_F16, 2},       {"BF16", ST_BF16, 2},     {"F64", ST_OTHER, 8},
    {"I64", ST_OTHER, 8},     {"I32", ST_OTHER, 4},     {"I16", ST_OTHER, 2},     {"I8", ST_OTHER, 1},
    {"U64", ST_OTHER, 8},     {"U32", ST_OTHER, 4},     {"U16", ST_OTHER, 2},     {"U8", ST_OTHER, 1},
    {"BOOL", ST_OTHER, 1},    {"F8_E4M3", ST_OTHER, 1}, {"F8_E5M2", ST_OTHER, 1}, {"F8_E8M0", ST_OTHER, 1},
    {"C64", ST_OTHER, 8},
};

static const DtypeInfo *dtype_by_name(const char *name) {
    for (size_t i = 0; i < sizeof DTYPES / sizeof DTYPES[0]; i++)
        if (strcmp(DTYPES[i].name, name) == 0) return &DTYPES[i];
    return NULL;
}

/* For the float dtypes the writer and st_to_f32 handle; ST_OTHER has no single size. */
static size_t float_dtype_size(StDtype dtype) { return dtype == ST_F32 ? 4 : (dtype == ST_F16 || dtype == ST_BF16) ? 2 : 0; }
static const char *float_dtype_name(StDtype dtype) { return dtype == ST_F32 ? "F32" : dtype == ST_F16 ? "F16" : "BF16"; }

/* ---- half precision ---- */

float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff, bits;
    if (exponent == 0x1f) {
        bits = sign | 0x7f800000 | (mantissa << 13); /* inf, or NaN with its payload */
    } else if (exponent == 0) {
        float magnitude = (float)mantissa * 0x1p-24f; /* subnormal: exact, the result is a normal float */
        return sign ? -magnitude : magnitude;
    } else {
        bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

float st_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Keeps the top `shift` bits cut off by rounding to nearest, ties to even; a carry out of the mantissa correctly
 * bumps the exponent (up to infinity). */
static uint32_t round_shift_rne(uint32_t value, int shift) {
    uint32_t kept = value >> shift, rest = value & ((1u << shift) - 1), half = 1u << (shift - 1);
    return kept + (rest > half || (rest == half && (kept & 1)));
}

uint16_t st_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint16_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffff;
    /* NaN: keep the top payload bits and force the quiet bit, so a payload living only in the low bits
     * cannot turn into infinity. */
    if (ax > 0x7f800000) return sign | 0x7e00 | ((ax >> 13) & 0x3ff);
    if (ax >= 0x477ff000) return sign | 0x7c00;   /* >= 65520 rounds (ties to even) past 65504 to inf */
    if (ax >= 0x38800000) /* normal half: rebias the exponent and round the mantissa as one integer */
        return sign | (uint16_t)round_shift_rne(ax - ((127u - 15u) << 23), 13);
    if (ax <= 0x33000000) return sign;             /* <= 2^-25: half way to the smallest subnormal rounds to 0 */
    /* subnormal half: units of 2^-24, value = mantissa_with_implicit_bit * 2^(exponent - 150) */
    uint32_t mantissa = (ax & 0x7fffff) | 0x800000;
    int exponent = (int)(ax >> 23);
    return sign | (uint16_t)round_shift_rne(mantissa, 126 - exponent);
}

uint16_t st_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x0040); /* quiet NaN, never inf */
    return (uint16_t)round_shift_rne(x, 16);
}

/* ---- reader ---- */

static const char *json_type_name(const cJSON *item) {
    if (cJSON_IsArray(item)) return "array";
    if (cJSON_IsObject(item)) return "object";
    if (cJSON_IsString(item)) return "string";
    if (cJSON_IsNumber(item)) return "number";
    if (cJSON_IsBool(item)) return "boolean";
    return "null";
}

static int json_to_u64(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return -1;
    double v = item->valuedouble;
    if (!(v >= 0 && v <= ST_MAX_JSON_INT) || v != floor(v)) return -1; /* also rejects NaN */
    *out = (uint64_t)v;
    return 0;
}

size_t st_numel(int ndim, const int64_t *shape) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    return n;
}

void st_format_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t len = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < ndim && len < cap; d++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%" PRId64, d ? ", " : "", shape[d]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
}

typedef struct {
    uint64_t begin, end;
    const char *name;
} Span;

/* Fills t and span from one header entry; messages are relative to the tensor (the caller adds its name). */
static int parse_entry(const cJSON *entry, uint64_t data_size, StTensor *t, Span *span, Error *err) {
    if (!cJSON_IsObject(entry)) return error_set(err, "entry is a JSON %s, not an object", json_type_name(entry));
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
    if (!cJSON_IsString(dtype)) return error_set(err, "\"dtype\" is missing or not a string");
    const DtypeInfo *info = dtype_by_name(dtype->valuestring);
    if (!info) return error_set(err, "unknown dtype '%.32s'", dtype->valuestring);
    t->dtype = info->dtype;
    snprintf(t->dtype_name, sizeof t->dtype_name, "%s", info->name);

    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(entry, "shape");
    if (!cJSON_IsArray(shape)) return error_set(err, "\"shape\" is missing or not an array");
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > ST_MAX_DIMS) return error_set(err, "shape has %d dims, more than the supported %d", ndim, ST_MAX_DIMS);
    t->ndim = ndim;
    uint64_t nbytes = info->size;
    int overflow = 0;
    for (int d = 0; d < ndim; d++) {
        uint64_t dim;
        if (json_to_u64(cJSON_GetArrayItem(shape, d), &dim) != 0)
            return error_set(err, "shape[%d] is not a non-negative integer", d);
        t->shape[d] = (int64_t)dim;
        overflow |= __builtin_mul_overflow(nbytes, dim, &nbytes);
    }
    char shape_str[256];
    st_format_shape(shape_str, sizeof shape_str, ndim, t->shape);

    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
    if (!offsets) return error_set(err, "missing \"data_offsets\"");
    uint64_t begin, end;
    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2 ||
        json_to_u64(cJSON_GetArrayItem(offsets, 0), &begin) != 0 || json_to_u64(cJSON_GetArrayItem(offsets, 1), &end) != 0)
        return error_set(err, "\"data_offsets\" is not an array of two non-negative integers");
    if (begin > end) return error_set(err, "data_offsets [%" PRIu64 ", %" PRIu64 "] have begin > end", begin, end);
    if (end > data_size)
        return error_set(err, "data_offsets [%" PRIu64 ", %" PRIu64 "] end past the data section (%" PRIu64 " bytes)",
                         begin, end, data_size);
    if (overflow) return error_set(err, "dtype %s x shape %s overflows 64 bits", info->name, shape_str);
    if (nbytes != end - begin)
        return error_set(err, "data_offsets [%" PRIu64 ", %" PRIu64 "] do not match dtype %s x shape %s = %" PRIu64 " bytes",
                         begin, end, info->name, shape_str, nbytes);
    t->nbytes = (size_t)nbytes;
    *span = (Span){begin, end, t->name};
    return 0;
}

static int compare_tensor_names(const void *a, const void *b) {
    return strcmp(((const StTensor *)a)->name, ((const StTensor *)b)->name);
}

static int compare_span_begins(const void *a, const void *b) {
    const Span *x = a, *y = b;
    return (x->begin > y->begin) - (x->begin < y->begin);
}

/* Validates the header of an already mapped file and fills f->tensors; messages lack the path (st_open adds it). */
static int parse_header(StFile *f, Error *err) {
    const uint8_t *bytes = f->map;
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--) header_len = header_len << 8 | bytes[i];
    if (header_len > ST_MAX_HEADER_BYTES)
        return error_set(err, "header length %" PRIu64 " exceeds the %llu-byte limit", header_len, ST_MAX_HEADER_BYTES);
    if (header_len > f->map_size - 8)
        return error_set(err, "header length %" PRIu64 " runs past the end of the file (%zu bytes)", header_len,
                         f->map_size);
    uint64_t data_size = f->map_size - 8 - header_len;
    const uint8_t *data = bytes + 8 + header_len;

    /* cJSON gets a private NUL-terminated copy so no parser path can read past the header. */
    char *text = malloc(header_len + 1);
    if (!text) return error_set(err, "out of memory for a %" PRIu64 "-byte header", header_len);
    memcpy(text, bytes + 8, header_len);
    text[header_len] = '\0';
    const char *parse_end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, header_len, &parse_end, 0);
    Span *spans = NULL;
    int rc = -1;
    if (!root) {
        error_set(err, "header is not valid JSON (error near byte %td)", parse_end ? parse_end - text : (ptrdiff_t)0);
        goto done;
    }
    for (const char *p = parse_end; p < text + header_len; p++) /* only whitespace padding may follow */
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            error_set(err, "header has trailing bytes after the JSON at byte %td", p - text);
            goto done;
        }
    if (!cJSON_IsObject(root)) {
        error_set(err, "header is a JSON %s, not an object", json_type_name(root));
        goto done;
    }

    int count = 0;
    for (const cJSON *e = root->child; e; e = e->next) count += strcmp(e->string, "__metadata__") != 0;
    f->tensors = calloc(count ? (size_t)count : 1, sizeof *f->tensors);
    spans = calloc(count ? (size_t)count : 1, sizeof *spans);
    if (!f->tensors || !spans) {
        error_set(err, "out of memory for %d tensors", count);
        goto done;
    }
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(e)) {
                error_set(err, "\"__metadata__\" is a JSON %s, not an object", json_type_name(e));
                goto done;
            }
            continue;
        }
        StTensor *t = &f->tensors[f->num_tensors];
        t->name = strdup(e->string);
        if (!t->name) {
            error_set(err, "out of memory");
            goto done;
        }
        f->num_tensors++;
        if (parse_entry(e, data_size, t, &spans[f->num_tensors - 1], err) != 0) {
            error_prefix(err, "tensor '%s'", t->name);
            goto done;
        }
        t->data = data + spans[f->num_tensors - 1].begin;
    }

    /* Sorted by name: duplicates become neighbours, and st_find can binary search. */
    qsort(f->tensors, (size_t)count, sizeof *f->tensors, compare_tensor_names);
    for (int i = 1; i < count; i++)
        if (strcmp(f->tensors[i - 1].name, f->tensors[i].name) == 0) {
            error_set(err, "tensor '%s' appears twice in the header", f->tensors[i].name);
            goto done;
        }

    /* Sorted by begin, a tensor overlaps an earlier one iff it starts before the furthest end seen so far.
     * Empty tensors occupy no bytes and so overlap nothing. */
    qsort(spans, (size_t)count, sizeof *spans, compare_span_begins);
    const Span *furthest = NULL;
    for (int i = 0; i < count; i++) {
        if (spans[i].begin == spans[i].end) continue;
        if (furthest && spans[i].begin < furthest->end) {
            error_set(err,
                      "tensor '%s' (data_offsets [%" PRIu64 ", %" PRIu64 "]) overlaps tensor '%s' (data_offsets [%" PRIu64
                      ", %" PRIu64 "])",
                      spans[i].name, spans[i].begin, spans[i].end, furthest->name, furthest->begin, furthest->end);
            goto done;
        }
        if (!furthest || spans[i].end > furthest->end) furthest = &spans[i];
    }
    rc = 0;
done:
    free(spans);
    cJSON_Delete(root);
    free(text);
    return rc;
}

int st_open(StFile *f, const char *path, Error *err) {
    memset(f, 0, sizeof *f);
    f->path = strdup(path);
    if (!f->path) return error_set(err, "%s: out of memory", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        error_set(err, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        error_set(err, "%s: not a readable regular file", path);
        close(fd);
        goto fail;
    }
    if (st.st_size < 8) {
        error_set(err, "%s: file is %lld bytes, too short for the 8-byte header length", path, (long long)st.st_size);
        close(fd);
        goto fail;
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int mmap_errno = errno;
    close(fd); /* the mapping keeps the file alive */
    if (map == MAP_FAILED) {
        error_set(err, "%s: mmap failed: %s", path, strerror(mmap_errno));
        goto fail;
    }
    f->map = map;
    f->map_size = (size_t)st.st_size;
    if (parse_header(f, err) != 0) {
        error_prefix(err, "%s", path);
        goto fail;
    }
    return 0;
fail:
    st_close(f);
    return -1;
}

void st_close(StFile *f) {
    if (f->map) munmap(f->map, f->map_size);
    for (int i = 0; i < f->num_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const StTensor *st_find(const StFile *f, const char *name) {
    StTensor key = {.name = (char *)name};
    if (f->num_tensors == 0) return NULL;
    return bsearch(&key, f->tensors, (size_t)f->num_tensors, sizeof *f->tensors, compare_tensor_names);
}

void st_drop_pages(const StTensor *t) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), begin = (uintptr_t)t->data, end = begin + t->nbytes;
    const uintptr_t first = (begin + page - 1) / page * page, last = end / page * page;
    if (last > first) madvise((void *)first, last - first, MADV_DONTNEED);
}

int st_to_f32(const StTensor *t, float *dst, Error *err) {
    const uint8_t *src = t->data;
    size_t count = t->nbytes / (t->dtype == ST_F32 ? 4 : 2);
    if (t->dtype == ST_F32) {
        memcpy(dst, src, t->nbytes);
    } else if (t->dtype == ST_F16 || t->dtype == ST_BF16) {
        for (size_t i = 0; i < count; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, sizeof h); /* the data may sit at any byte offset */
            dst[i] = t->dtype == ST_F16 ? st_f16_to_f32(h) : st_bf16_to_f32(h);
        }
    } else {
        return error_set(err, "tensor '%s': dtype %s cannot be converted to float32 (only F32, F16, BF16)", t->name,
                         t->dtype_name);
    }
    return 0;
}

/* ---- writer ---- */

static int write_all(int fd, const void *buf, size_t len) {
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (n == 0) errno = ENOSPC; /* a regular file only stops accepting bytes when the disk is full */
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int write_tensor_data(int fd, const StWriteTensor *t, size_t count) {
    if (t->dtype == ST_F32) return write_all(fd, t->data, count * sizeof(float));
    uint16_t chunk[4096];
    for (size_t start = 0; start < count; start += 4096) {
        size_t n = count - start < 4096 ? count - start : 4096;
        for (size_t i = 0; i < n; i++)
            chunk[i] = t->dtype == ST_F16 ? st_f32_to_f16(t->data[start + i]) : st_f32_to_bf16(t->data[start + i]);
        if (write_all(fd, chunk, n * sizeof chunk[0]) != 0) return -1;
    }
    return 0;
}

/* Checks one input tensor and returns its element count through count. */
static int check_write_tensor(const StWriteTensor *t, size_t *count, Error *err) {
    if (!t->name) return error_set(err, "tensor has no name");
    if (strcmp(t->name, "__metadata__") == 0) return error_set(err, "'__metadata__' is reserved, not a tensor name");
    if (!float_dtype_size(t->dtype)) return error_set(err, "tensor '%s': can only write F32, F16 or BF16", t->name);
    if (t->ndim < 0 || t->ndim > ST_MAX_DIMS) return error_set(err, "tensor '%s': ndim %d out of range", t->name, t->ndim);
    size_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] < 0 || __builtin_mul_overflow(n, (size_t)t->shape[d], &n) || n > SIZE_MAX / sizeof(float))
            return error_set(err, "tensor '%s': invalid or too large shape", t->name);
    if (n > 0 && !t->data) return error_set(err, "tensor '%s': data is NULL", t->name);
    *count = n;
    return 0;
}

typedef struct {
    int index;        /* into the caller's tensor array */
    size_t elem_size; /* of the stored dtype */
    size_t count;     /* elements */
} WriteSlot;

static int compare_write_slots(const void *a, const void *b) {
    const WriteSlot *x = a, *y = b;
    if (x->elem_size != y->elem_size) return x->elem_size < y->elem_size ? 1 : -1;
    return (x->index > y->index) - (x->index < y->index);
}

/* Builds the unpadded JSON header with offsets following the slot order. Returns NULL when out of memory. */
static char *build_header(const StWriteTensor *tensors, const WriteSlot *slots, int count) {
    cJSON *root = cJSON_CreateObject(), *metadata = cJSON_AddObjectToObject(root, "__metadata__");
    int ok = root && metadata && cJSON_AddStringToObject(metadata, "format", "pt");
    uint64_t offset = 0;
    for (int k = 0; ok && k < count; k++) {
        const StWriteTensor *t = &tensors[slots[k].index];
        uint64_t nbytes = slots[k].count * slots[k].elem_size;
        cJSON *entry = cJSON_AddObjectToObject(root, t->name), *shape = cJSON_AddArrayToObject(entry, "shape"),
              *offsets = cJSON_AddArrayToObject(entry, "data_offsets");
        ok = entry && shape && offsets && cJSON_AddStringToObject(entry, "dtype", float_dtype_name(t->dtype));
        for (int d = 0; ok && d < t->ndim; d++) ok = cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        ok = ok && cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)offset)) &&
             cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)(offset + nbytes)));
        offset += nbytes;
    }
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return text;
}

int st_write(const char *path, const StWriteTensor *tensors, int count, Error *err) {
    if (count < 0 || (count > 0 && !tensors)) return error_set(err, "%s: invalid tensor list", path);
    WriteSlot *slots = calloc(count ? (size_t)count : 1, sizeof *slots);
    char *tmp_path = malloc(strlen(path) + sizeof ".tmp"), *header = NULL;
    int fd = -1, rc = -1, created_tmp = 0;
    if (!slots || !tmp_path) {
        error_set(err, "%s: out of memory", path);
        goto done;
    }
    sprintf(tmp_path, "%s.tmp", path);
    for (int i = 0; i < count; i++) {
        slots[i] = (WriteSlot){.index = i, .elem_size = float_dtype_size(tensors[i].dtype)};
        if (check_write_tensor(&tensors[i], &slots[i].count, err) != 0) goto prefix_path;
        for (int j = 0; j < i; j++)
            if (strcmp(tensors[i].name, tensors[j].name) == 0) {
                error_set(err, "tensor '%s' given twice", tensors[i].name);
                goto prefix_path;
            }
    }
    /* Wider dtypes first: the data section starts 8-aligned and every tensor's size is a multiple of its element
     * size, so each tensor lands naturally aligned without gaps (readers such as the Rust one reject gaps). */
    qsort(slots, (size_t)count, sizeof *slots, compare_write_slots);
    header = build_header(tensors, slots, count);
    if (!header) {
        error_set(err, "%s: out of memory building the header", path);
        goto done;
    }
    size_t json_len = strlen(header), padded_len = (json_len + 7) / 8 * 8;
    uint8_t len_bytes[8];
    for (int i = 0; i < 8; i++) len_bytes[i] = (uint8_t)((uint64_t)padded_len >> (8 * i));

    fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        error_set(err, "%s: cannot create: %s", tmp_path, strerror(errno));
        goto done;
    }
    created_tmp = 1;
    int failed = write_all(fd, len_bytes, sizeof len_bytes) || write_all(fd, header, json_len) ||
                 write_all(fd, "       ", padded_len - json_len);
    for (int k = 0; !failed && k < count; k++) failed = write_tensor_data(fd, &tensors[slots[k].index], slots[k].count);
    if (failed || fsync(fd) != 0) {
        error_set(err, "%s: write failed: %s", tmp_path, strerror(errno));
        goto done;
    }
    int close_rc = close(fd);
    fd = -1;
    if (close_rc != 0) {
        error_set(err, "%s: close failed: %s", tmp_path, strerror(errno));
        goto done;
    }
    if (rename(tmp_path, path) != 0) {
        error_set(err, "%s: cannot rename %s into place: %s", path, tmp_path, strerror(errno));
        goto done;
    }
    rc = 0;
    goto done;
prefix_path:
    error_prefix(err, "%s", path);
done:
    if (fd >= 0) close(fd);
    if (rc != 0 && created_tmp) unlink(tmp_path);
    free(header);
    free(tmp_path);
    free(slots);
    return rc;
}
