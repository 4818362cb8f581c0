#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "models/safetensors.h"

/* Each test runs in its own forked process, so this per-test scratch directory is private to it. */
static char tmp_dir[64];

static void make_tmp_dir(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/cachebench_st_XXXXXX");
    cr_assert_not_null(mkdtemp(tmp_dir));
}

static void remove_tmp_dir(void) {
    DIR *dir = opendir(tmp_dir);
    if (!dir) return;
    for (struct dirent *e; (e = readdir(dir));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", tmp_dir, e->d_name);
        if (rmdir(path) != 0) unlink(path);
    }
    closedir(dir);
    rmdir(tmp_dir);
}

TestSuite(safetensors, .init = make_tmp_dir, .fini = remove_tmp_dir);

static void tmp_path(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%s/%s", tmp_dir, name); }

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static void write_bytes(const char *path, const void *bytes, size_t len) {
    FILE *fp = fopen(path, "wb");
    cr_assert_not_null(fp);
    cr_assert_eq(fwrite(bytes, 1, len, fp), len);
    cr_assert_eq(fclose(fp), 0);
}

/* A raw safetensors file: the given length field (which may lie), header text, then data bytes (a non-zero
 * pattern when data is NULL). */
static void write_raw(const char *path, uint64_t length_field, const char *header, const uint8_t *data, size_t data_len) {
    size_t header_len = strlen(header), total = 8 + header_len + data_len;
    uint8_t *buf = malloc(total);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(length_field >> (8 * i));
    memcpy(buf + 8, header, header_len);
    for (size_t i = 0; i < data_len; i++) buf[8 + header_len + i] = data ? data[i] : (uint8_t)(i * 7 + 1);
    write_bytes(path, buf, total);
    free(buf);
}

static void expect_open_fails(const char *path, const char *expected) {
    StFile f;
    Error err = {{0}};
    cr_assert_eq(st_open(&f, path, &err), -1, "%s: opened, expected '%s'", path, expected);
    cr_expect(strstr(err.msg, path) != NULL, "message lacks the path: %s", err.msg);
    cr_expect(strstr(err.msg, expected) != NULL, "message '%s' lacks '%s'", err.msg, expected);
    cr_expect(f.map == NULL && f.tensors == NULL && f.num_tensors == 0, "failed open left state behind");
    st_close(&f); /* must be harmless after a failed open */
}

/* ---- reference conversions: straight from the IEEE definitions, in double ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t next_u32(void) {
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static float float_from_bits(uint32_t bits) {
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static double ref_f16_to_double(uint16_t h) {
    int sign = h >> 15, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
    double magnitude = exponent == 0x1f ? (mantissa ? NAN : INFINITY)
                       : exponent == 0  ? ldexp(mantissa, -24)
                                        : ldexp(1024 + mantissa, exponent - 25);
    return sign ? -magnitude : magnitude;
}

static double ref_bf16_to_double(uint16_t h) {
    int sign = h >> 15, exponent = (h >> 7) & 0xff, mantissa = h & 0x7f;
    double magnitude = exponent == 0xff ? (mantissa ? NAN : INFINITY)
                       : exponent == 0  ? ldexp(mantissa, -133)
                                        : ldexp(128 + mantissa, exponent - 134);
    return sign ? -magnitude : magnitude;
}

/* Rounds x to a binary format with mantissa_bits stored bits and minimum normal exponent min_exp, ties to even. */
static double ref_round(float x, int mantissa_bits, int min_exp, double max_finite) {
    if (isnan(x) || isinf(x) || x == 0) return x;
    int e;
    frexp(fabs(x), &e);
    int lead = e - 1 < min_exp ? min_exp : e - 1;
    double ulp = ldexp(1, lead - mantissa_bits);
    double r = rint(fabs(x) / ulp) * ulp; /* rint rounds ties to even in the default mode */
    if (r > max_finite) r = INFINITY;
    return copysign(r, x);
}

static void expect_same_value(double got, double want, uint32_t input_bits) {
    if (isnan(want)) {
        cr_expect(isnan(got), "input 0x%08x: got %g, want nan", input_bits, got);
    } else {
        cr_expect(got == want && signbit(got) == signbit(want), "input 0x%08x: got %.9g, want %.9g", input_bits, got, want);
    }
}

/* Random bit patterns cover everything; the narrow exponent band is where all the interesting rounding is. */
static uint32_t random_float_bits(int i, int exponent_lo, int exponent_hi) {
    uint32_t bits = next_u32();
    if (i % 2) bits = (bits & 0x807fffff) | (uint32_t)(exponent_lo + (int)(next_u32() % (unsigned)(exponent_hi - exponent_lo + 1))) << 23;
    return bits;
}

Test(safetensors, f16_decode_matches_reference_exhaustively) {
    for (uint32_t h = 0; h <= 0xffff; h++) expect_same_value(st_f16_to_f32((uint16_t)h), ref_f16_to_double((uint16_t)h), h);
}

Test(safetensors, bf16_decode_matches_reference_exhaustively) {
    for (uint32_t h = 0; h <= 0xffff; h++) expect_same_value(st_bf16_to_f32((uint16_t)h), ref_bf16_to_double((uint16_t)h), h);
}

Test(safetensors, f16_encode_matches_reference_on_random_floats) {
    for (int i = 0; i < 400000; i++) {
        uint32_t bits = random_float_bits(i, 127 - 27, 127 + 17);
        float x = float_from_bits(bits);
        expect_same_value(ref_f16_to_double(st_f32_to_f16(x)), ref_round(x, 10, -14, 65504.0), bits);
    }
}

Test(safetensors, bf16_encode_matches_reference_on_random_floats) {
    for (int i = 0; i < 400000; i++) {
        uint32_t bits = random_float_bits(i, 0, 254);
        float x = float_from_bits(bits);
        expect_same_value(ref_bf16_to_double(st_f32_to_bf16(x)), ref_round(x, 7, -126, ldexp(255, 120)), bits);
    }
}

Test(safetensors, half_round_trip_is_identity_and_ties_go_to_even) {
    for (uint32_t h = 0; h <= 0xffff; h++) {
        uint16_t f16 = st_f32_to_f16(st_f16_to_f32((uint16_t)h)), bf16 = st_f32_to_bf16(st_bf16_to_f32((uint16_t)h));
        int f16_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff), bf16_nan = (h & 0x7f80) == 0x7f80 && (h & 0x7f);
        if (!f16_nan) cr_expect_eq(f16, h, "f16 0x%04x -> 0x%04x", h, f16);
        if (!bf16_nan) cr_expect_eq(bf16, h, "bf16 0x%04x -> 0x%04x", h, bf16);
    }
    /* Midpoints between neighbours are exact floats (computed without overflowing at the top binade); each must round to the neighbour with an even mantissa. */
    for (uint32_t sign = 0; sign <= 0x8000; sign += 0x8000) {
        for (uint32_t h = 0; h < 0x7bff; h++) {
            float lo = st_f16_to_f32((uint16_t)(sign | h)), mid = lo + (st_f16_to_f32((uint16_t)(sign | (h + 1))) - lo) / 2;
            cr_expect_eq(st_f32_to_f16(mid), sign | (h & 1 ? h + 1 : h), "f16 tie above 0x%04x", sign | h);
        }
        for (uint32_t h = 0; h < 0x7f7f; h++) {
            float lo = st_bf16_to_f32((uint16_t)(sign | h)), mid = lo + (st_bf16_to_f32((uint16_t)(sign | (h + 1))) - lo) / 2;
            cr_expect_eq(st_f32_to_bf16(mid), sign | (h & 1 ? h + 1 : h), "bf16 tie above 0x%04x", sign | h);
        }
    }
}

