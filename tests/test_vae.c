/* The Wan2.1 VAE decoder (models/vae/vae.c) against tests/vae_reference.py, an independent float64 PyTorch
 * transcription of wan/modules/vae.py that decodes with the official per-latent-frame feature cache (and checks
 * that whole-sequence and 2-frame chunks agree with it). Random weights at small widths with the real structure.
 * Tolerance: max |C - torch| <= 1e-4 * max |torch| (fp32 against float64). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "metrics/image.h"
#include "models/safetensors.h"
#include "models/vae/vae.h"
#include "tests/fixtures.h"
#ifdef CACHEBENCH_CUDA
#include "models/vae/vae_cuda.h"
#endif

typedef struct {
    float *video; /* [3][T][h][w] */
    int T, h, w, calls;
} Collect;

static int collect_frame(void *user, int t, const float *rgb, int height, int width, Error *err) {
    Collect *c = user;
    if (t != c->calls || t >= c->T || height != c->h || width != c->w)
        return error_set(err, "unexpected frame %d (%dx%d), expected %d of %d (%dx%d)", t, height, width, c->calls,
                         c->T, c->h, c->w);
    const size_t P = (size_t)height * width;
    for (int ch = 0; ch < 3; ch++) memcpy(c->video + ((size_t)ch * c->T + t) * P, rgb + ch * P, P * sizeof(float));
    c->calls++;
    return 0;
}

static float *decode_all(const VaeModel *m, const float *z, int F, int H, int W, int *T_out) {
    const int up = 1 << (m->cfg.num_stages - 1);
    Collect c = {.T = vae_num_frames(&m->cfg, F), .h = H * up, .w = W * up};
    c.video = calloc((size_t)3 * c.T * c.h * c.w, sizeof(float));
    cr_assert_not_null(c.video);
    Error err = {0};
    cr_assert_eq(vae_decode(m, z, F, H, W, collect_frame, &c, &err), 0, "%s", err.msg);
    cr_assert_eq(c.calls, c.T, "decoded %d frames, expected %d", c.calls, c.T);
    *T_out = c.T;
    return c.video;
}

static void join_ints(char *buf, size_t cap, const int *v, int n) {
    buf[0] = 0;
    for (int i = 0; i < n; i++) snprintf(buf + strlen(buf), cap - strlen(buf), "%s%d", i ? "," : "", v[i]);
}

static int have_torch(void) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import numpy, torch' >/dev/null 2>&1", fixture_python());
    return system(cmd) == 0;
}

static VaeConfig small_config(int dim, int stages, const int *mult, int res_blocks, const int *temporal) {
    VaeConfig c = {.z_dim = VAE_Z_DIM, .dim = dim, .num_stages = stages, .num_res_blocks = res_blocks};
    for (int i = 0; i < stages; i++) c.dim_mult[i] = mult[i];
    for (int i = 0; i < stages - 1; i++) c.temporal_upsample[i] = temporal[i];
    return c;
}

