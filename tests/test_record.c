/* Run records (results/record.h): C round trip, the same file checked from Python (h5py and xarray via
 * tests/check_record.py), corrupt and foreign inputs, failing writes, metrics replacement, `cachebench info`. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <ftw.h>
#include <hdf5.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness/cli.h"
#include "results/record.h"
#include "tests/fixtures.h"

/* ---------------------------------------------------------------------------------------------------------- */
/* Fixtures */

static char tmpdir[256];

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

static void setup_dir(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cachebench_record_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown_dir(void) {
    chmod(tmpdir, 0755); /* a read-only test directory must still be removable */
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void tpath(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%s/%s", tmpdir, name); }

static int exists(const char *p) { return access(p, F_OK) == 0; }

static long file_size(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

/* Deterministic values in ±[0.1, 1.1): random enough to catch swapped fields, never zero (zeros would hide a field
 * that was not written at all). */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double rnd(void) {
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    double u = (double)(rng_state >> 11) / 9007199254740992.0;
    return (rng_state & 1 ? -1 : 1) * (0.1 + u);
}

static void fill_metrics(RunMetrics *m, int frames, int lpips) {
    memset(m, 0, sizeof *m);
    m->frames = frames;
    m->psnr = malloc(frames * sizeof(double));
    m->ssim = malloc(frames * sizeof(double));
    m->lpips = lpips ? malloc(frames * sizeof(double)) : NULL;
    for (int i = 0; i < frames; i++) {
        m->psnr[i] = 30 + 10 * fabs(rnd());
        m->ssim[i] = fabs(rnd()) / 1.1;
        if (lpips) m->lpips[i] = fabs(rnd()) / 10;
    }
    m->psnr[1 % frames] = INFINITY; /* identical frames */
    m->psnr_mean = INFINITY;
    m->ssim_mean = 0.5 + fabs(rnd()) / 10;
    m->lpips_mean = lpips ? fabs(rnd()) / 10 : NAN;
    m->lpips_available = lpips;
    snprintf(m->baseline, sizeof m->baseline, "results/sweep/none_p%d.h5", frames);
}

enum { STEPS = 7, FRAMES = 3, HEIGHT = 5, WIDTH = 4, LC = 2, LF = 2, LH = 3, LW = 3 };
/* The computed pattern the decision strings are checked against. */
static const char *const PATTERN[2] = {"CCRCRRC", "CRRCCRC"};

static void fill_record(RunRecord *r, int latents, int metrics) {
    memset(r, 0, sizeof *r);
    snprintf(r->strategy, sizeof r->strategy, "teacache");
    snprintf(r->strategy_spec, sizeof r->strategy_spec, "teacache:threshold=0.15,warmup=2,cutoff=1");
    snprintf(r->model, sizeof r->model, "tiny");
    snprintf(r->weights_path, sizeof r->weights_path, "/work/shared/weights/tiny model.safetensors");
    snprintf(r->weights_sha256, sizeof r->weights_sha256, "%064d", 0);
    memset(r->weights_sha256, 'a', 10);
    snprintf(r->prompt_id, sizeof r->prompt_id, "p007");
    /* UTF-8 and a quote: strings must come back byte-identical in C and as str in Python. */
    snprintf(r->prompt, sizeof r->prompt, "A caf\xc3\xa9 in the rain, \"cinematic\", 4k \xe2\x80\x94 slow pan");
    snprintf(r->negative_prompt, sizeof r->negative_prompt, "blurry, low quality");
    snprintf(r->conditioning, sizeof r->conditioning, "contexts");
    snprintf(r->contexts_path, sizeof r->contexts_path, "/data/contexts \xc3\xa9.safetensors");
    snprintf(r->contexts_sha256, sizeof r->contexts_sha256, "%064d", 7);
    snprintf(r->contexts_negative_id, sizeof r->contexts_negative_id, "__negative__");
    r->seed = 0xDEADBEEFCAFEF00Dull; /* above 2^63: uint64 must survive */
    r->steps = STEPS;
    snprintf(r->solver, sizeof r->solver, "unipc");
    r->shift = 5.0f, r->guidance = 5.5f;
    snprintf(r->backend, sizeof r->backend, "cpu");
    snprintf(r->device, sizeof r->device, "AMD EPYC 7763 64-Core Processor");
    snprintf(r->version, sizeof r->version, "0.1.0-test");
    snprintf(r->start_time, sizeof r->start_time, "2025-01-02T03:04:05Z");
    r->failed = 0, r->failed_step = -1;
    r->step = calloc(STEPS, sizeof *r->step);
    for (int i = 0; i < STEPS; i++) {
        StepRecord *s = &r->step[i];
        s->timestep = 1000 * fabs(rnd()), s->sigma = fabs(rnd());
        s->wall_seconds = fabs(rnd()), s->cpu_seconds = fabs(rnd()), s->flops = 1e12 * fabs(rnd());
        for (int b = 0; b < 2; b++) {
            s->computed[b] = PATTERN[b][i] == 'C';
            s->signal[b] = rnd(), s->accumulator[b] = rnd(), s->threshold[b] = rnd(), s->k[b] = rnd();
            s->call_seconds[b] = fabs(rnd());
            s->layers_run[b] = s->computed[b] ? 1 + i % 3 : 0;
            s->shared[b] = s->computed[b] && i % 2;
        }
        s->strategy_bytes = 1e6 * fabs(rnd());
    }
    r->step[0].signal[0] = r->step[0].signal[1] = NAN; /* no previous step to compare with */
    r->step[3].k[1] = NAN;
    r->frames = FRAMES, r->height = HEIGHT, r->width = WIDTH;
    size_t nv = (size_t)FRAMES * HEIGHT * WIDTH * 3;
    r->video = malloc(nv);
    for (size_t i = 0; i < nv; i++) r->video[i] = (uint8_t)(1 + (i * 37) % 255);
    if (latents) {
        r->lc = LC, r->lf = LF, r->lh = LH, r->lw = LW;
        size_t nl = (size_t)STEPS * LC * LF * LH * LW;
        r->latents = malloc(nl * sizeof(float));
        for (size_t i = 0; i < nl; i++) r->latents[i] = (float)rnd();
    }
    r->wall_seconds = 12.5 + fabs(rnd()), r->model_seconds = 10 + fabs(rnd());
    r->calls_total = 2 * STEPS, r->calls_computed = 8, r->calls_skipped = 6, r->calls_shared = 3;
    r->flops_spent = 8e12 * fabs(rnd()), r->flops_full = 2e13 * fabs(rnd());
    r->peak_rss_kb = 123456789;
    r->strategy_bytes_peak = 4096.0;
    if (metrics) fill_metrics(&r->metrics, FRAMES, 1);
}

static int same_f(double a, double b) { return (isnan(a) && isnan(b)) || a == b; }

static void assert_metrics_equal(const RunMetrics *a, const RunMetrics *b) {
    cr_assert_eq(a->frames, b->frames);
    if (a->frames == 0) { /* absent */
        cr_assert_null(b->psnr);
        return;
    }
    for (int i = 0; i < a->frames; i++) {
        cr_assert(same_f(a->psnr[i], b->psnr[i]), "psnr[%d] %g vs %g", i, a->psnr[i], b->psnr[i]);
        cr_assert(same_f(a->ssim[i], b->ssim[i]), "ssim[%d]", i);
    }
    cr_assert_eq(a->lpips_available, b->lpips_available);
    if (a->lpips_available) {
        cr_assert_not_null(b->lpips);
        for (int i = 0; i < a->frames; i++) cr_assert(same_f(a->lpips[i], b->lpips[i]), "lpips[%d]", i);
        cr_assert(same_f(a->lpips_mean, b->lpips_mean));
    } else {
        cr_assert_null(b->lpips);
        cr_assert(isnan(b->lpips_mean));
    }
    cr_assert(same_f(a->psnr_mean, b->psnr_mean));
    cr_assert(same_f(a->ssim_mean, b->ssim_mean));
    cr_assert_str_eq(a->baseline, b->baseline);
}

static void assert_records_equal(const RunRecord *a, const RunRecord *b) {
    cr_assert_str_eq(a->strategy, b->strategy);
    cr_assert_str_eq(a->strategy_spec, b->strategy_spec);
    cr_assert_str_eq(a->model, b->model);
    cr_assert_str_eq(a->weights_path, b->weights_path);
    cr_assert_str_eq(a->weights_sha256, b->weights_sha256);
    cr_assert_str_eq(a->prompt_id, b->prompt_id);
    cr_assert_str_eq(a->prompt, b->prompt);
    cr_assert_str_eq(a->negative_prompt, b->negative_prompt);
    cr_assert_str_eq(a->conditioning, b->conditioning);
    cr_assert_str_eq(a->contexts_path, b->contexts_path);
    cr_assert_str_eq(a->contexts_sha256, b->contexts_sha256);
    cr_assert_str_eq(a->contexts_negative_id, b->contexts_negative_id);
    cr_assert_eq(a->seed, b->seed);
    cr_assert_eq(a->steps, b->steps);
    cr_assert_str_eq(a->solver, b->solver);
    cr_assert_eq(a->shift, b->shift);
    cr_assert_eq(a->guidance, b->guidance);
    cr_assert_str_eq(a->backend, b->backend);
    cr_assert_str_eq(a->device, b->device);
    cr_assert_str_eq(a->version, b->version);
    cr_assert_str_eq(a->start_time, b->start_time);
    cr_assert_eq(a->failed, b->failed);
    cr_assert_eq(a->failed_step, b->failed_step);
    cr_assert_str_eq(a->failure, b->failure);
    for (int i = 0; i < a->steps; i++) {
        const StepRecord *x = &a->step[i], *y = &b->step[i];
        cr_assert_eq(x->timestep, y->timestep, "timestep[%d]", i);
        cr_assert_eq(x->sigma, y->sigma, "sigma[%d]", i);
        cr_assert_eq(x->wall_seconds, y->wall_seconds, "wall_seconds[%d]", i);
        cr_assert_eq(x->cpu_seconds, y->cpu_seconds, "cpu_seconds[%d]", i);
        cr_assert_eq(x->flops, y->flops, "flops[%d]", i);
        for (int c = 0; c < 2; c++) {
            cr_assert_eq(x->computed[c], y->computed[c], "computed[%d][%d]", i, c);
            cr_assert(same_f(x->signal[c], y->signal[c]), "signal[%d][%d]", i, c);
            cr_assert(same_f(x->accumulator[c], y->accumulator[c]), "accumulator[%d][%d]", i, c);
            cr_assert(same_f(x->threshold[c], y->threshold[c]), "threshold[%d][%d]", i, c);
            cr_assert(same_f(x->k[c], y->k[c]), "k[%d][%d]", i, c);
            cr_assert_eq(x->call_seconds[c], y->call_seconds[c], "call_seconds[%d][%d]", i, c);
            cr_assert_eq(x->layers_run[c], y->layers_run[c], "layers_run[%d][%d]", i, c);
            cr_assert_eq(x->shared[c], y->shared[c], "shared[%d][%d]", i, c);
        }
        cr_assert_eq(x->strategy_bytes, y->strategy_bytes, "strategy_bytes[%d]", i);
    }
    cr_assert_eq(a->frames, b->frames);
    cr_assert_eq(a->height, b->height);
    cr_assert_eq(a->width, b->width);
    cr_assert_eq(memcmp(a->video, b->video, (size_t)a->frames * a->height * a->width * 3), 0);
    if (a->latents) {
        cr_assert_not_null(b->latents);
        cr_assert_eq(a->lc, b->lc);
        cr_assert_eq(a->lf, b->lf);
        cr_assert_eq(a->lh, b->lh);
        cr_assert_eq(a->lw, b->lw);
        cr_assert_eq(memcmp(a->latents, b->latents, (size_t)a->steps * a->lc * a->lf * a->lh * a->lw * sizeof(float)),
                     0);
    } else {
        cr_assert_null(b->latents);
    }
    cr_assert_eq(a->wall_seconds, b->wall_seconds);
    cr_assert_eq(a->model_seconds, b->model_seconds);
    cr_assert_eq(a->calls_total, b->calls_total);
    cr_assert_eq(a->calls_computed, b->calls_computed);
    cr_assert_eq(a->calls_skipped, b->calls_skipped);
    cr_assert_eq(a->calls_shared, b->calls_shared);
    cr_assert_eq(a->flops_spent, b->flops_spent);
    cr_assert_eq(a->flops_full, b->flops_full);
    cr_assert_eq(a->peak_rss_kb, b->peak_rss_kb);
    cr_assert_eq(a->strategy_bytes_peak, b->strategy_bytes_peak);
    assert_metrics_equal(&a->metrics, &b->metrics);
}

/* Every HDF5 handle the module opened must be closed again. */
static void assert_no_open_hdf5(void) {
    cr_assert_eq(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0, "HDF5 objects left open");
}

static void write_sample(const char *path, int latents, int metrics) {
    RunRecord r;
    fill_record(&r, latents, metrics);
    Error err = {{0}};
    cr_assert_eq(record_write(path, &r, &err), 0, "%s", err.msg);
    record_free(&r);
}

/* Expects record_read to fail with a message naming the file and containing `what`. */
static void assert_read_fails(const char *path, const char *what) {
    RunRecord r;
    Error err = {{0}};
    cr_assert_eq(record_read(path, &r, &err), -1, "reading %s should fail (%s)", path, what);
    cr_assert(strstr(err.msg, path) != NULL, "message does not name the file: %s", err.msg);
    cr_assert(strstr(err.msg, what) != NULL, "message lacks '%s': %s", what, err.msg);
    cr_assert_null(r.step);
    cr_assert_null(r.video);
    assert_no_open_hdf5();
}

/* ---------------------------------------------------------------------------------------------------------- */
/* Round trip */

TestSuite(record, .init = setup_dir, .fini = teardown_dir);

Test(record, roundtrip_full) {
    char path[512], tmp[600];
    tpath(path, sizeof path, "run.h5");
    RunRecord r, back;
    fill_record(&r, 1, 1);
    Error err = {{0}};
    cr_assert_eq(record_write(path, &r, &err), 0, "%s", err.msg);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    cr_assert(!exists(tmp), "the .tmp file was left behind");
    assert_no_open_hdf5();
    cr_assert_eq(record_read(path, &back, &err), 0, "%s", err.msg);
    assert_no_open_hdf5();
    assert_records_equal(&r, &back);
    record_free(&back);
    record_free(&r);
    cr_assert_null(r.step);
    record_free(&r); /* safe twice, and on a zeroed struct */
    RunMetrics m = {0};
    run_metrics_free(&m);
}

/* The header read (what a sweep's resume scan uses) leaves out the video and the latents, and only those. */
Test(record, header_read_skips_video_and_latents) {
    char path[512];
    tpath(path, sizeof path, "run.h5");
    RunRecord r, back;
    fill_record(&r, 1, 1);
    Error err = {{0}};
    cr_assert_eq(record_write(path, &r, &err), 0, "%s", err.msg);
    cr_assert_eq(record_read_header(path, &back, &err), 0, "%s", err.msg);
    cr_assert_null(back.video);
    cr_assert_null(back.latents);
    cr_assert_eq(back.frames, r.frames);
    cr_assert_eq(back.lc * back.lf * back.lh * back.lw, r.lc * r.lf * r.lh * r.lw);
    /* Everything else as written: lend back r's two arrays for the comparison. */
    back.video = r.video, back.latents = r.latents;
    assert_records_equal(&r, &back);
    back.video = NULL, back.latents = NULL;
    record_free(&back);
    record_free(&r);
    assert_no_open_hdf5();
}

Test(record, roundtrip_failed_without_latents) {
    char path[512];
    tpath(path, sizeof path, "failed.h5");
    RunRecord r, back;
    fill_record(&r, 0, 0);
    r.failed = 1, r.failed_step = 3;
    snprintf(r.failure, sizeof r.failure, "NaN in the model output at step 3 (cond)");
    Error err = {{0}};
    cr_assert_eq(record_write(path, &r, &err), 0, "%s", err.msg);
    cr_assert_eq(record_read(path, &back, &err), 0, "%s", err.msg);
    assert_records_equal(&r, &back);
    cr_assert_eq(back.metrics.frames, 0);
    cr_assert_eq(back.lc, 0);
    record_free(&back);
    record_free(&r);
}

/* ---------------------------------------------------------------------------------------------------------- */
/* Python: h5py and xarray open the same file without special flags */

static char *fnum(double v) {
    char buf[64];
    snprintf(buf, sizeof buf, "%.17g", v); /* "inf" / "nan" too: Python's float() parses them */
    return strdup(buf);
}

static void add_num(cJSON *o, const char *k, double v) {
    char *s = fnum(v);
    cJSON_AddStringToObject(o, k, s);
    free(s);
}

static cJSON *num_array(const double *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        char *s = fnum(v[i]);
        cJSON_AddItemToArray(a, cJSON_CreateString(s));
        free(s);
    }
    return a;
}

/* The sidecar holds everything the script checks, so the expected values come from the C side. */
static void write_sidecar(const char *json_path, const RunRecord *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON *s = cJSON_AddObjectToObject(o, "strings");
    cJSON_AddStringToObject(s, "strategy", r->strategy);
    cJSON_AddStringToObject(s, "strategy_spec", r->strategy_spec);
    cJSON_AddStringToObject(s, "model", r->model);
    cJSON_AddStringToObject(s, "weights_path", r->weights_path);
    cJSON_AddStringToObject(s, "weights_sha256", r->weights_sha256);
    cJSON_AddStringToObject(s, "prompt_id", r->prompt_id);
    cJSON_AddStringToObject(s, "prompt", r->prompt);
    cJSON_AddStringToObject(s, "negative_prompt", r->negative_prompt);
    cJSON_AddStringToObject(s, "conditioning", r->conditioning);
    cJSON_AddStringToObject(s, "contexts_path", r->contexts_path);
    cJSON_AddStringToObject(s, "contexts_sha256", r->contexts_sha256);
    cJSON_AddStringToObject(s, "contexts_negative_id", r->contexts_negative_id);
    cJSON_AddStringToObject(s, "solver", r->solver);
    cJSON_AddStringToObject(s, "backend", r->backend);
    cJSON_AddStringToObject(s, "device", r->device);
    cJSON_AddStringToObject(s, "version", r->version);
    cJSON_AddStringToObject(s, "start_time", r->start_time);
    cJSON_AddStringToObject(s, "status", r->failed ? "failed" : "complete");
    cJSON_AddStringToObject(s, "failure", r->failure);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)r->seed);
    cJSON_AddStringToObject(o, "seed", seed);
    cJSON_AddNumberToObject(o, "steps", r->steps);
    cJSON_AddNumberToObject(o, "failed_step", r->failed ? r->failed_step : -1);
    add_num(o, "shift", r->shift);
    add_num(o, "guidance", r->guidance);
    cJSON_AddNumberToObject(o, "frames", r->frames);
    cJSON_AddNumberToObject(o, "height", r->height);
    cJSON_AddNumberToObject(o, "width", r->width);

    int n = r->steps;
    double *col = calloc(2 * n, sizeof *col);
    cJSON *st = cJSON_AddObjectToObject(o, "step_vars");
#define ADD1(F)                                                    \
    for (int i = 0; i < n; i++) col[i] = r->step[i].F;             \
    cJSON_AddItemToObject(st, #F, num_array(col, n));
#define ADD2(F)                                                    \
    for (int i = 0; i < n; i++)                                    \
        for (int b = 0; b < 2; b++) col[2 * i + b] = r->step[i].F[b]; \
    cJSON_AddItemToObject(st, #F, num_array(col, 2 * n));
    ADD1(timestep) ADD1(sigma) ADD1(wall_seconds) ADD1(cpu_seconds) ADD1(flops) ADD1(strategy_bytes)
    ADD2(computed) ADD2(signal) ADD2(accumulator) ADD2(threshold) ADD2(k) ADD2(call_seconds) ADD2(layers_run) ADD2(shared)
#undef ADD1
#undef ADD2
    free(col);

    size_t nv = (size_t)r->frames * r->height * r->width * 3;
    cJSON *video = cJSON_AddArrayToObject(o, "video");
    for (size_t i = 0; i < nv; i++) cJSON_AddItemToArray(video, cJSON_CreateNumber(r->video[i]));
    if (r->latents) {
        int shape[4] = {r->lc, r->lf, r->lh, r->lw};
        cJSON_AddItemToObject(o, "latent_shape", cJSON_CreateIntArray(shape, 4));
        size_t nl = (size_t)n * r->lc * r->lf * r->lh * r->lw;
        double *l = malloc(nl * sizeof *l);
        for (size_t i = 0; i < nl; i++) l[i] = r->latents[i];
        cJSON_AddItemToObject(o, "latents", num_array(l, (int)nl));
        free(l);
    } else {
        cJSON_AddNullToObject(o, "latent_shape");
    }
    cJSON *t = cJSON_AddObjectToObject(o, "totals");
    add_num(t, "wall_seconds", r->wall_seconds);
    add_num(t, "model_seconds", r->model_seconds);
    add_num(t, "calls_total", r->calls_total);
    add_num(t, "calls_computed", r->calls_computed);
    add_num(t, "calls_skipped", r->calls_skipped);
    add_num(t, "calls_shared", r->calls_shared);
    add_num(t, "hit_rate", (double)r->calls_skipped / r->calls_total);
    add_num(t, "flops_spent", r->flops_spent);
    add_num(t, "flops_full", r->flops_full);
    add_num(t, "speedup_flops", r->flops_full / r->flops_spent);
    add_num(t, "peak_rss_kb", (double)r->peak_rss_kb);
    add_num(t, "strategy_bytes_peak", r->strategy_bytes_peak);
    const RunMetrics *m = &r->metrics;
    if (m->frames > 0) {
        cJSON *mj = cJSON_AddObjectToObject(o, "metrics");
        cJSON_AddItemToObject(mj, "psnr", num_array(m->psnr, m->frames));
        cJSON_AddItemToObject(mj, "ssim", num_array(m->ssim, m->frames));
        if (m->lpips) cJSON_AddItemToObject(mj, "lpips", num_array(m->lpips, m->frames));
        add_num(mj, "psnr_mean", m->psnr_mean);
        add_num(mj, "ssim_mean", m->ssim_mean);
        add_num(mj, "lpips_mean", m->lpips_available ? m->lpips_mean : NAN);
        cJSON_AddNumberToObject(mj, "lpips_available", m->lpips_available);
        cJSON_AddStringToObject(mj, "baseline", m->baseline);
    } else {
        cJSON_AddNullToObject(o, "metrics");
    }
    char *text = cJSON_Print(o);
    FILE *f = fopen(json_path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    free(text);
    cJSON_Delete(o);
}

static int run_check_script(const char *h5, const char *json) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' tests/check_record.py '%s' '%s'", fixture_python(), h5, json);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(record, python_h5py_xarray) {
    char path[512], json[512];
    tpath(path, sizeof path, "py.h5");
    tpath(json, sizeof json, "py.json");
    RunRecord r;
    fill_record(&r, 1, 1);
    Error err = {{0}};
    cr_assert_eq(record_write(path, &r, &err), 0, "%s", err.msg);
    write_sidecar(json, &r);
    cr_assert_eq(run_check_script(path, json), 0, "tests/check_record.py failed on %s", path);
    record_free(&r);
}

/* The other layout variants: no latents, a failed run, metrics added later without LPIPS. */
Test(record, python_failed_lpips_unavailable) {
    char path[512], json[512];
    tpath(path, sizeof path, "py2.h5");
    tpath(json, sizeof json, "py2.json");
    RunRecord r;
    fill_record(&r, 0, 0);
    r.failed = 1, r.failed_step = 4;
    snprintf(r.failure, sizeof r.failure, "Inf in x");
    Error err = {{0}};
    cr_assert_eq(record_write(path, &r, &err), 0, "%s", err.msg);
    fill_metrics(&r.metrics, FRAMES, 0);
    cr_assert_eq(record_write_metrics(path, &r.metrics, &err), 0, "%s", err.msg);
    write_sidecar(json, &r);
    cr_assert_eq(run_check_script(path, json), 0, "tests/check_record.py failed on %s", path);
    record_free(&r);
}

/* ---------------------------------------------------------------------------------------------------------- */
/* Corrupt and foreign inputs */

Test(record, read_missing_file) {
    char path[512];
    tpath(path, sizeof path, "nope.h5");
    assert_read_fails(path, "No such file");
}

Test(record, read_text_file) {
    char path[512];
    tpath(path, sizeof path, "text.h5");
    FILE *f = fopen(path, "w");
    fputs("this is not an HDF5 file\n", f);
    fclose(f);
    assert_read_fails(path, "not an HDF5 file");
}

Test(record, read_truncated) {
    char path[512], cut[512];
    tpath(path, sizeof path, "full.h5");
    tpath(cut, sizeof cut, "cut.h5");
    write_sample(path, 1, 1);
    long n = file_size(path);
    cr_assert_gt(n, 4096);
    /* Keep the superblock (so it still looks like HDF5) but lose the second half. */
    FILE *in = fopen(path, "rb"), *out = fopen(cut, "wb");
    char *buf = malloc(n);
    cr_assert_eq(fread(buf, 1, n, in), (size_t)n);
    fwrite(buf, 1, n / 2, out);
    fclose(in);
    fclose(out);
    free(buf);
    assert_read_fails(cut, "truncated file");
}

/* Creates an HDF5 file with the given root-level content; used for foreign and damaged layouts. */
static hid_t create_plain(const char *path) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    return f;
}

Test(record, read_foreign_layout) {
    char path[512];
    tpath(path, sizeof path, "foreign.h5");
    hid_t f = create_plain(path);
    hsize_t n = 4;
    hid_t s = H5Screate_simple(1, &n, NULL);
    hid_t d = H5Dcreate2(f, "foo", H5T_IEEE_F32LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(d);
    H5Sclose(s);
    H5Fclose(f);
    assert_read_fails(path, "missing attribute /strategy");
}

/* Copies a good record then lets `damage` alter it through the HDF5 API. */
static void damaged_copy(const char *name, char *path, size_t cap, void (*damage)(hid_t)) {
    tpath(path, cap, name);
    write_sample(path, 1, 1);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    damage(f);
    cr_assert_geq(H5Fclose(f), 0);
}

static void replace_dataset(hid_t f, const char *name, int rank, const hsize_t *dims, hid_t type) {
    cr_assert_geq(H5Ldelete(f, name, H5P_DEFAULT), 0);
    hid_t s = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(f, name, type, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert_geq(d, 0);
    H5Dclose(d);
    H5Sclose(s);
}

static void damage_computed_shape(hid_t f) {
    hsize_t dims[2] = {STEPS, 3};
    replace_dataset(f, "steps/computed", 2, dims, H5T_STD_U8LE);
}
static void damage_frames_attr(hid_t f) {
    int32_t v = FRAMES + 1;
    hid_t a = H5Aopen(f, "frames", H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT32, &v);
    H5Aclose(a);
}
static void damage_missing_group(hid_t f) { H5Ldelete(f, "totals", H5P_DEFAULT); }
static void damage_missing_dataset(hid_t f) { H5Ldelete(f, "steps/sigma", H5P_DEFAULT); }
static void damage_string_attr(hid_t f) {
    H5Adelete(f, "model");
    int32_t v = 3;
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, "model", H5T_STD_I32LE, s, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT32, &v);
    H5Aclose(a);
    H5Sclose(s);
}
static void damage_latent_steps(hid_t f) {
    hsize_t dims[5] = {STEPS - 1, LC, LF, LH, LW};
    replace_dataset(f, "latents/latents", 5, dims, H5T_IEEE_F32LE);
}
static void damage_metrics_type(hid_t f) {
    hsize_t dims[1] = {FRAMES};
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, 8);
    replace_dataset(f, "metrics/ssim", 1, dims, t);
    H5Tclose(t);
}

Test(record, read_wrong_layouts) {
    char path[512];
    damaged_copy("computed.h5", path, sizeof path, damage_computed_shape);
    assert_read_fails(path, "/steps/computed has shape [7][3], expected [7][2]");
    damaged_copy("frames.h5", path, sizeof path, damage_frames_attr);
    assert_read_fails(path, "/video/frames has shape [3][5][4][3], expected [4][5][4][3]");
    damaged_copy("group.h5", path, sizeof path, damage_missing_group);
    assert_read_fails(path, "missing group /totals");
    damaged_copy("dataset.h5", path, sizeof path, damage_missing_dataset);
    assert_read_fails(path, "missing dataset /steps/sigma");
    damaged_copy("attr.h5", path, sizeof path, damage_string_attr);
    assert_read_fails(path, "model is not a string");
    damaged_copy("latents.h5", path, sizeof path, damage_latent_steps);
    assert_read_fails(path, "/latents/latents has 6 steps, expected 7");
    damaged_copy("metrics.h5", path, sizeof path, damage_metrics_type);
    assert_read_fails(path, "/metrics/ssim is not numeric");
}

/* ---------------------------------------------------------------------------------------------------------- */
/* Failing writes leave nothing behind */

static void assert_write_fails(const char *path, const char *what) {
    RunRecord r;
    fill_record(&r, 1, 1);
    Error err = {{0}};
    cr_assert_eq(record_write(path, &r, &err), -1, "writing %s should fail", path);
    cr_assert(strstr(err.msg, path) != NULL, "message does not name the file: %s", err.msg);
    cr_assert(strstr(err.msg, what) != NULL, "message lacks '%s': %s", what, err.msg);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    cr_assert(!exists(tmp), "%s left behind", tmp);
    assert_no_open_hdf5();
    record_free(&r);
}

Test(record, write_missing_directory) {
    char path[512];
    tpath(path, sizeof path, "no/such/dir/run.h5");
    assert_write_fails(path, "No such file or directory");
}

Test(record, write_parent_is_a_file) {
    char file[512], path[600];
    tpath(file, sizeof file, "plain");
    FILE *f = fopen(file, "w");
    fclose(f);
    snprintf(path, sizeof path, "%s/run.h5", file);
    assert_write_fails(path, "Not a directory");
}

Test(record, write_readonly_directory) {
    char dir[512], path[600];
    tpath(dir, sizeof dir, "ro");
    cr_assert_eq(mkdir(dir, 0555), 0);
    if (access(dir, W_OK) == 0) {
        teardown_dir(); /* a skipped test does not run .fini */
        cr_skip_test("running as root: a read-only directory is still writable");
    }
    snprintf(path, sizeof path, "%s/run.h5", dir);
    assert_write_fails(path, "Permission denied");
}

/* The HDF5 file is complete but the final rename fails (the target is a directory): the .tmp must go. */
Test(record, write_rename_fails) {
    char path[512];
    tpath(path, sizeof path, "isdir.h5");
    cr_assert_eq(mkdir(path, 0755), 0);
    char inner[600];
    snprintf(inner, sizeof inner, "%s/keep", path);
    FILE *f = fopen(inner, "w");
    fclose(f);
    assert_write_fails(path, "cannot rename");
    cr_assert(exists(inner), "the existing directory was touched");
}

/* A write that fails half-way (file size limit, as on a full disk): HDF5's error must become our message and the
 * partial .tmp must go. It runs in a child that leaves with _exit(): after a failed flush HDF5 1.10 cannot close
 * the file and crashes in its own atexit handler, which is HDF5's state, not ours, to check. */
Test(record, write_fails_midway) {
    char path[512], tmp[600];
    tpath(path, sizeof path, "big.h5");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        RunRecord r;
        fill_record(&r, 1, 1);
        struct rlimit lim = {16384, 16384};
        signal(SIGXFSZ, SIG_IGN); /* get EFBIG instead of being killed */
        setrlimit(RLIMIT_FSIZE, &lim);
        Error err = {{0}};
        int rc = record_write(path, &r, &err);
        if (write(fds[1], err.msg, strlen(err.msg)) < 0) _exit(3);
        _exit(rc == -1 ? 0 : 2);
    }
    close(fds[1]);
    char msg[1024] = {0};
    ssize_t n = read(fds[0], msg, sizeof msg - 1);
    close(fds[0]);
    int st;
    waitpid(pid, &st, 0);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "record_write did not fail cleanly (status %d)", st);
    cr_assert_gt(n, 0);
    cr_assert(strstr(msg, path) && strstr(msg, "File too large"), "%s", msg);
    cr_assert(!exists(tmp), "%s left behind", tmp);
    cr_assert(!exists(path));
}

