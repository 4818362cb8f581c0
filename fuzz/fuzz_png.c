/* libFuzzer target: PNG input (image_read_png, metrics/image.c) on arbitrary bytes: every colour type must become
 * RGB8 of the size the header gives, or be rejected with a message naming the file. */
#include "fuzz/fuzz_common.h"

#include <string.h>

#include "metrics/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64];
    int fd = fuzz_memfile(data, size, path);
    Image img;
    Error err = {{0}};
    if (image_read_png(path, &img, &err) == 0) {
        if (img.height <= 0 || img.width <= 0 || !img.rgb) abort();
        volatile unsigned sum = 0; /* every pixel byte must be inside the allocation */
        for (size_t i = 0; i < (size_t)img.height * img.width * 3; i++) sum += img.rgb[i];
        (void)sum;
        image_free(&img);
    } else if (!strstr(err.msg, path)) {
        fprintf(stderr, "message does not name the file: %s\n", err.msg);
        abort();
    }
    close(fd);
    return 0;
}
