/* The shared driver of the strategies' official-code replays (tests/strategy_replay.py) against the C runner: the
 * uncached model driven by the Python loop from the inputs fixture_replay_case writes must reproduce every latent of
 * `cachebench run --strategy none`. A replay test of a strategy is only as good as this driver. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "models/safetensors.h"
#include "results/record.h"
#include "tests/fixtures.h"

#define WEIGHTS "models/tiny/tiny.safetensors"

Test(replay, driver_reproduces_the_uncached_runner, .timeout = 180) {
    const char *py = fixture_python();
    char cmd[9000], log[8192];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import numpy, torch' >/dev/null 2>&1", py);
    if (system(cmd) != 0) cr_skip_test("%s cannot import numpy and torch (Debian: python3-numpy, python3-torch)", py);
    char *dir = fixture_tmpdir();
    char out[4200], rec_path[4300], case_path[4300], py_out[4300];
    snprintf(out, sizeof out, "%s/runs", dir);
    const char *run[] = {"run", "--prompt", "red circle moving right", "--seed", "7", "--steps", "6", "--latents",
                         "--quiet", "--out", out, NULL};
    cr_assert_eq(fixture_run_cli(log, sizeof log, run), 0, "%s", log);
    snprintf(rec_path, sizeof rec_path, "%s/tiny__none__p0__s7.h5", out);
    snprintf(case_path, sizeof case_path, "%s/case.safetensors", dir);
    snprintf(py_out, sizeof py_out, "%s/py.safetensors", dir);
    const DitConfig *cfg = dit_config_by_name("tiny");
    cr_assert_eq(fixture_replay_case(case_path, cfg, WEIGHTS, "red circle moving right", "", 7, 6, cfg->default_shift,
                                     cfg->default_guidance),
                 0);
    snprintf(cmd, sizeof cmd, "'%s' tests/strategy_replay.py '%s' '%s' 2>&1", py, case_path, py_out);
    cr_assert_eq(system(cmd), 0, "%s", cmd);

    RunRecord rec = {0};
    Error err = {{0}};
    cr_assert_eq(record_read(rec_path, &rec, &err), 0, "%s", err.msg);
    cr_assert_not_null(rec.latents);
    StFile f;
    cr_assert_eq(st_open(&f, py_out, &err), 0, "%s", err.msg);
    const StTensor *t = st_find(&f, "latents");
    cr_assert_not_null(t);
    const size_t n = (size_t)rec.steps * rec.lc * rec.lf * rec.lh * rec.lw;
    cr_assert_eq(st_numel(t->ndim, t->shape), n);
    float *want = malloc(n * sizeof(float));
    cr_assert_eq(st_to_f32(t, want, &err), 0, "%s", err.msg);
    /* float32 C against float64 torch over 6 CFG steps: within 5e-5 of the latent's scale (measured: 8e-6 at step 6). */
    const size_t per_step = n / rec.steps;
    for (int i = 0; i < rec.steps; i++) {
        double diff = 0.0, scale = 0.0;
        for (size_t j = 0; j < per_step; j++) {
            const size_t at = (size_t)i * per_step + j;
            diff = fmax(diff, fabs((double)rec.latents[at] - want[at]));
            scale = fmax(scale, fabs((double)want[at]));
        }
        cr_expect_leq(diff, 5e-5 * scale, "step %d: max |C - Python| %.3g (scale %.3g)", i, diff, scale);
    }
    free(want);
    st_close(&f);
    record_free(&rec);
    fixture_rmdir(dir);
    free(dir);
}
