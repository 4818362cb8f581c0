/* Quality metrics (metrics/metrics.h, metrics/image.h, `cachebench metrics`).
 * The numbers are checked against values computed here by other implementations, never against constants we
 * computed ourselves: PSNR and SSIM against scikit-image (tests/ssim_reference.py), LPIPS against the same network
 * in torch (tests/lpips_reference.py) with a seeded synthetic AlexNet backbone and the real linear heads, since the
 * real backbone is not available here. Those tests skip, saying why, when the Python modules are missing.
 * Shared data comes from ../shared (CACHEBENCH_SHARED overrides it); it is read in place, never copied. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/rng.h"
#include "metrics/image.h"
#include "metrics/metrics.h"
#include "results/record.h"
#include "tests/fixtures.h"

/* ---------------------------------------------------------------------------------------------------------- */
/* Helpers */

static void shared_path(char *buf, size_t cap, const char *rel) {
    const char *shared = getenv("CACHEBENCH_SHARED");
    snprintf(buf, cap, "%s/%s", shared && *shared ? shared : "../shared", rel);
}

/* The three oracle images of richzhang/PerceptualSimilarity: ex_ref, ex_p0, ex_p1. Skips when they are absent
 * (a clone outside the workspace), naming where they were looked for. */
static const char *const ORACLES[3] = {"ex_ref", "ex_p0", "ex_p1"};

static void oracle_path(char *buf, size_t cap, int i) {
    char rel[64];
    snprintf(rel, sizeof rel, "metric-oracles/%s.png", ORACLES[i]);
    shared_path(buf, cap, rel);
}

static void load_oracles(Image img[3], char paths[3][4096]) {
    for (int i = 0; i < 3; i++) {
        oracle_path(paths[i], sizeof paths[i], i);
        if (access(paths[i], R_OK) != 0)
            cr_skip_test("oracle image %s not found (set CACHEBENCH_SHARED to the shared folder)", paths[i]);
        Error err = {{0}};
        cr_assert_eq(image_read_png(paths[i], &img[i], &err), 0, "%s", err.msg);
        cr_assert_eq(img[i].height, 64);
        cr_assert_eq(img[i].width, 64);
    }
}

/* Seeded random RGB8 pixels; b (optional) is a as seen through noise of amplitude ±noise, so the pair is similar
 * but not identical, like a cached run against its baseline. */
