/* libFuzzer target: the model loader (dit_load, models/dit/dit.c) on arbitrary safetensors bytes, with the micro config
 * of fuzz/micro_config.h. On success every weight slot is read, so a slot pointing outside the mapping or the arena
 * shows up under ASan. */
#include "fuzz/fuzz_common.h"

#include <string.h>

#include "fuzz/micro_config.h"
#include "models/dit/dit.h"

static int touch(void *user, const char *name, int ndim, const int64_t *shape, const float **slot) {
    (void)name;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    volatile float sum = 0.0f;
    for (size_t i = 0; i < n; i++) sum += (*slot)[i];
    (void)sum;
    (*(int *)user)++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64];
    int fd = fuzz_memfile(data, size, path);
    DitModel m;
    Error err = {{0}};
    if (dit_load(&m, &FUZZ_MICRO_CONFIG, path, &err) == 0) {
        int count = 0;
        dit_for_each_tensor(&m, touch, &count);
        dit_free(&m);
    } else if (!strstr(err.msg, path)) {
        fprintf(stderr, "message does not name the file: %s\n", err.msg);
        abort();
    }
    close(fd);
    return 0;
}