Test(safetensors, half_special_cases) {
    cr_expect_eq(st_f32_to_f16(0.0f), 0x0000);
    cr_expect_eq(st_f32_to_f16(-0.0f), 0x8000);
    cr_expect_eq(st_f32_to_f16(1.0f), 0x3c00);
    cr_expect_eq(st_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);          /* tie, even below */
    cr_expect_eq(st_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);      /* tie, even above */
    cr_expect_eq(st_f32_to_f16(65504.0f), 0x7bff);                 /* max */
    cr_expect_eq(st_f32_to_f16(65519.0f), 0x7bff);
    cr_expect_eq(st_f32_to_f16(65520.0f), 0x7c00);                 /* tie past max: to inf */
    cr_expect_eq(st_f32_to_f16(-1e10f), 0xfc00);
    cr_expect_eq(st_f32_to_f16(INFINITY), 0x7c00);
    cr_expect_eq(st_f32_to_f16(-INFINITY), 0xfc00);
    cr_expect_eq(st_f32_to_f16(0x1p-14f), 0x0400);                 /* min normal */
    cr_expect_eq(st_f32_to_f16(0x1p-24f), 0x0001);                 /* min subnormal */
    cr_expect_eq(st_f32_to_f16(0x1p-25f), 0x0000);                 /* tie to zero */
    cr_expect_eq(st_f32_to_f16(nextafterf(0x1p-25f, 1.0f)), 0x0001);
    cr_expect_eq(st_f32_to_f16(-0x1p-30f), 0x8000);
    cr_expect_eq(st_f16_to_f32(0x03ff), 0x3ffp-24f);               /* max subnormal */
    cr_expect_eq(st_f16_to_f32(0x7bff), 65504.0f);
    cr_expect(isinf(st_f16_to_f32(0xfc00)) && st_f16_to_f32(0xfc00) < 0);
    cr_expect(isnan(st_f16_to_f32(0x7e00)));
    /* A NaN whose payload is only in the low bits must not collapse to infinity; the sign is kept. */
    cr_expect(isnan(st_f16_to_f32(st_f32_to_f16(float_from_bits(0x7f800001)))));
    cr_expect(isnan(st_f16_to_f32(st_f32_to_f16(float_from_bits(0xffc00000)))));
    cr_expect(st_f32_to_f16(float_from_bits(0xffc00000)) & 0x8000);

    cr_expect_eq(st_f32_to_bf16(-0.0f), 0x8000);
    cr_expect_eq(st_f32_to_bf16(1.0f), 0x3f80);
    cr_expect_eq(st_f32_to_bf16(FLT_MAX), 0x7f80);                 /* rounds past the bf16 max */
    cr_expect_eq(st_f32_to_bf16(float_from_bits(0x7f7f7fff)), 0x7f7f);
    cr_expect_eq(st_f32_to_bf16(float_from_bits(0x7f7f8000)), 0x7f80); /* tie past max: to inf */
    cr_expect_eq(st_f32_to_bf16(float_from_bits(0x00008000)), 0x0000); /* subnormal tie, even */
    cr_expect_eq(st_f32_to_bf16(float_from_bits(0x00018000)), 0x0002);
    cr_expect_eq(st_f32_to_bf16(-INFINITY), 0xff80);
    cr_expect(isnan(st_bf16_to_f32(st_f32_to_bf16(float_from_bits(0x7f800001)))));
    cr_expect_eq(st_f32_to_bf16(float_from_bits(0xffc00000)), 0xffc0);
}