static void random_pair(uint8_t *a, uint8_t *b, size_t n, uint64_t seed, int noise) {
    float *u = malloc(2 * n * sizeof(float));
    cr_assert_not_null(u);
    philox_uniform(u, 2 * n, seed, 0);
    for (size_t i = 0; i < n; i++) {
        a[i] = (uint8_t)(u[i] * 256.0f);
        if (b) {
            int v = a[i] + (int)((u[n + i] * 2.0f - 1.0f) * noise);
            b[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    free(u);
}

/* Appends ' word' to cmd, single-quoted for the shell. */
static void append_arg(char *cmd, size_t cap, const char *word) {
    size_t len = strlen(cmd);
    len += snprintf(cmd + len, cap - len, " '");
    for (const char *p = word; *p && len + 5 < cap; p++) {
        if (*p == '\'') len += snprintf(cmd + len, cap - len, "'\\''");
        else cmd[len++] = *p, cmd[len] = '\0';
    }
    snprintf(cmd + len, cap - len, "'");
}

/* Runs cmd through the shell, stdout into out (stderr too, for the messages); returns the exit status. */
static int run_capture(const char *cmd, char *out, size_t cap) {
    char full[16384];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    cr_assert_not_null(p, "cannot run %s", cmd);
    size_t len = fread(out, 1, cap - 1, p);
    out[len] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Runs a reference script; skips the test when it reports a missing module (exit 77), fails on other errors. */
static void run_reference(const char *cmd, char *out, size_t cap) {
    int rc = run_capture(cmd, out, cap);
    if (rc == 77) cr_skip_test("reference unavailable: %s", out);
    cr_assert_eq(rc, 0, "%s failed (%d):\n%s", cmd, rc, out);
}

static void write_png(const char *dir, const char *name, const uint8_t *rgb, int h, int w, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s", dir, name);
    Error err = {{0}};
    cr_assert_eq(image_write_png(path, rgb, h, w, &err), 0, "%s", err.msg);
}

/* Runs build/cachebench with args; returns the exit status, output (stdout and stderr) in out. */
static int cli(char *out, size_t cap, const char *const *args) {
    int rc = fixture_run_cli(out, cap, args);
    cr_assert_neq(rc, -1, "cannot run build/cachebench");
    cr_assert_neq(rc, 127, "build/cachebench is missing: run the tests through `make test`");
    return rc;
}

/* The three pairs both reference checks compare: ex_ref against ex_p0 and against ex_p1, and a seeded random
 * non-square pair (the oracles are square and would not catch swapped height and width), written as PNG into dir
 * so the Python script reads exactly the pixels the C code sees. */
enum { PAIRS = 3 };
typedef struct {
    Image img[3];
    char oracle[3][4096], random[2][4096];
    char *dir;
    uint8_t *ra, *rb;
    const uint8_t *px[PAIRS][2];
    const char *path[PAIRS][2];
    int height[PAIRS], width[PAIRS];
} RefPairs;

static void ref_pairs_setup(RefPairs *p, int rh, int rw, uint64_t seed, int noise) {
    memset(p, 0, sizeof *p);
    load_oracles(p->img, p->oracle);
    size_t n = (size_t)rh * rw * 3;
    p->ra = malloc(n);
    p->rb = malloc(n);
    p->dir = fixture_tmpdir();
    cr_assert(p->ra && p->rb && p->dir);
    random_pair(p->ra, p->rb, n, seed, noise);
    write_png(p->dir, "a.png", p->ra, rh, rw, p->random[0], sizeof p->random[0]);
    write_png(p->dir, "b.png", p->rb, rh, rw, p->random[1], sizeof p->random[1]);
    for (int i = 0; i < 2; i++) {
        p->px[i][0] = p->img[0].rgb, p->px[i][1] = p->img[i + 1].rgb;
        p->path[i][0] = p->oracle[0], p->path[i][1] = p->oracle[i + 1];
        p->height[i] = p->width[i] = 64;
    }
    p->px[2][0] = p->ra, p->px[2][1] = p->rb;
    p->path[2][0] = p->random[0], p->path[2][1] = p->random[1];
    p->height[2] = rh, p->width[2] = rw;
}

static void ref_pairs_append(const RefPairs *p, char *cmd, size_t cap) {
    for (int i = 0; i < PAIRS; i++) append_arg(cmd, cap, p->path[i][0]), append_arg(cmd, cap, p->path[i][1]);
}

static void ref_pairs_free(RefPairs *p) {
    fixture_rmdir(p->dir);
    free(p->dir);
    free(p->ra);
    free(p->rb);
    for (int i = 0; i < 3; i++) image_free(&p->img[i]);
}

/* ---------------------------------------------------------------------------------------------------------- */
/* PSNR and SSIM against scikit-image */

Test(metrics, psnr_ssim_match_skimage) {
    RefPairs p;
    ref_pairs_setup(&p, 40, 53, 11, 40);
    char cmd[16384], out[4096];
    snprintf(cmd, sizeof cmd, "'%s' tests/ssim_reference.py", fixture_python());
    ref_pairs_append(&p, cmd, sizeof cmd);
    run_reference(cmd, out, sizeof out);

    const char *line = out;
    for (int i = 0; i < PAIRS; i++) {
        double ref_psnr, ref_ssim, psnr, ssim;
        cr_assert_eq(sscanf(line, "%lf %lf", &ref_psnr, &ref_ssim), 2, "unexpected reference output:\n%s", out);
        line = strchr(line, '\n') + 1;
        psnr = psnr_u8(p.px[i][0], p.px[i][1], (size_t)p.height[i] * p.width[i] * 3);
        Error err = {{0}};
        cr_assert_eq(ssim_frame_u8(p.px[i][0], p.px[i][1], p.height[i], p.width[i], &ssim, &err), 0, "%s", err.msg);
        /* The specification asks for 1e-4; the same double arithmetic in the same order gives ~1e-15. */
        cr_expect(fabs(psnr - ref_psnr) <= 1e-6, "pair %d: PSNR %.12f, skimage %.12f", i, psnr, ref_psnr);
        cr_expect(fabs(ssim - ref_ssim) <= 1e-6, "pair %d: SSIM %.12f, skimage %.12f", i, ssim, ref_ssim);
    }
    ref_pairs_free(&p);
}

/* ---------------------------------------------------------------------------------------------------------- */
/* Identity, symmetry, sizes: properties that hold for any weights */

Test(metrics, identity_and_symmetry) {
    Image img[3];
    char paths[3][4096];
    load_oracles(img, paths);
    const uint8_t *a = img[0].rgb, *b = img[1].rgb;
    size_t n = 64 * 64 * 3;
    Error err = {{0}};
    LpipsNet *net;
    cr_assert_eq(lpips_create_synthetic(&net, 5, &err), 0, "%s", err.msg);

    double ssim_aa, ssim_ab, ssim_ba, lp_aa, lp_ab, lp_ba;
    cr_assert(isinf(psnr_u8(a, a, n)) && psnr_u8(a, a, n) > 0, "PSNR of identical images must be +inf");
    cr_assert_eq(ssim_frame_u8(a, a, 64, 64, &ssim_aa, &err), 0, "%s", err.msg);
    cr_assert_eq(ssim_aa, 1.0, "SSIM of identical images is exactly 1, got %.17g", ssim_aa);
    cr_assert_eq(lpips_frame_u8(net, a, a, 64, 64, &lp_aa, &err), 0, "%s", err.msg);
    cr_assert_eq(lp_aa, 0.0, "LPIPS of identical images is exactly 0, got %.17g", lp_aa);

    cr_assert_eq(psnr_u8(a, b, n), psnr_u8(b, a, n));
    cr_assert_eq(ssim_frame_u8(a, b, 64, 64, &ssim_ab, &err), 0, "%s", err.msg);
    cr_assert_eq(ssim_frame_u8(b, a, 64, 64, &ssim_ba, &err), 0, "%s", err.msg);
    cr_assert_eq(ssim_ab, ssim_ba, "SSIM not symmetric: %.17g vs %.17g", ssim_ab, ssim_ba);
    cr_assert_eq(lpips_frame_u8(net, a, b, 64, 64, &lp_ab, &err), 0, "%s", err.msg);
    cr_assert_eq(lpips_frame_u8(net, b, a, 64, 64, &lp_ba, &err), 0, "%s", err.msg);
    cr_assert(lp_ab > 0 && fabs(lp_ab - lp_ba) <= 1e-12 * lp_ab, "LPIPS not symmetric: %.17g vs %.17g", lp_ab, lp_ba);
    cr_assert(ssim_ab < 1.0 && isfinite(psnr_u8(a, b, n)));

    lpips_destroy(net);
    for (int i = 0; i < 3; i++) image_free(&img[i]);
}

Test(metrics, frames_too_small_rejected) {
    static uint8_t px[30 * 30 * 3];
    double v;
    Error err = {{0}};
    cr_assert_eq(ssim_frame_u8(px, px, 10, 30, &v, &err), -1);
    cr_assert(strstr(err.msg, "11x11") && strstr(err.msg, "30x10"), "message: %s", err.msg);
    LpipsNet *net;
    cr_assert_eq(lpips_create_synthetic(&net, 1, &err), 0, "%s", err.msg);
    cr_assert_eq(lpips_frame_u8(net, px, px, 30, 30, &v, &err), -1);
    cr_assert(strstr(err.msg, "31x31") && strstr(err.msg, "30x30"), "message: %s", err.msg);
    RunMetrics m;
    cr_assert_eq(metrics_compare_videos(px, px, 1, 10, 10, NULL, &m, &err), -1);
    cr_assert(strstr(err.msg, "frame 0") && strstr(err.msg, "10x10"), "message: %s", err.msg);
    cr_assert_null(m.psnr);
    lpips_destroy(net);
}

/* ---------------------------------------------------------------------------------------------------------- */
/* LPIPS against torch */

Test(metrics, lpips_matches_torch_with_synthetic_backbone) {
    /* 48x72: a 2x2 last stage, a non-square layout at every layer. */
    RefPairs p;
    ref_pairs_setup(&p, 48, 72, 23, 60);
    char lin_dir[4096], cmd[16384], out[4096];
    shared_path(lin_dir, sizeof lin_dir, "lpips");
    snprintf(cmd, sizeof cmd, "'%s' tests/lpips_reference.py --synthetic 20240601 --lin-from", fixture_python());
    append_arg(cmd, sizeof cmd, lin_dir);
    append_arg(cmd, sizeof cmd, "--weights");
    append_arg(cmd, sizeof cmd, p.dir);
    ref_pairs_append(&p, cmd, sizeof cmd);
    run_reference(cmd, out, sizeof out);

    Error err = {{0}};
    LpipsNet *net;
    cr_assert_eq(lpips_create_from_dir(&net, p.dir, &err), 0, "%s", err.msg);
    const char *line = out;
    double first = 0;
    for (int i = 0; i < PAIRS; i++) {
        double ref, v;
        cr_assert_eq(sscanf(line, "%lf", &ref), 1, "unexpected reference output:\n%s", out);
        line = strchr(line, '\n') + 1;
        cr_assert_eq(lpips_frame_u8(net, p.px[i][0], p.px[i][1], p.height[i], p.width[i], &v, &err), 0, "%s",
                     err.msg);
        /* A backbone whose activations died would make every distance ~0 and the comparison vacuous. */
        cr_assert(ref > 1e-3, "pair %d: reference LPIPS %.3g is degenerate", i, ref);
        cr_expect(fabs(v - ref) <= 1e-4 * ref, "pair %d: LPIPS %.9f, torch %.9f (rel %.2g)", i, v, ref,
                  fabs(v - ref) / ref);
        if (i == 0) first = v;
    }

    /* The same weights through `cachebench metrics --lpips-weights`. */
    char cli_out[4096], expect[64];
    const char *args[] = {"metrics", "--lpips-weights", p.dir, p.path[0][0], p.path[0][1], NULL};
    cr_assert_eq(cli(cli_out, sizeof cli_out, args), 0, "%s", cli_out);
    snprintf(expect, sizeof expect, "lpips   %.6f\n", first);
    cr_assert(strstr(cli_out, expect), "expected '%s' in:\n%s", expect, cli_out);

    lpips_destroy(net);
    ref_pairs_free(&p);
}

/* With the real backbone embedded (built from the shared folder): the values match torch with the same files, and
 * the two distortions are ordered as the reference implementation orders them. */
Test(metrics, lpips_embedded_matches_torch) {
    if (!lpips_available()) cr_skip_test("LPIPS weights not embedded in this build: %s", lpips_unavailable_reason());
    Image img[3];
    char paths[3][4096], weights[4096];
    load_oracles(img, paths);
    shared_path(weights, sizeof weights, "lpips");
    char cmd[16384], out[4096];
    snprintf(cmd, sizeof cmd, "'%s' tests/lpips_reference.py --weights", fixture_python());
    append_arg(cmd, sizeof cmd, weights);
    for (int i = 1; i < 3; i++) append_arg(cmd, sizeof cmd, paths[0]), append_arg(cmd, sizeof cmd, paths[i]);
    run_reference(cmd, out, sizeof out);
    double ref[2], v[2];
    cr_assert_eq(sscanf(out, "%lf %lf", &ref[0], &ref[1]), 2, "unexpected reference output:\n%s", out);
    Error err = {{0}};
    LpipsNet *net, *files;
    cr_assert_eq(lpips_create(&net, &err), 0, "%s", err.msg);
    /* The torch reference reads the shared folder; the build may have embedded another LPIPS_WEIGHTS_DIR. */
    if (lpips_create_from_dir(&files, weights, &err) != 0)
        cr_skip_test("cannot compare the embedded weights with %s: %s", weights, err.msg);
    double embedded, read;
    cr_assert_eq(lpips_frame_u8(net, img[0].rgb, img[1].rgb, 64, 64, &embedded, &err), 0, "%s", err.msg);
    cr_assert_eq(lpips_frame_u8(files, img[0].rgb, img[1].rgb, 64, 64, &read, &err), 0, "%s", err.msg);
    lpips_destroy(files);
    if (embedded != read) cr_skip_test("the build embedded other weights than those in %s", weights);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(lpips_frame_u8(net, img[0].rgb, img[i + 1].rgb, 64, 64, &v[i], &err), 0, "%s", err.msg);
        cr_expect(fabs(v[i] - ref[i]) <= 1e-4 * ref[i], "ex_p%d: LPIPS %.9f, torch %.9f", i, v[i], ref[i]);
    }
    cr_expect_eq(v[0] < v[1], ref[0] < ref[1], "ordering differs: ours %.6f/%.6f, torch %.6f/%.6f", v[0], v[1], ref[0],
                 ref[1]);
    lpips_destroy(net);
    for (int i = 0; i < 3; i++) image_free(&img[i]);
}

/* The values the reference `lpips` package computes on the oracle images with these weights, as
 * ../shared/lpips/README.md records them ("d(ex_ref, ex_p0) = X, d(ex_ref, ex_p1) = Y"): read from there, not
 * copied here, so that new weights come with their own check values. */
Test(metrics, lpips_matches_the_reference_package_values) {
    if (!lpips_available()) cr_skip_test("LPIPS weights not embedded in this build: %s", lpips_unavailable_reason());
    char readme[4096];
    shared_path(readme, sizeof readme, "lpips/README.md");
    FILE *f = fopen(readme, "r");
    if (!f) cr_skip_test("%s not found (set CACHEBENCH_SHARED to the shared folder)", readme);
    static char text[65536];
    size_t got = fread(text, 1, sizeof text - 1, f);
    text[got] = '\0';
    fclose(f);
    double ref[2];
    const char *at = strstr(text, "d(ex_ref, ex_p0) = ");
    cr_assert_not_null(at, "%s gives no reference values", readme);
    cr_assert_eq(sscanf(at, "d(ex_ref, ex_p0) = %lf, d(ex_ref, ex_p1) = %lf", &ref[0], &ref[1]), 2,
                 "cannot read the reference values in %s", readme);
    Image img[3];
    char paths[3][4096];
    load_oracles(img, paths);
    Error err = {{0}};
    LpipsNet *net;
    cr_assert_eq(lpips_create(&net, &err), 0, "%s", err.msg);
    for (int i = 0; i < 2; i++) {
        double v;
        cr_assert_eq(lpips_frame_u8(net, img[0].rgb, img[i + 1].rgb, 64, 64, &v, &err), 0, "%s", err.msg);
        /* The README gives 6 decimals: agreement to their rounding plus float32 noise. */
        cr_expect(fabs(v - ref[i]) <= 1e-6 + 1e-5 * ref[i], "ex_p%d: LPIPS %.7f, reference package %.6f", i, v,
                  ref[i]);
    }
    lpips_destroy(net);
    for (int i = 0; i < 3; i++) image_free(&img[i]);
}

Test(metrics, lpips_unavailable_says_why) {
    if (lpips_available()) cr_skip_test("LPIPS weights are embedded in this build");
    const char *why = lpips_unavailable_reason();
    cr_assert(strlen(why) > 0);
    cr_assert(strstr(why, ".f32") && strstr(why, "LPIPS_WEIGHTS_DIR"), "reason: %s", why);
    Error err = {{0}};
    LpipsNet *net = (LpipsNet *)&err; /* must be reset to NULL */
    cr_assert_eq(lpips_create(&net, &err), -1);
    cr_assert_null(net);
    cr_assert(strstr(err.msg, "unavailable") && strstr(err.msg, why), "message: %s", err.msg);
}

Test(metrics, lpips_from_dir_rejects_bad_files) {
    char *dir = fixture_tmpdir();
    cr_assert_not_null(dir);
    Error err = {{0}};
    LpipsNet *net;
    cr_assert_eq(lpips_create_from_dir(&net, dir, &err), -1);
    cr_assert_null(net);
    cr_assert(strstr(err.msg, dir) && strstr(err.msg, "features.0.weight.f32"), "message: %s", err.msg);

    char path[4096];
    snprintf(path, sizeof path, "%s/features.0.weight.f32", dir);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    static const float some[25];
    fwrite(some, sizeof some, 1, f);
    fclose(f);
    cr_assert_eq(lpips_create_from_dir(&net, dir, &err), -1);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, "92928 bytes"), "message: %s", err.msg);
    fixture_rmdir(dir);
    free(dir);
}

/* ---------------------------------------------------------------------------------------------------------- */
/* Video comparison */

Test(metrics, compare_videos) {
    enum { F = 3, H = 40, W = 48 };
    size_t fv = (size_t)H * W * 3;
    static uint8_t a[F * H * W * 3], b[F * H * W * 3];
    random_pair(a, b, sizeof a, 3, 30);
    memcpy(b, a, fv); /* frame 0 identical: its PSNR is inf, the video's is not */
    Error err = {{0}};
    RunMetrics m;
    cr_assert_eq(metrics_compare_videos(a, b, F, H, W, NULL, &m, &err), 0, "%s", err.msg);
    cr_assert_eq(m.frames, F);
    cr_assert_null(m.lpips);
    cr_assert(isnan(m.lpips_mean) && !m.lpips_available);
    cr_assert(isinf(m.psnr[0]) && m.ssim[0] == 1.0);
    double ssim_sum = 0;
    for (int f = 0; f < F; f++) {
        double s;
        cr_assert_eq(m.psnr[f], psnr_u8(a + f * fv, b + f * fv, fv));
        cr_assert_eq(ssim_frame_u8(a + f * fv, b + f * fv, H, W, &s, &err), 0, "%s", err.msg);
        cr_assert_eq(m.ssim[f], s);
        ssim_sum += s;
    }
    cr_assert_eq(m.psnr_mean, psnr_u8(a, b, F * fv), "video PSNR is over all pixels");
    cr_assert(isfinite(m.psnr_mean));
    cr_assert(fabs(m.ssim_mean - ssim_sum / F) <= 1e-15);
    run_metrics_free(&m);

    LpipsNet *net;
    cr_assert_eq(lpips_create_synthetic(&net, 9, &err), 0, "%s", err.msg);
    cr_assert_eq(metrics_compare_videos(a, b, F, H, W, net, &m, &err), 0, "%s", err.msg);
    cr_assert(m.lpips_available && m.lpips);
    cr_assert_eq(m.lpips[0], 0.0);
    double lp_sum = 0;
    for (int f = 0; f < F; f++) {
        double v;
        cr_assert_eq(lpips_frame_u8(net, a + f * fv, b + f * fv, H, W, &v, &err), 0, "%s", err.msg);
        cr_assert(fabs(m.lpips[f] - v) <= 1e-12 * fabs(v));
        lp_sum += m.lpips[f];
    }
    cr_assert(m.lpips[1] > 0 && fabs(m.lpips_mean - lp_sum / F) <= 1e-15);
    run_metrics_free(&m);
    lpips_destroy(net);
}

/* ---------------------------------------------------------------------------------------------------------- */
/* PNG */

Test(metrics, png_round_trip) {
    enum { H = 23, W = 37 };
    static uint8_t px[H * W * 3];
    random_pair(px, NULL, sizeof px, 17, 0);
    char *dir = fixture_tmpdir(), path[4096], tmp[4200];
    cr_assert_not_null(dir);
    write_png(dir, "frame.png", px, H, W, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    cr_assert_neq(access(tmp, F_OK), 0, "the temporary file must be renamed away");
    Image img;
    Error err = {{0}};
    cr_assert_eq(image_read_png(path, &img, &err), 0, "%s", err.msg);
    cr_assert_eq(img.height, H);
    cr_assert_eq(img.width, W);
    cr_assert_eq(memcmp(img.rgb, px, sizeof px), 0);
    image_free(&img);
    cr_assert_null(img.rgb);
    fixture_rmdir(dir);
    free(dir);
}

/* Writes a 2x2 PNG of any colour type with libpng directly; rows are given packed. */
static void write_raw_png(const char *path, int color, int depth, const png_byte rows[2][16], const png_color *palette,
                          const png_byte *trans, int ntrans) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    cr_assert(png && info);
    cr_assert_eq(setjmp(png_jmpbuf(png)), 0, "libpng failed writing %s", path);
    png_init_io(png, f);
    png_set_IHDR(png, info, 2, 2, depth, color, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (palette) png_set_PLTE(png, info, palette, 3);
    if (trans) png_set_tRNS(png, info, trans, ntrans, NULL);
    png_write_info(png, info);
    for (int y = 0; y < 2; y++) png_write_row(png, rows[y]);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    fclose(f);
}

Test(metrics, png_inputs_convert_to_rgb8) {
    char *dir = fixture_tmpdir(), path[4096];
    cr_assert_not_null(dir);
    static const png_color palette[3] = {{10, 20, 30}, {200, 100, 0}, {1, 2, 3}};
    static const png_byte trans[3] = {255, 0, 128};
    /* Each case: the 2x2 pixels as stored, and the RGB8 they must read back as (alpha dropped, 16-bit rounded). */
    struct {
        const char *name;
        int color, depth;
        png_byte rows[2][16];
        uint8_t expect[12];
    } cases[] = {
        {"gray8", PNG_COLOR_TYPE_GRAY, 8, {{0, 77}, {128, 255}}, {0, 0, 0, 77, 77, 77, 128, 128, 128, 255, 255, 255}},
        {"gray1", PNG_COLOR_TYPE_GRAY, 1, {{0x40}, {0x80}}, {0, 0, 0, 255, 255, 255, 255, 255, 255, 0, 0, 0}},
        {"gray16", PNG_COLOR_TYPE_GRAY, 16, {{0x05, 0x05, 0xff, 0xff}, {0x80, 0x80, 0x00, 0x00}},
         {5, 5, 5, 255, 255, 255, 128, 128, 128, 0, 0, 0}},
        {"gray_alpha", PNG_COLOR_TYPE_GRAY_ALPHA, 8, {{9, 0, 99, 255}, {199, 7, 255, 128}},
         {9, 9, 9, 99, 99, 99, 199, 199, 199, 255, 255, 255}},
        {"palette_trns", PNG_COLOR_TYPE_PALETTE, 8, {{0, 1}, {2, 1}},
         {10, 20, 30, 200, 100, 0, 1, 2, 3, 200, 100, 0}},
        {"rgba", PNG_COLOR_TYPE_RGB_ALPHA, 8, {{1, 2, 3, 0, 4, 5, 6, 255}, {7, 8, 9, 10, 250, 251, 252, 253}},
         {1, 2, 3, 4, 5, 6, 7, 8, 9, 250, 251, 252}},
        {"rgb16",
         PNG_COLOR_TYPE_RGB,
         16,
         {{0x01, 0x01, 0x02, 0x02, 0x03, 0x03, 0xfe, 0xfe, 0xfd, 0xfd, 0xfc, 0xfc}, {0}},
         {1, 2, 3, 254, 253, 252, 0, 0, 0, 0, 0, 0}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(path, sizeof path, "%s/%s.png", dir, cases[i].name);
        int pal = cases[i].color == PNG_COLOR_TYPE_PALETTE;
        write_raw_png(path, cases[i].color, cases[i].depth, cases[i].rows, pal ? palette : NULL, pal ? trans : NULL,
                      3);
        Image img;
        Error err = {{0}};
        cr_assert_eq(image_read_png(path, &img, &err), 0, "%s: %s", cases[i].name, err.msg);
        cr_assert(img.height == 2 && img.width == 2);
        for (int k = 0; k < 12; k++)
            cr_expect_eq(img.rgb[k], cases[i].expect[k], "%s: byte %d is %d, expected %d", cases[i].name, k,
                         img.rgb[k], cases[i].expect[k]);
        image_free(&img);
    }
    fixture_rmdir(dir);
    free(dir);
}

Test(metrics, png_rejects_bad_files_naming_them) {
    char *dir = fixture_tmpdir(), path[4096];
    cr_assert_not_null(dir);
    Image img;
    Error err = {{0}};

    snprintf(path, sizeof path, "%s/fake.png", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("this is a text file, not an image\n", f);
    fclose(f);
    cr_assert_eq(image_read_png(path, &img, &err), -1);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, "not a PNG"), "message: %s", err.msg);
    cr_assert_null(img.rgb);

    /* A real PNG cut in half: libpng's error must come back as a message, not a crash or an exit. */
    static uint8_t px[32 * 32 * 3];
    random_pair(px, NULL, sizeof px, 2, 0);
    write_png(dir, "cut.png", px, 32, 32, path, sizeof path);
    cr_assert_eq(truncate(path, 300), 0);
    cr_assert_eq(image_read_png(path, &img, &err), -1);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, "corrupt"), "message: %s", err.msg);

    snprintf(path, sizeof path, "%s/missing.png", dir);
    cr_assert_eq(image_read_png(path, &img, &err), -1);
    cr_assert(strstr(err.msg, path), "message: %s", err.msg);

    snprintf(path, sizeof path, "%s/no/such/dir/out.png", dir);
    cr_assert_eq(image_write_png(path, px, 32, 32, &err), -1);
    cr_assert(strstr(err.msg, "out.png"), "message: %s", err.msg);
    fixture_rmdir(dir);
    free(dir);
}

