/* libFuzzer target: the safetensors reader (models/safetensors.c) on arbitrary bytes. st_open must either reject
 * the file with a message naming it or return a table whose every tensor lies inside the mapping; the target then
 * touches every tensor (st_find by name, and st_to_f32 on the small float ones) so a table that lies about where its
 * data is shows up as an out-of-bounds read under ASan. */
#include "fuzz/fuzz_common.h"

#include <string.h>

#include "models/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64];
    int fd = fuzz_memfile(data, size, path);
    StFile f;
    Error err = {{0}};
    if (st_open(&f, path, &err) == 0) {
        for (int i = 0; i < f.num_tensors; i++) {
            const StTensor *t = &f.tensors[i];
            if (st_find(&f, t->name) != t) abort(); /* names are unique, the lookup must find this very entry */
            if (t->nbytes && (const uint8_t *)t->data + t->nbytes > (const uint8_t *)f.map + f.map_size) abort();
            if (t->dtype == ST_OTHER || t->nbytes > (1u << 20)) continue;
            float *dst = malloc(t->nbytes * 2 + 1); /* F16/BF16 widen 2 -> 4 bytes */
            if (!dst) abort();
            if (st_to_f32(t, dst, &err) != 0) abort(); /* float dtypes always convert */
            free(dst);
        }
        st_close(&f);
    } else if (!strstr(err.msg, path)) {
        fprintf(stderr, "message does not name the file: %s\n", err.msg);
        abort();
    }
    close(fd);
    return 0;
}