/* ---- writer + reader round trip ---- */

/* Never zero: sign and magnitude spread over [2^-10, 2^10], inside the normal range of every dtype. */
static float *random_values(size_t n) {
    float *v = malloc((n ? n : 1) * sizeof *v);
    for (size_t i = 0; i < n; i++) {
        float magnitude = ldexpf(1.0f + (float)(next_u32() % 1000000) / 1000000.0f, (int)(next_u32() % 21) - 11);
        v[i] = next_u32() & 1 ? -magnitude : magnitude;
    }
    return v;
}

static size_t numel(const int64_t *shape, int ndim) {
    size_t n = 1;
    for (int d = 0; d < ndim; d++) n *= (size_t)shape[d];
    return n;
}

static void round_trip(StDtype dtype, double relative_tolerance) {
    StWriteTensor in[] = {
        {.name = "blocks.0.attn.q.weight", .dtype = dtype, .ndim = 2, .shape = {7, 13}},
        {.name = "blocks.0.attn.q.bias", .dtype = dtype, .ndim = 1, .shape = {13}},
        {.name = "scale", .dtype = dtype, .ndim = 0},
        {.name = "video", .dtype = dtype, .ndim = 4, .shape = {3, 2, 5, 3}},
        {.name = "empty", .dtype = dtype, .ndim = 2, .shape = {0, 5}},
    };
    int count = sizeof in / sizeof in[0];
    for (int i = 0; i < count; i++) in[i].data = random_values(numel(in[i].shape, in[i].ndim));
    char path[256];
    tmp_path(path, sizeof path, "weights.safetensors");
    Error err = {{0}};
    cr_assert_eq(st_write(path, in, count, &err), 0, "%s", err.msg);

    StFile f;
    cr_assert_eq(st_open(&f, path, &err), 0, "%s", err.msg);
    cr_assert_eq(f.num_tensors, count);
    for (int i = 0; i < count; i++) {
        const StTensor *t = st_find(&f, in[i].name);
        cr_assert_not_null(t, "%s missing", in[i].name);
        cr_expect_eq(t->dtype, dtype);
        cr_expect_eq(t->ndim, in[i].ndim);
        for (int d = 0; d < in[i].ndim; d++) cr_expect_eq(t->shape[d], in[i].shape[d]);
        size_t n = numel(in[i].shape, in[i].ndim);
        cr_expect_eq(t->nbytes, n * (dtype == ST_F32 ? 4 : 2));
        float *out = malloc((n ? n : 1) * sizeof *out);
        cr_assert_eq(st_to_f32(t, out, &err), 0, "%s", err.msg);
        for (size_t j = 0; j < n; j++) {
            double x = in[i].data[j], error = fabs((double)out[j] - x);
            cr_assert(x != 0);
            cr_expect(error <= fabs(x) * relative_tolerance, "%s[%zu]: wrote %.9g, read %.9g", in[i].name, j, x, out[j]);
        }
        free(out);
    }
    st_close(&f);
    for (int i = 0; i < count; i++) free((float *)in[i].data);
}