static void check_against_torch(const VaeConfig *cfg, int F, int H, int W, uint64_t seed) {
    char *dir = fixture_tmpdir();
    char wpath[512], zpath[512], rpath[512], cmd[4096], mult[64], temporal[64];
    snprintf(wpath, sizeof wpath, "%s/vae.safetensors", dir);
    snprintf(zpath, sizeof zpath, "%s/latents.safetensors", dir);
    snprintf(rpath, sizeof rpath, "%s/ref.safetensors", dir);
    Error err = {0};
    cr_assert_eq(vae_write_random(wpath, cfg, seed, ST_F32, &err), 0, "%s", err.msg);
    const size_t nz = (size_t)VAE_Z_DIM * F * H * W;
    float *z = malloc(nz * sizeof(float));
    fixture_random(z, nz, seed + 1);
    for (size_t i = 0; i < nz; i++) z[i] *= 1.7f; /* latents are roughly unit-variance: [-1.7, 1.7) */
    StWriteTensor lt = {.name = "latents", .dtype = ST_F32, .ndim = 4, .shape = {VAE_Z_DIM, F, H, W}, .data = z};
    cr_assert_eq(st_write(zpath, &lt, 1, &err), 0, "%s", err.msg);

    join_ints(mult, sizeof mult, cfg->dim_mult, cfg->num_stages);
    join_ints(temporal, sizeof temporal, cfg->temporal_upsample, cfg->num_stages - 1);
    snprintf(cmd, sizeof cmd, "'%s' tests/vae_reference.py '%s' '%s' '%s' --dim %d --mult %s --res-blocks %d "
             "--temporal '%s' 2>&1", fixture_python(), wpath, zpath, rpath, cfg->dim, mult, cfg->num_res_blocks,
             temporal);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    char out[8192] = {0};
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    cr_assert_eq(pclose(p), 0, "%s failed:\n%s", cmd, out);

    VaeModel m;
    cr_assert_eq(vae_load_auto(&m, wpath, &err), 0, "%s", err.msg);
    cr_assert_eq(m.cfg.dim, cfg->dim);
    cr_assert_eq(m.cfg.num_stages, cfg->num_stages);
    cr_assert_eq(m.cfg.num_res_blocks, cfg->num_res_blocks);
    for (int i = 0; i < cfg->num_stages - 1; i++) cr_assert_eq(m.cfg.temporal_upsample[i], cfg->temporal_upsample[i]);
    int T;
    float *video = decode_all(&m, z, F, H, W, &T);

    StFile ref;
    cr_assert_eq(st_open(&ref, rpath, &err), 0, "%s", err.msg);
    const StTensor *rv = st_find(&ref, "video");
    cr_assert_not_null(rv);
    const int up = 1 << (cfg->num_stages - 1);
    cr_assert(rv->ndim == 4 && rv->shape[0] == 3 && rv->shape[1] == T && rv->shape[2] == H * up &&
                  rv->shape[3] == W * up,
              "reference video has shape [%lld, %lld, %lld, %lld], C gives [3, %d, %d, %d]", (long long)rv->shape[0],
              (long long)rv->shape[1], (long long)rv->shape[2], (long long)rv->shape[3], T, H * up, W * up);
    const size_t nv = (size_t)3 * T * H * up * W * up;
    float *want = malloc(nv * sizeof(float));
    cr_assert_eq(st_to_f32(rv, want, &err), 0, "%s", err.msg);
    double max_diff = 0, max_ref = 0;
    size_t saturated = 0;
    for (size_t i = 0; i < nv; i++) {
        max_diff = fmax(max_diff, fabs((double)video[i] - want[i]));
        max_ref = fmax(max_ref, fabs((double)want[i]));
        saturated += fabsf(want[i]) >= 1.0f;
    }
    cr_assert(saturated < nv / 4, "%zu of %zu reference values are clamped: the test would not see errors", saturated,
              nv);
    cr_log_info("max |C - torch| = %.3g of max |torch| = %.3g", max_diff, max_ref);
    cr_assert(max_diff <= 1e-4 * max_ref, "max |C - torch| = %.3g, max |torch| = %.3g (tolerance 1e-4 relative)",
              max_diff, max_ref);
    st_close(&ref);
    free(want);
    free(video);
    free(z);
    vae_free(&m);
    fixture_rmdir(dir);
    free(dir);
}

Test(vae, matches_torch_reference_wan21_structure, .timeout = 120) {
    if (!have_torch()) cr_skip_test("%s cannot import numpy and torch", fixture_python());
    /* Wan2.1's structure (dim_mult 1 2 4 4, 2 res blocks, temporal 1 1 0) at width 8: 3 latent frames of 4x6 ->
     * 9 frames of 32x48. */
    const int mult[] = {1, 2, 4, 4}, temporal[] = {1, 1, 0};
    VaeConfig cfg = small_config(8, 4, mult, 2, temporal);
    check_against_torch(&cfg, 3, 4, 6, 11);
}

Test(vae, matches_torch_reference_other_shapes, .timeout = 120) {
    if (!have_torch()) cr_skip_test("%s cannot import numpy and torch", fixture_python());
    /* Temporal upsampling only in the second stage, 1 res block, 4 latent frames of 3x5 (odd sizes). */
    const int mult[] = {1, 2, 2}, temporal[] = {0, 1};
    VaeConfig cfg = small_config(6, 3, mult, 1, temporal);
    check_against_torch(&cfg, 4, 3, 5, 12);
}

