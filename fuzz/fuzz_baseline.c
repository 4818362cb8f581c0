/* libFuzzer target: the baseline reader of `cachebench check` (results/baseline.c), TSV and JSON, on arbitrary
 * bytes. A baseline it accepts must be compatible with itself and pass a check against itself with exact decisions
 * and zero tolerances: the reader may refuse anything, but what it accepts must be checkable. */
#include "fuzz/fuzz_common.h"

#include "results/baseline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64];
    int fd = fuzz_memfile(data, size, path);
    Baseline b;
    Error err = {{0}};
    if (baseline_read(path, &b, &err) == 0) {
        BaselineTolerance tol = {.exact_decisions = 1};
        FILE *devnull = fopen("/dev/null", "w");
        if (!devnull) abort();
        if (baseline_compatible(&b, &b, &err) != 0 || baseline_check(&b, &b, &tol, devnull) != 0) abort();
        fclose(devnull);
        baseline_free(&b);
    }
    close(fd);
    return 0;
}