Test(record, write_rejects_inconsistent_record) {
    char path[512];
    tpath(path, sizeof path, "bad.h5");
    RunRecord r;
    fill_record(&r, 0, 1);
    r.metrics.frames = FRAMES - 1;
    Error err = {{0}};
    cr_assert_eq(record_write(path, &r, &err), -1);
    cr_assert(strstr(err.msg, "metrics have 2 frames, the video has 3"), "%s", err.msg);
    cr_assert(!exists(path));
    r.metrics.frames = FRAMES;
    free(r.video);
    r.video = NULL;
    cr_assert_eq(record_write(path, &r, &err), -1);
    cr_assert(strstr(err.msg, "video missing"), "%s", err.msg);
    record_free(&r);
}

/* ---------------------------------------------------------------------------------------------------------- */
/* Metrics replacement */

static herr_t count_link(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    (void)g, (void)info;
    char *names = data;
    strcat(names, name);
    strcat(names, " ");
    return 0;
}

/* Space-separated member names of a group, in name order. */
static void list_group(const char *path, const char *group, char *names) {
    names[0] = '\0';
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t g = H5Gopen2(f, group, H5P_DEFAULT);
    H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, count_link, names);
    H5Gclose(g);
    H5Fclose(f);
}

Test(record, metrics_replaced_twice) {
    char path[512], tmp[600], names[512];
    tpath(path, sizeof path, "m.h5");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    write_sample(path, 1, 0);
    Error err = {{0}};
    RunMetrics m[3];
    fill_metrics(&m[0], FRAMES, 1);
    fill_metrics(&m[1], FRAMES, 0);
    fill_metrics(&m[2], FRAMES, 1);
    long size[3];
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(record_write_metrics(path, &m[i], &err), 0, "%s", err.msg);
        cr_assert(!exists(tmp));
        assert_no_open_hdf5();
        RunRecord back;
        cr_assert_eq(record_read(path, &back, &err), 0, "%s", err.msg);
        assert_metrics_equal(&m[i], &back.metrics);
        cr_assert_eq(back.steps, STEPS); /* the rest of the record is untouched */
        cr_assert_not_null(back.latents);
        record_free(&back);
        list_group(path, "/", names);
        cr_assert_str_eq(names, "latents metrics steps totals video ");
        list_group(path, "/metrics", names);
        cr_assert_str_eq(names, "frame lpips psnr ssim ");
        size[i] = file_size(path);
    }
    /* HDF5 does not reuse the space of a deleted group in a later session, so each replacement may grow the file
     * by about one metrics group (~4 KB here), but never by a copy of the record. */
    cr_assert_leq(size[2], size[1] + 8192, "file grew from %ld to %ld", size[1], size[2]);
    cr_assert_leq(size[1], size[0] + 8192, "file grew from %ld to %ld", size[0], size[1]);
    for (int i = 0; i < 3; i++) run_metrics_free(&m[i]);
}