Test(vae, wan21_config_and_frame_count) {
    VaeConfig c = vae_config_wan21();
    Error err = {0};
    cr_assert_eq(vae_config_check(&c, &err), 0, "%s", err.msg);
    cr_assert_eq(vae_num_frames(&c, 21), 81);
    cr_assert_eq(vae_num_frames(&c, 1), 1);
    /* Decoder ~73.3 M parameters (wan.md §5), conv2 included. */
    const size_t params = vae_num_params(&c);
    cr_assert(params > 73000000 && params < 73600000, "%zu parameters", params);
    /* wan.md §5 estimates 480p x 81 frames (21 latent frames of 60x104) at ~275 TFLOP. */
    const double tflop = vae_flops_decode(&c, 21, 60, 104) / 1e12;
    cr_assert(tflop > 270 && tflop < 280, "%.1f TFLOP", tflop);
    /* The random init allocates exactly what a checkpoint provides. */
    const int mult[] = {1, 2, 4, 4}, temporal[] = {1, 1, 0};
    VaeConfig small = small_config(8, 4, mult, 2, temporal);
    VaeModel m;
    cr_assert_eq(vae_init_random(&m, &small, 1, &err), 0, "%s", err.msg);
    cr_assert_eq(m.arena_floats, vae_num_params(&small));
    vae_free(&m);
}

/* Decoding is causal: the first frames of a longer latent video equal the decode of its first latent frames. */
Test(vae, streaming_is_causal, .timeout = 60) {
    const int mult[] = {1, 2, 2}, temporal[] = {1, 1};
    VaeConfig cfg = small_config(4, 3, mult, 1, temporal);
    VaeModel m;
    Error err = {0};
    cr_assert_eq(vae_init_random(&m, &cfg, 5, &err), 0, "%s", err.msg);
    const int F = 3, H = 3, W = 4, P = H * W;
    float z[VAE_Z_DIM * 3 * 3 * 4], z2[VAE_Z_DIM * 2 * 3 * 4];
    fixture_random(z, sizeof z / sizeof z[0], 9);
    for (int c = 0; c < VAE_Z_DIM; c++) memcpy(z2 + c * 2 * P, z + c * F * P, 2 * P * sizeof(float));
    int T3, T2;
    float *v3 = decode_all(&m, z, 3, H, W, &T3), *v2 = decode_all(&m, z2, 2, H, W, &T2);
    cr_assert_eq(T3, 9);
    cr_assert_eq(T2, 5);
    const size_t fp = (size_t)P * 16;
    int differs_later = 0;
    for (int ch = 0; ch < 3; ch++) {
        for (size_t i = 0; i < (size_t)T2 * fp; i++)
            cr_assert_eq(v2[ch * T2 * fp + i], v3[ch * T3 * fp + i], "channel %d value %zu", ch, i);
        differs_later |= memcmp(v3 + ch * T3 * fp + T2 * fp, v3 + ch * T3 * fp + (T2 - 4) * fp, 4 * fp * 4) != 0;
    }
    cr_assert(differs_later, "the last latent frame changed nothing");
    free(v3);
    free(v2);
    vae_free(&m);
}

/* Copies every tensor of src into dst, letting edit() change one. */
static void rewrite(const char *src, const char *dst, void (*edit)(StWriteTensor *t, float *data)) {
    StFile f;
    Error err = {0};
    cr_assert_eq(st_open(&f, src, &err), 0, "%s", err.msg);
    StWriteTensor *t = calloc((size_t)f.num_tensors, sizeof *t);
    float **data = calloc((size_t)f.num_tensors, sizeof *data);
    for (int i = 0; i < f.num_tensors; i++) {
        const StTensor *s = &f.tensors[i];
        size_t n = 1;
        for (int d = 0; d < s->ndim; d++) n *= (size_t)s->shape[d];
        data[i] = malloc((n ? n : 1) * sizeof(float));
        cr_assert_eq(st_to_f32(s, data[i], &err), 0, "%s", err.msg);
        t[i].name = s->name;
        t[i].dtype = ST_F32;
        t[i].ndim = s->ndim;
        memcpy(t[i].shape, s->shape, sizeof t[i].shape);
        t[i].data = data[i];
        if (strcmp(s->name, "decoder.middle.0.residual.6.weight") == 0) edit(&t[i], data[i]);
    }
    cr_assert_eq(st_write(dst, t, f.num_tensors, &err), 0, "%s", err.msg);
    for (int i = 0; i < f.num_tensors; i++) free(data[i]);
    free(data);
    free(t);
    st_close(&f);
}

