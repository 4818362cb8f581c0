/* Replays every input the fuzz targets (fuzz/, `make fuzz`) ever crashed, hung or leaked on, kept in
 * tests/regressions/<target>/, through the same entry points the targets call, on every `make test`. A new finding
 * is fixed, then its input is dropped into that folder: no test code to write.
 *
 * Every input must be either read or rejected with a message naming the file; none may crash (Criterion reports a
 * crashed test) or hang (.timeout). Run records are also given to `cachebench info`, which must exit 0 or 1.
 *
 * Files named hdf5_crash_* and hdf5_hang_* crash or hang HDF5 1.10 itself (results/record.c, read_in_child: the
 * reader survives them by reading in a child process first, with a time limit). Under AddressSanitizer
 * (`make sanitize`) the hdf5_crash_* ones are skipped: ASan reports HDF5's own memcpy of (size_t)-1 bytes inside that
 * child, which is the library's bug, not ours, and would fail the run. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/micro_config.h"
#include "metrics/image.h"
#include "models/backend.h"
#include "models/dit/dit.h"
#include "models/safetensors.h"
#include "results/record.h"
#include "strategies/strategy.h"
#include "tests/fixtures.h"

/* The time limit of the child-process HDF5 read while replaying; hangs in HDF5 take this long to turn into errors. */
#define HDF5_TIME_LIMIT "3"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

typedef void (*ReplayFn)(const char *path);

/* Calls fn on every regular file of tests/regressions/<target>; returns how many. */
static int replay_all(const char *target, ReplayFn fn) {
    char dir[256];
    snprintf(dir, sizeof dir, "tests/regressions/%s", target);
    DIR *d = opendir(dir);
    if (!d) return 0;
    int count = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.' || strcmp(e->d_name, "README.md") == 0) continue;
        char path[600];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (UNDER_ASAN && strncmp(e->d_name, "hdf5_crash_", 11) == 0) {
            fprintf(stderr, "%s: skipped under AddressSanitizer (crashes inside HDF5, see the file comment)\n", path);
            continue;
        }
        fprintf(stderr, "replaying %s\n", path); /* names the input if it crashes the test */
        fn(path);
        count++;
    }
    closedir(d);
    return count;
}

static void expect_named(const char *path, const Error *err) {
    cr_expect(strstr(err->msg, path) != NULL, "%s: the message does not name the file: %s", path, err->msg);
}

static void replay_safetensors(const char *path) {
    StFile f;
    Error err = {{0}};
    if (st_open(&f, path, &err) != 0) {
        expect_named(path, &err);
        return;
    }
    for (int i = 0; i < f.num_tensors; i++) {
        const StTensor *t = &f.tensors[i];
        if (t->dtype == ST_OTHER) continue;
        float *dst = malloc(t->nbytes * 2 + 1);
        cr_assert_not_null(dst);
        cr_expect_eq(st_to_f32(t, dst, &err), 0, "%s: %s", path, err.msg);
        free(dst);
    }
    st_close(&f);
}

static void replay_dit_load(const char *path) {
    DitModel m;
    Error err = {{0}};
    if (dit_load(&m, &FUZZ_MICRO_CONFIG, path, &err) != 0) {
        expect_named(path, &err);
        return;
    }
    dit_free(&m);
}

static void replay_png(const char *path) {
    Image img;
    Error err = {{0}};
    if (image_read_png(path, &img, &err) != 0) {
        expect_named(path, &err);
        return;
    }
    cr_expect(img.height > 0 && img.width > 0 && img.rgb, "%s: read as an empty image", path);
    image_free(&img);
}

static void replay_strategy_spec(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    char spec[4096] = {0};
    size_t n = fread(spec, 1, sizeof spec - 1, f);
    fclose(f);
    spec[n] = '\0';
    StrategyEnv env = {.num_steps = 6, .num_layers = 2, .num_heads = 2, .dim = 4, .model_numel = 16,
                       .tokens_numel = 16, .ops = cpu_vec_ops(), .model_name = "tiny", .weights_path = NULL};
    Strategy s;
    Error err = {{0}};
    if (strategy_create(&s, spec, &env, &err) == 0) strategy_destroy(&s);
    else cr_expect(err.msg[0] != '\0', "%s: rejected without a message", path);
}

static void replay_record(const char *path) {
    setenv("CACHEBENCH_HDF5_TIME_LIMIT", HDF5_TIME_LIMIT, 1); /* inherited by the CLI below too */
    RunRecord r;
    Error err = {{0}};
    if (record_read(path, &r, &err) == 0) record_free(&r);
    else expect_named(path, &err);
    char out[8192];
    const char *args[] = {"info", path, NULL};
    int rc = fixture_run_cli(out, sizeof out, args);
    cr_expect(rc == 0 || rc == 1, "cachebench info %s exited with %d (0 or 1 expected):\n%s", path, rc, out);
    if (rc == 1) cr_expect(strstr(out, path) != NULL, "info does not name the file:\n%s", out);
}

Test(regressions, safetensors) { replay_all("safetensors", replay_safetensors); }
Test(regressions, dit_load) { replay_all("dit_load", replay_dit_load); }
Test(regressions, png) { replay_all("png", replay_png); }
Test(regressions, strategy_spec) { replay_all("strategy_spec", replay_strategy_spec); }
Test(regressions, record, .timeout = 120) { replay_all("record", replay_record); }