Test(record, metrics_rejected) {
    char path[512], foreign[512], tmp[600];
    tpath(path, sizeof path, "m.h5");
    write_sample(path, 0, 0);
    long before = file_size(path);
    RunMetrics m;
    fill_metrics(&m, FRAMES + 2, 1);
    Error err = {{0}};
    cr_assert_eq(record_write_metrics(path, &m, &err), -1);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, "metrics have 5 frames, the record has 3"), "%s", err.msg);
    cr_assert_eq(file_size(path), before);
    run_metrics_free(&m);

    tpath(foreign, sizeof foreign, "foreign.txt");
    FILE *f = fopen(foreign, "w");
    fputs("hello\n", f);
    fclose(f);
    fill_metrics(&m, FRAMES, 1);
    cr_assert_eq(record_write_metrics(foreign, &m, &err), -1);
    cr_assert(strstr(err.msg, foreign) && strstr(err.msg, "not an HDF5 file"), "%s", err.msg);
    snprintf(tmp, sizeof tmp, "%s.tmp", foreign);
    cr_assert(!exists(tmp));
    run_metrics_free(&m);
}

/* ---------------------------------------------------------------------------------------------------------- */
/* Summary and `cachebench info` */

static char *info_text(const char *path) {
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    Error err = {{0}};
    cr_assert_eq(record_print_info(path, out, &err), 0, "%s", err.msg);
    fclose(out);
    return text;
}