static void wrong_shape(StWriteTensor *t, float *data) {
    (void)data;
    t->shape[4] = 1; /* [C, C, 3, 3, 1]: fewer values than the file holds for it, still a valid file */
}

static void put_nan(StWriteTensor *t, float *data) {
    (void)t;
    data[7] = NAN;
}

static void expect_load_error(void (*edit)(StWriteTensor *, float *), const char *what) {
    char *dir = fixture_tmpdir();
    char good[512], bad[512];
    snprintf(good, sizeof good, "%s/good.safetensors", dir);
    snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);
    const int mult[] = {1, 2}, temporal[] = {1};
    VaeConfig cfg = small_config(4, 2, mult, 1, temporal);
    Error err = {0};
    cr_assert_eq(vae_write_random(good, &cfg, 3, ST_BF16, &err), 0, "%s", err.msg);
    VaeModel m;
    cr_assert_eq(vae_load_auto(&m, good, &err), 0, "a BF16 checkpoint must load: %s", err.msg);
    vae_free(&m);
    rewrite(good, bad, edit);
    err.msg[0] = 0;
    cr_assert_neq(vae_load_auto(&m, bad, &err), 0, "a checkpoint with a %s tensor loaded", what);
    cr_assert(strstr(err.msg, "decoder.middle.0.residual.6.weight") && strstr(err.msg, bad),
              "the error must name the file and the tensor: %s", err.msg);
    cr_assert(strstr(err.msg, what), "the error must say '%s': %s", what, err.msg);
    fixture_rmdir(dir);
    free(dir);
}

Test(vae, wrong_shape_names_the_tensor) { expect_load_error(wrong_shape, "shape"); }
Test(vae, nan_names_the_tensor) { expect_load_error(put_nan, "non-finite"); }

Test(vae, missing_tensor_names_the_tensor) {
    char *dir = fixture_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/partial.safetensors", dir);
    const int mult[] = {1, 2}, temporal[] = {1};
    VaeConfig cfg = small_config(4, 2, mult, 1, temporal);
    Error err = {0};
    cr_assert_eq(vae_write_random(path, &cfg, 3, ST_F32, &err), 0, "%s", err.msg);
    VaeConfig bigger = cfg;
    bigger.num_res_blocks = 2;
    VaeModel m;
    cr_assert_neq(vae_load(&m, &bigger, path, &err), 0);
    cr_assert(strstr(err.msg, "missing tensor 'decoder.upsamples.2.residual") || strstr(err.msg, "shape"),
              "%s", err.msg);
    fixture_rmdir(dir);
    free(dir);
}

/* ---- cachebench decode ---- */

static void write_latents(const char *path, int channels, int F, int H, int W, uint64_t seed) {
    const size_t n = (size_t)channels * F * H * W;
    float *z = malloc(n * sizeof(float));
    fixture_random(z, n, seed);
    StWriteTensor t = {.name = "latents", .dtype = ST_F32, .ndim = 4, .shape = {channels, F, H, W}, .data = z};
    Error err = {0};
    cr_assert_eq(st_write(path, &t, 1, &err), 0, "%s", err.msg);
    free(z);
}

static int count_entries(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls -A '%s' 2>/dev/null | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1) n = -1;
        pclose(p);
    }
    return n;
}