Test(safetensors, round_trip_f32_is_exact) { round_trip(ST_F32, 0.0); }
Test(safetensors, round_trip_f16_within_half_ulp) { round_trip(ST_F16, 0x1p-11); }
Test(safetensors, round_trip_bf16_within_half_ulp) { round_trip(ST_BF16, 0x1p-8); }

Test(safetensors, writer_layout_is_aligned_padded_and_gapless) {
    float a[3] = {1, 2, 3}, b[5] = {-1, 0.5f, 4, 8, 16}, c[1] = {7}, d[2] = {NAN, -0.0f}, e[3] = {INFINITY, NAN, -2};
    StWriteTensor in[] = {
        {.name = "a_f16", .dtype = ST_F16, .ndim = 1, .shape = {3}, .data = a},
        {.name = "b_f32", .dtype = ST_F32, .ndim = 1, .shape = {5}, .data = b},
        {.name = "c_bf16", .dtype = ST_BF16, .ndim = 1, .shape = {1}, .data = c},
        {.name = "d_f32", .dtype = ST_F32, .ndim = 1, .shape = {2}, .data = d},
        {.name = "e_f16", .dtype = ST_F16, .ndim = 1, .shape = {3}, .data = e},
    };
    char path[256], tmp[300];
    tmp_path(path, sizeof path, "mixed.safetensors");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    Error err = {{0}};
    cr_assert_eq(st_write(path, in, 5, &err), 0, "%s", err.msg);
    cr_expect(!file_exists(tmp));

    StFile f;
    cr_assert_eq(st_open(&f, path, &err), 0, "%s", err.msg);
    const uint8_t *bytes = f.map;
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--) header_len = header_len << 8 | bytes[i];
    cr_expect_eq(header_len % 8, 0);
    char *header = strndup((const char *)bytes + 8, header_len);
    cr_expect(strstr(header, "\"__metadata__\":{\"format\":\"pt\"}") != NULL, "%s", header);
    cr_expect(header[strlen(header) - 1] == ' ' || header[strlen(header) - 1] == '}');
    free(header);
    size_t total = 0;
    for (int i = 0; i < f.num_tensors; i++) {
        const StTensor *t = &f.tensors[i];
        size_t elem = t->dtype == ST_F32 ? 4 : 2;
        cr_expect_eq((uintptr_t)t->data % elem, 0, "%s is misaligned", t->name);
        total += t->nbytes;
    }
    cr_expect_eq(f.map_size, 8 + header_len + total, "data section has gaps");

    float out[3];
    cr_assert_eq(st_to_f32(st_find(&f, "d_f32"), out, &err), 0);
    cr_expect(isnan(out[0]) && out[1] == 0 && signbit(out[1]));
    cr_assert_eq(st_to_f32(st_find(&f, "e_f16"), out, &err), 0);
    cr_expect(isinf(out[0]) && out[0] > 0 && isnan(out[1]) && out[2] == -2);
    cr_assert_eq(st_to_f32(st_find(&f, "c_bf16"), out, &err), 0);
    cr_expect_eq(out[0], 7);
    st_close(&f);
}