/* ---------------------------------------------------------------------------------------------------------- */
/* `cachebench metrics` */

Test(metrics, cli_images) {
    char ref[4096], out[8192];
    oracle_path(ref, sizeof ref, 0);
    if (access(ref, R_OK) != 0) cr_skip_test("oracle image %s not found (set CACHEBENCH_SHARED)", ref);
    char *dir = fixture_tmpdir(), small[4096], fake[4096];
    cr_assert_not_null(dir);
    static uint8_t px[31 * 32 * 3];
    write_png(dir, "small.png", px, 31, 32, small, sizeof small);
    snprintf(fake, sizeof fake, "%s/fake.png", dir);
    FILE *f = fopen(fake, "w");
    cr_assert_not_null(f);
    fputs("GIF89a", f);
    fclose(f);

    const char *help[] = {"metrics", "--help", NULL};
    cr_assert_eq(cli(out, sizeof out, help), 0, "%s", out);
    cr_assert(strstr(out, "Usage: cachebench metrics") && strstr(out, "--lpips-weights"), "%s", out);

    const char *same[] = {"metrics", ref, ref, NULL};
    cr_assert_eq(cli(out, sizeof out, same), 0, "%s", out);
    cr_assert(strstr(out, "psnr_db inf\n") && strstr(out, "ssim    1.000000\n"), "%s", out);
    if (lpips_available())
        cr_assert(strstr(out, "lpips   0.000000\n"), "%s", out);
    else
        cr_assert(strstr(out, "lpips   unavailable (") && strstr(out, lpips_unavailable_reason()), "%s", out);

    const char *sizes[] = {"metrics", ref, small, NULL};
    cr_assert_eq(cli(out, sizeof out, sizes), 1, "%s", out);
    cr_assert(strstr(out, ref) && strstr(out, small) && strstr(out, "64x64") && strstr(out, "32x31"),
              "the size error must name both files and sizes: %s", out);

    const char *bad[] = {"metrics", ref, fake, NULL};
    cr_assert_eq(cli(out, sizeof out, bad), 1, "%s", out);
    cr_assert(strstr(out, fake) && strstr(out, "not a PNG"), "%s", out);

    const char *weights[] = {"metrics", "--lpips-weights", dir, ref, ref, NULL};
    cr_assert_eq(cli(out, sizeof out, weights), 1, "%s", out);
    cr_assert(strstr(out, "features.0.weight.f32"), "%s", out);

    const char *unknown[] = {"metrics", "--frobnicate", ref, ref, NULL};
    cr_assert_eq(cli(out, sizeof out, unknown), 2, "%s", out);
    cr_assert(strstr(out, "--frobnicate") && strstr(out, "--help"), "%s", out);
    const char *novalue[] = {"metrics", ref, ref, "--lpips-weights", NULL};
    cr_assert_eq(cli(out, sizeof out, novalue), 2, "%s", out);
    const char *one[] = {"metrics", ref, NULL};
    cr_assert_eq(cli(out, sizeof out, one), 2, "%s", out);
    const char *mixed[] = {"metrics", ref, "run.h5", NULL};
    cr_assert_eq(cli(out, sizeof out, mixed), 2, "%s", out);
    fixture_rmdir(dir);
    free(dir);
}