Test(vae, cli_decode_writes_frames_and_tensor, .timeout = 60) {
    char *dir = fixture_tmpdir();
    char wpath[512], zpath[512], out[512], tpath[512], png[600], log[8192];
    snprintf(wpath, sizeof wpath, "%s/vae.safetensors", dir);
    snprintf(zpath, sizeof zpath, "%s/z.safetensors", dir);
    snprintf(out, sizeof out, "%s/frames", dir);
    snprintf(tpath, sizeof tpath, "%s/video.safetensors", dir);
    const int mult[] = {1, 2, 2}, temporal[] = {1, 1};
    VaeConfig cfg = small_config(4, 3, mult, 1, temporal);
    Error err = {0};
    cr_assert_eq(vae_write_random(wpath, &cfg, 21, ST_F16, &err), 0, "%s", err.msg);
    const int F = 3, H = 3, W = 4, T = 9, h = 12, w = 16;
    write_latents(zpath, VAE_Z_DIM, F, H, W, 22);
    const char *args[] = {"decode", "--vae", wpath, zpath, "--out", out, "--out-tensor", tpath, NULL};
    cr_assert_eq(fixture_run_cli(log, sizeof log, args), 0, "%s", log);
    cr_assert(strstr(log, "latent frame 3/3"), "progress per latent frame expected on stderr:\n%s", log);
    cr_assert_eq(count_entries(out), T, "expected exactly %d PNGs (no staging folder left):\n%s", T, log);

    /* The tensor equals the library's decode, the PNGs its quantisation. */
    VaeModel m;
    cr_assert_eq(vae_load_auto(&m, wpath, &err), 0, "%s", err.msg);
    StFile zf, vf;
    cr_assert_eq(st_open(&zf, zpath, &err), 0, "%s", err.msg);
    int T_lib;
    float *lib = decode_all(&m, st_find(&zf, "latents")->data, F, H, W, &T_lib);
    cr_assert_eq(st_open(&vf, tpath, &err), 0, "%s", err.msg);
    const StTensor *v = st_find(&vf, "video");
    cr_assert(v && v->ndim == 4 && v->shape[0] == 3 && v->shape[1] == T && v->shape[2] == h && v->shape[3] == w);
    const float *got = v->data;
    for (size_t i = 0; i < (size_t)3 * T * h * w; i++)
        cr_assert(fabsf(got[i] - lib[i]) <= 1e-6f, "video[%zu] = %g, library %g", i, got[i], lib[i]);
    float frame[3 * 12 * 16];
    uint8_t want[12 * 16 * 3];
    for (int t = 0; t < T; t += 4) {
        for (int c = 0; c < 3; c++) memcpy(frame + c * h * w, lib + ((size_t)c * T + t) * h * w, h * w * sizeof(float));
        vae_frame_to_rgb8(frame, h, w, want);
        snprintf(png, sizeof png, "%s/frame_%03d.png", out, t);
        Image img;
        cr_assert_eq(image_read_png(png, &img, &err), 0, "%s", err.msg);
        cr_assert(img.height == h && img.width == w && memcmp(img.rgb, want, sizeof want) == 0, "%s differs", png);
        image_free(&img);
    }
    st_close(&zf);
    st_close(&vf);
    free(lib);
    vae_free(&m);
    fixture_rmdir(dir);
    free(dir);
}

Test(vae, cli_decode_bad_inputs_write_nothing, .timeout = 60) {
    char *dir = fixture_tmpdir();
    char wpath[512], zbad[512], zgood[512], out[512], tpath[512], log[8192];
    snprintf(wpath, sizeof wpath, "%s/vae.safetensors", dir);
    snprintf(zbad, sizeof zbad, "%s/z15.safetensors", dir);
    snprintf(zgood, sizeof zgood, "%s/z.safetensors", dir);
    snprintf(out, sizeof out, "%s/frames", dir);
    snprintf(tpath, sizeof tpath, "%s/video.safetensors", dir);
    const int mult[] = {1, 2}, temporal[] = {1};
    VaeConfig cfg = small_config(4, 2, mult, 1, temporal);
    Error err = {0};
    cr_assert_eq(vae_write_random(wpath, &cfg, 2, ST_F32, &err), 0, "%s", err.msg);
    write_latents(zbad, 15, 2, 3, 3, 1);
    write_latents(zgood, VAE_Z_DIM, 2, 3, 3, 1);

    const char *wrong_channels[] = {"decode", "--vae", wpath, zbad, "--out", out, "--out-tensor", tpath, NULL};
    cr_assert_eq(fixture_run_cli(log, sizeof log, wrong_channels), 1, "%s", log);
    cr_assert(strstr(log, zbad) && strstr(log, "latents"), "the error must name the file and tensor: %s", log);
    const char *no_vae[] = {"decode", "--vae", zgood, zgood, "--out", out, "--out-tensor", tpath, NULL};
    cr_assert_eq(fixture_run_cli(log, sizeof log, no_vae), 1, "%s", log);
    cr_assert(strstr(log, "not a Wan VAE checkpoint"), "%s", log);
    const char *no_output[] = {"decode", "--vae", wpath, zgood, NULL};
    cr_assert_eq(fixture_run_cli(log, sizeof log, no_output), 2, "%s", log);
    cr_assert_eq(count_entries(out), 0, "bad input left files in %s", out);
    cr_assert_neq(access(tpath, F_OK), 0, "bad input left %s", tpath);
    cr_assert_eq(count_entries(dir), 3, "only the three inputs may remain in %s", dir);
    fixture_rmdir(dir);
    free(dir);
}