Test(safetensors, writer_rejects_bad_input_and_leaves_nothing) {
    float v[2] = {1, 2};
    char path[256], tmp[300];
    tmp_path(path, sizeof path, "bad.safetensors");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    Error err = {{0}};

    StWriteTensor other = {.name = "w", .dtype = ST_OTHER, .ndim = 1, .shape = {2}, .data = v};
    cr_expect_eq(st_write(path, &other, 1, &err), -1);
    cr_expect(strstr(err.msg, path) && strstr(err.msg, "'w'"), "%s", err.msg);

    StWriteTensor twice[2] = {{.name = "w", .dtype = ST_F32, .ndim = 1, .shape = {2}, .data = v},
                              {.name = "w", .dtype = ST_F16, .ndim = 1, .shape = {2}, .data = v}};
    cr_expect_eq(st_write(path, twice, 2, &err), -1);
    cr_expect(strstr(err.msg, "twice"), "%s", err.msg);
    cr_expect(!file_exists(path) && !file_exists(tmp));

    char missing_dir[300];
    snprintf(missing_dir, sizeof missing_dir, "%s/no_such_dir/w.safetensors", tmp_dir);
    cr_expect_eq(st_write(missing_dir, twice, 1, &err), -1);
    cr_expect(strstr(err.msg, "no_such_dir/w.safetensors"), "%s", err.msg);
}

/* The file size limit makes write() stop short and then fail with EFBIG, like a full disk would. */
Test(safetensors, writer_reports_failed_writes_and_removes_tmp) {
    size_t n = 100000;
    float *v = random_values(n);
    StWriteTensor t = {.name = "big", .dtype = ST_F32, .ndim = 1, .shape = {(int64_t)n}, .data = v};
    char path[256], tmp[300];
    tmp_path(path, sizeof path, "big.safetensors");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old_limit, limit;
    getrlimit(RLIMIT_FSIZE, &old_limit);
    limit = old_limit;
    limit.rlim_cur = 4096;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &limit), 0);
    Error err = {{0}};
    int rc = st_write(path, &t, 1, &err);
    setrlimit(RLIMIT_FSIZE, &old_limit);
    cr_expect_eq(rc, -1);
    cr_expect(strstr(err.msg, "write failed") && strstr(err.msg, "big.safetensors"), "%s", err.msg);
    cr_expect(!file_exists(path) && !file_exists(tmp));
    free(v);
}

/* ---- reader on hand-made files ---- */