static void write_record(const char *path, int frames, int h, int w, uint64_t seed) {
    RunRecord r;
    memset(&r, 0, sizeof r);
    snprintf(r.strategy, sizeof r.strategy, "none");
    snprintf(r.model, sizeof r.model, "tiny");
    snprintf(r.solver, sizeof r.solver, "unipc");
    snprintf(r.backend, sizeof r.backend, "cpu");
    r.failed_step = -1;
    r.frames = frames, r.height = h, r.width = w;
    size_t n = (size_t)frames * h * w * 3;
    r.video = malloc(n);
    cr_assert_not_null(r.video);
    random_pair(r.video, NULL, n, seed, 0);
    Error err = {{0}};
    cr_assert_eq(record_write(path, &r, &err), 0, "%s", err.msg);
    record_free(&r);
}

Test(metrics, cli_records) {
    char *dir = fixture_tmpdir(), a[4096], b[4096], c[4096], out[8192];
    cr_assert_not_null(dir);
    snprintf(a, sizeof a, "%s/a.h5", dir);
    snprintf(b, sizeof b, "%s/b.h5", dir);
    snprintf(c, sizeof c, "%s/c.h5", dir);
    write_record(a, 2, 16, 24, 1);
    write_record(b, 2, 16, 24, 2);
    write_record(c, 3, 16, 24, 3);

    const char *same[] = {"metrics", a, a, NULL};
    cr_assert_eq(cli(out, sizeof out, same), 0, "%s", out);
    cr_assert(strstr(out, "2 frames of 24x16") && strstr(out, "psnr_db inf\n"), "%s", out);
    for (int f = 0; f < 2; f++) {   /* one table line per frame: index, PSNR, SSIM, LPIPS or "-" */
        char head[16];
        snprintf(head, sizeof head, "\n%d ", f);
        const char *row = strstr(out, head);
        double psnr, ssim;
        cr_assert(row && sscanf(row, "%*d %lf %lf", &psnr, &ssim) == 2, "no line for frame %d in:\n%s", f, out);
        cr_assert(isinf(psnr) && ssim == 1.0, "frame %d: %g %g", f, psnr, ssim);
    }

    const char *diff[] = {"metrics", a, b, NULL};
    cr_assert_eq(cli(out, sizeof out, diff), 0, "%s", out);
    cr_assert(strstr(out, "psnr_db ") && !strstr(out, "psnr_db inf"), "%s", out);

    const char *frames[] = {"metrics", a, c, NULL};
    cr_assert_eq(cli(out, sizeof out, frames), 1, "%s", out);
    cr_assert(strstr(out, a) && strstr(out, c) && strstr(out, "2 frames of 24x16") && strstr(out, "3 frames of 24x16"),
              "%s", out);
    fixture_rmdir(dir);
    free(dir);
}