/* scripts/convert_wan_vae.py on a tiny Wan2.1_VAE.pth-like state dict: names kept, the decoder loads the result
 * with the same weights (F32 exactly; BF16 within its rounding), --decoder-only drops encoder.* and conv1.*. */
Test(vae, convert_script_keeps_names_and_values, .timeout = 120) {
    if (!have_torch()) cr_skip_test("%s cannot import numpy and torch", fixture_python());
    char *dir = fixture_tmpdir();
    char src[512], pth[512], f32[512], bf16[512], cmd[4096], log[8192];
    snprintf(src, sizeof src, "%s/src.safetensors", dir);
    snprintf(pth, sizeof pth, "%s/Wan2.1_VAE.pth", dir);
    snprintf(f32, sizeof f32, "%s/f32.safetensors", dir);
    snprintf(bf16, sizeof bf16, "%s/bf16.safetensors", dir);
    const int mult[] = {1, 2, 2}, temporal[] = {1, 0};
    VaeConfig cfg = small_config(4, 3, mult, 1, temporal);
    Error err = {0};
    cr_assert_eq(vae_write_random(src, &cfg, 31, ST_F32, &err), 0, "%s", err.msg);
    snprintf(cmd, sizeof cmd,
             "'%1$s' tests/vae_make_pth.py '%2$s' '%3$s' && '%1$s' scripts/convert_wan_vae.py '%3$s' '%4$s' && "
             "'%1$s' scripts/convert_wan_vae.py '%3$s' '%5$s' --dtype bf16 --decoder-only 2>&1",
             fixture_python(), src, pth, f32, bf16);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(log, 1, sizeof log - 1, p);
    log[n] = 0;
    cr_assert_eq(pclose(p), 0, "%s failed:\n%s", cmd, log);

    VaeModel a, b, c;
    cr_assert_eq(vae_load_auto(&a, src, &err), 0, "%s", err.msg);
    cr_assert_eq(vae_load_auto(&b, f32, &err), 0, "%s", err.msg);
    cr_assert_eq(vae_load_auto(&c, bf16, &err), 0, "%s", err.msg);
    cr_assert_eq(a.arena_floats, b.arena_floats);
    cr_assert_eq(a.arena_floats, c.arena_floats);
    cr_assert_eq(memcmp(a.arena, b.arena, a.arena_floats * sizeof(float)), 0, "F32 conversion changed weights");
    for (size_t i = 0; i < a.arena_floats; i++)
        cr_assert(fabsf(c.arena[i] - a.arena[i]) <= 0.0040f * fabsf(a.arena[i]), "BF16 weight %zu: %g vs %g", i,
                  c.arena[i], a.arena[i]);
    StFile f;
    cr_assert_eq(st_open(&f, f32, &err), 0, "%s", err.msg);
    cr_assert_not_null(st_find(&f, "encoder.conv1.weight"), "the full conversion keeps the encoder");
    cr_assert_not_null(st_find(&f, "conv1.bias"));
    st_close(&f);
    cr_assert_eq(st_open(&f, bf16, &err), 0, "%s", err.msg);
    cr_assert_null(st_find(&f, "encoder.conv1.weight"), "--decoder-only keeps decoder.* and conv2.* only");
    cr_assert_null(st_find(&f, "conv1.weight"));
    cr_assert_eq(f.tensors[0].dtype, ST_BF16);
    st_close(&f);
    vae_free(&a);
    vae_free(&b);
    vae_free(&c);
    fixture_rmdir(dir);
    free(dir);
}

/* ---- the CUDA decoder against the CPU (FP32 both; skipped without a GPU) ---- */

#ifdef CACHEBENCH_CUDA
/* Pushes every latent frame of z [16][F][H][W] through d into c. */
static void push_all(VaeDecoder *d, const float *z, int F, int H, int W, Collect *c) {
    const size_t P = (size_t)H * W;
    float *frame = malloc((size_t)VAE_Z_DIM * P * sizeof(float));
    Error err = {0};
    for (int f = 0; f < F; f++) {
        for (int ch = 0; ch < VAE_Z_DIM; ch++) memcpy(frame + ch * P, z + ((size_t)ch * F + f) * P, P * sizeof(float));
        cr_assert_eq(vae_decoder_push(d, frame, collect_frame, c, &err), 0, "%s", err.msg);
    }
    free(frame);
}