Test(safetensors, reads_unaligned_data_and_other_dtypes) {
    /* U8 first pushes the F16 and F32 tensors to odd offsets in the data section. */
    const char *header = "{\"u\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                         "\"h\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[1,5]},"
                         "\"f\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[5,13]},"
                         "\"d\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[16,24]},"
                         "\"z\":{\"dtype\":\"BF16\",\"shape\":[0],\"data_offsets\":[2,2]}}  ";
    uint8_t data[24] = {0xab, 0x00, 0x3c, 0x00, 0xc0};
    float f32[2] = {1.5f, -0.25f};
    memcpy(data + 5, f32, sizeof f32);
    char path[256];
    tmp_path(path, sizeof path, "unaligned.safetensors");
    write_raw(path, strlen(header), header, data, sizeof data);

    StFile f;
    Error err = {{0}};
    cr_assert_eq(st_open(&f, path, &err), 0, "%s", err.msg);
    cr_assert_eq(f.num_tensors, 5);
    float out[2];
    cr_assert_eq(st_to_f32(st_find(&f, "h"), out, &err), 0);
    cr_expect(out[0] == 1.0f && out[1] == -2.0f);
    cr_assert_eq(st_to_f32(st_find(&f, "f"), out, &err), 0);
    cr_expect(out[0] == 1.5f && out[1] == -0.25f);
    cr_expect_eq(st_find(&f, "z")->nbytes, 0);
    const StTensor *u = st_find(&f, "u");
    cr_expect(u->dtype == ST_OTHER && strcmp(u->dtype_name, "U8") == 0 && *(const uint8_t *)u->data == 0xab);
    cr_expect(st_find(&f, "d")->dtype == ST_OTHER && strcmp(st_find(&f, "d")->dtype_name, "F64") == 0);
    cr_expect_eq(st_to_f32(u, out, &err), -1);
    cr_expect(strstr(err.msg, "'u'") && strstr(err.msg, "U8"), "%s", err.msg);
    cr_expect_null(st_find(&f, "missing"));
    cr_expect_null(st_find(&f, ""));
    st_close(&f);
}

Test(safetensors, empty_header_has_no_tensors) {
    char path[256];
    tmp_path(path, sizeof path, "empty_header.safetensors");
    write_raw(path, 8, "{}      ", NULL, 0);
    StFile f;
    Error err = {{0}};
    cr_assert_eq(st_open(&f, path, &err), 0, "%s", err.msg);
    cr_expect_eq(f.num_tensors, 0);
    cr_expect_null(st_find(&f, "w"));
    st_close(&f);
}

typedef struct {
    const char *file;
    const char *header;
    size_t data_len;
    const char *expected;
} CorruptCase;

#define W_F32_4(offsets) "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":" offsets "}}"

