/* The tiny model's Python side that the C tests do not reach: training/tiny/test_dataset.py checks the batched torch
 * renderer (used when training on a GPU) against the numpy renderer, that both training-batch paths draw the same
 * data, and train.py's sign-of-motion options (--near-noise, --split-directions, --reverse-pairs). Needs python3
 * with numpy and torch (Debian: python3-numpy, python3-torch; CACHEBENCH_PYTHON chooses it). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "tests/fixtures.h"

Test(tiny_python, torch_renderer_matches_numpy_renderer, .timeout = 120) {
    const char *py = fixture_python();
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import numpy, torch' >/dev/null 2>&1", py);
    if (system(cmd) != 0) cr_skip_test("%s cannot import numpy and torch (Debian: python3-numpy, python3-torch)", py);
    snprintf(cmd, sizeof cmd, "'%s' training/tiny/test_dataset.py 2>&1", py);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "cannot run %s", cmd);
    char out[4096] = {0};
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    int status = pclose(p);
    cr_assert_eq(status, 0, "%s failed (status %d):\n%s", cmd, status, out);
}