static void assert_contains(const char *text, const char *what) {
    cr_assert(strstr(text, what) != NULL, "missing '%s' in:\n%s", what, text);
}

Test(record, print_info) {
    char path[512];
    tpath(path, sizeof path, "info.h5");
    write_sample(path, 1, 1);
    char *t = info_text(path);
    assert_contains(t, path);
    assert_contains(t, "teacache:threshold=0.15,warmup=2,cutoff=1");
    assert_contains(t, "p007");
    assert_contains(t, "seed       16045690984503111693");
    assert_contains(t, "caf\xc3\xa9");
    assert_contains(t, "7 steps, solver unipc, shift 5, guidance 5.5");
    assert_contains(t, "cpu on AMD EPYC");
    assert_contains(t, "status     complete");
    assert_contains(t, "8 of 14 computed, 6 reused, hit rate 42.9%");
    assert_contains(t, "cond     CCRCRRC\n");
    assert_contains(t, "uncond   CRRCCRC\n");
    assert_contains(t, "latents    [7][2][2][3][3]");
    assert_contains(t, "PSNR inf dB");
    free(t);

    RunRecord r;
    fill_record(&r, 0, 0);
    r.failed = 1, r.failed_step = 2;
    snprintf(r.failure, sizeof r.failure, "NaN in output");
    Error err = {{0}};
    cr_assert_eq(record_write(path, &r, &err), 0, "%s", err.msg);
    RunMetrics m;
    fill_metrics(&m, FRAMES, 0);
    cr_assert_eq(record_write_metrics(path, &m, &err), 0, "%s", err.msg);
    t = info_text(path);
    assert_contains(t, "failed at step 2: NaN in output");
    assert_contains(t, "cond     CCR----\n");
    assert_contains(t, "LPIPS unavailable");
    assert_contains(t, "latents    not recorded");
    free(t);
    run_metrics_free(&m);
    record_free(&r);
}

static int info(int argc, ...) {
    char *argv[8] = {"info"};
    va_list ap;
    va_start(ap, argc);
    for (int i = 1; i < argc; i++) argv[i] = va_arg(ap, char *);
    va_end(ap);
    return cmd_info(argc, argv);
}

Test(record, cmd_info_exit_codes) {
    cr_redirect_stdout();
    cr_redirect_stderr();
    char good[512], bad[512];
    tpath(good, sizeof good, "good.h5");
    tpath(bad, sizeof bad, "bad.h5");
    write_sample(good, 0, 0);
    FILE *f = fopen(bad, "w");
    fputs("nope", f);
    fclose(f);
    cr_assert_eq(info(1), 2, "no file is a usage error");
    cr_assert_eq(info(2, "--bogus"), 2);
    cr_assert_eq(info(3, "-x", good), 2);
    cr_assert_eq(info(2, "--help"), 0);
    cr_assert_eq(info(2, good), 0);
    cr_assert_eq(info(2, bad), 1);
    cr_assert_eq(info(3, good, bad), 1, "one bad file fails the command");
}