static const CorruptCase CORRUPT_CASES[] = {
    {"truncated_data.st", W_F32_4("[0,16]"), 8, "tensor 'w': data_offsets [0, 16] end past the data section (8 bytes)"},
    {"end_beyond.st", W_F32_4("[0,1000]"), 16, "end past the data section"},
    {"begin_after_end.st", W_F32_4("[16,0]"), 16, "tensor 'w': data_offsets [16, 0] have begin > end"},
    {"bad_json.st", "{\"w\": {\"dtype\": \"F32\",", 0, "header is not valid JSON"},
    {"empty_json.st", "", 16, "header is not valid JSON"},
    {"json_array.st", "[1, 2, 3]", 0, "header is a JSON array, not an object"},
    {"json_string.st", "\"w\"", 0, "header is a JSON string, not an object"},
    {"trailing_bytes.st", "{} x", 0, "trailing bytes after the JSON"},
    {"overlap.st",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
     24, "tensor 'b' (data_offsets [8, 24]) overlaps tensor 'a' (data_offsets [0, 16])"},
    {"overlap_inside.st",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]},"
     "\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[4,8]},"
     "\"c\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[20,24]}}",
     32, "overlaps tensor 'a'"},
    {"size_mismatch.st", "{\"blocks.0.ffn.0.weight\":{\"dtype\":\"F32\",\"shape\":[8,4],\"data_offsets\":[0,100]}}", 100,
     "tensor 'blocks.0.ffn.0.weight': data_offsets [0, 100] do not match dtype F32 x shape [8, 4] = 128 bytes"},
    {"size_mismatch_f64.st", "{\"w\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
     "do not match dtype F64 x shape [2] = 16 bytes"},
    {"unknown_dtype.st", "{\"w\":{\"dtype\":\"F33\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16, "tensor 'w': unknown dtype 'F33'"},
    {"dtype_number.st", "{\"w\":{\"dtype\":4,\"shape\":[4],\"data_offsets\":[0,16]}}", 16, "\"dtype\" is missing or not a string"},
    {"dtype_missing.st", "{\"w\":{\"shape\":[4],\"data_offsets\":[0,16]}}", 16, "\"dtype\" is missing"},
    {"shape_float.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,10]}}", 16,
     "tensor 'w': shape[0] is not a non-negative integer"},
    {"shape_negative.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,-2],\"data_offsets\":[0,16]}}", 16,
     "shape[1] is not a non-negative integer"},
    {"shape_string.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[\"4\"],\"data_offsets\":[0,16]}}", 16, "shape[0] is not"},
    {"shape_huge.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,16]}}", 16, "shape[0] is not"},
    {"shape_not_array.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,16]}}", 16, "\"shape\" is missing or not an array"},
    {"shape_nine_dims.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,4],\"data_offsets\":[0,16]}}", 16,
     "shape has 9 dims"},
    {"shape_overflow.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,16]}}", 16,
     "overflows 64 bits"},
    {"offsets_missing.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4]}}", 16, "tensor 'w': missing \"data_offsets\""},
    {"offsets_negative.st", W_F32_4("[-16,0]"), 16, "\"data_offsets\" is not an array of two non-negative integers"},
    {"offsets_float.st", W_F32_4("[0.5,16.5]"), 17, "\"data_offsets\" is not an array"},
    {"offsets_three.st", W_F32_4("[0,8,16]"), 16, "\"data_offsets\" is not an array"},
    {"offsets_strings.st", W_F32_4("[\"0\",\"16\"]"), 16, "\"data_offsets\" is not an array"},
    {"offsets_object.st", W_F32_4("{\"begin\":0}"), 16, "\"data_offsets\" is not an array"},
    {"entry_not_object.st", "{\"w\": 5}", 0, "tensor 'w': entry is a JSON number, not an object"},
    {"duplicate_names.st",
     "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
     8, "tensor 'w' appears twice"},
    {"metadata_not_object.st", "{\"__metadata__\": [1]}", 0, "\"__metadata__\" is a JSON array, not an object"},
};

Test(safetensors, corrupt_headers_are_rejected_with_specific_messages) {
    for (size_t i = 0; i < sizeof CORRUPT_CASES / sizeof CORRUPT_CASES[0]; i++) {
        const CorruptCase *c = &CORRUPT_CASES[i];
        char path[256];
        tmp_path(path, sizeof path, c->file);
        write_raw(path, strlen(c->header), c->header, NULL, c->data_len);
        expect_open_fails(path, c->expected);
    }
}

Test(safetensors, corrupt_length_fields_and_tiny_files_are_rejected) {
    char path[256];
    tmp_path(path, sizeof path, "past_end.st");
    write_raw(path, 1000, "{}", NULL, 0);
    expect_open_fails(path, "header length 1000 runs past the end of the file (10 bytes)");

    tmp_path(path, sizeof path, "one_past_end.st");
    write_raw(path, 3, "{}", NULL, 0);
    expect_open_fails(path, "header length 3 runs past the end of the file");

    tmp_path(path, sizeof path, "huge_length.st");
    write_raw(path, 1ull << 63, "{}", NULL, 64);
    expect_open_fails(path, "header length 9223372036854775808 exceeds");

    tmp_path(path, sizeof path, "max_length.st");
    write_raw(path, UINT64_MAX, "{}", NULL, 64);
    expect_open_fails(path, "exceeds");

    tmp_path(path, sizeof path, "empty.st");
    write_bytes(path, "", 0);
    expect_open_fails(path, "file is 0 bytes");

    tmp_path(path, sizeof path, "seven.st");
    write_bytes(path, "\x02\0\0\0\0\0\0", 7);
    expect_open_fails(path, "file is 7 bytes");

    tmp_path(path, sizeof path, "does_not_exist.st");
    expect_open_fails(path, "cannot open");

    expect_open_fails(tmp_dir, "not a readable regular file");
}