static void cuda_matches_cpu(const VaeConfig *cfg, int F, int H, int W) {
    VaeModel m;
    Error err = {0};
    cr_assert_eq(vae_init_random(&m, cfg, 41, &err), 0, "%s", err.msg);
    VaeDecoder *d;
    if (vae_decoder_new_cuda(&d, &m, H, W, &err)) {
        vae_free(&m);
        if (strstr(err.msg, "no CUDA device")) cr_skip_test("%s", err.msg);
        cr_assert_fail("%s", err.msg);
    }
    const size_t nz = (size_t)VAE_Z_DIM * F * H * W;
    float *z = malloc(nz * sizeof(float));
    fixture_random(z, nz, 42);
    const int up = 1 << (cfg->num_stages - 1);
    Collect c = {.T = vae_num_frames(cfg, F), .h = H * up, .w = W * up};
    c.video = calloc((size_t)3 * c.T * c.h * c.w, sizeof(float));
    push_all(d, z, F, H, W, &c);
    cr_assert_eq(c.calls, c.T);
    int T;
    float *cpu = decode_all(&m, z, F, H, W, &T);
    double max_diff = 0, max_ref = 0;
    for (size_t i = 0; i < (size_t)3 * T * c.h * c.w; i++) {
        max_diff = fmax(max_diff, fabs((double)c.video[i] - cpu[i]));
        max_ref = fmax(max_ref, fabs((double)cpu[i]));
    }
    cr_log_info("CUDA vs CPU: max diff %.3g of max %.3g", max_diff, max_ref);
    cr_assert(max_diff <= 1e-4 * max_ref, "max |CUDA - CPU| = %.3g, max |CPU| = %.3g (tolerance 1e-4 relative)",
              max_diff, max_ref);
    vae_decoder_free(d);
    free(c.video);
    free(cpu);
    free(z);
    vae_free(&m);
}
#endif

Test(vae_cuda, matches_cpu_small_and_real_width, .timeout = 300) {
#ifndef CACHEBENCH_CUDA
    cr_skip_test("built without CUDA");
#else
    const int mult[] = {1, 2, 4, 4}, temporal[] = {1, 1, 0};
    VaeConfig small = small_config(8, 4, mult, 2, temporal);
    cuda_matches_cpu(&small, 3, 4, 6);
    VaeConfig wan = vae_config_wan21(); /* the real widths (attention over 384 channels), 2 latent frames of 4x6 */
    cuda_matches_cpu(&wan, 2, 4, 6);
#endif
}

/* vae_decode_video (the hook for run records): [T][h][w][3] uint8, the quantisation of the float decode. */
Test(vae, decode_video_is_the_quantised_decode) {
    const int mult[] = {1, 2}, temporal[] = {1};
    VaeConfig cfg = small_config(4, 2, mult, 1, temporal);
    VaeModel m;
    Error err = {0};
    cr_assert_eq(vae_init_random(&m, &cfg, 8, &err), 0, "%s", err.msg);
    const int F = 3, H = 2, W = 3, h = 4, w = 6;
    float z[VAE_Z_DIM * 3 * 2 * 3];
    fixture_random(z, sizeof z / sizeof z[0], 3);
    int T;
    float *v = decode_all(&m, z, F, H, W, &T);
    cr_assert_eq(T, 5);
    uint8_t *video = malloc((size_t)T * h * w * 3), want[4 * 6 * 3];
    float frame[3 * 4 * 6];
    cr_assert_eq(vae_decode_video(&m, z, F, H, W, video, &err), 0, "%s", err.msg);
    int distinct = 0;
    for (int t = 0; t < T; t++) {
        for (int c = 0; c < 3; c++) memcpy(frame + c * h * w, v + ((size_t)c * T + t) * h * w, sizeof(float) * h * w);
        vae_frame_to_rgb8(frame, h, w, want);
        cr_assert_eq(memcmp(video + (size_t)t * h * w * 3, want, sizeof want), 0, "frame %d", t);
        for (size_t i = 1; i < sizeof want; i++) distinct += want[i] != want[0];
    }
    cr_assert(distinct > 0, "a constant video cannot show a quantisation error");
    free(video);
    free(v);
    vae_free(&m);
}
