/* libFuzzer target: the sweep's input parsers (harness/sweep.c) on arbitrary bytes — the INI config reader
 * (inih plus our key handling and template validation), strategy-template expansion (lists, ranges, cartesian
 * products) and seed lists. Each input is given to all three: they are independent, and text that one accepts is
 * often close to text another must reject. */
#include "fuzz/fuzz_common.h"

#include <string.h>

#include "harness/sweep.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64];
    int fd = fuzz_memfile(data, size, path);
    SweepConfig *c = malloc(sizeof *c);
    if (!c) abort();
    sweep_config_init(c);
    Error err = {{0}};
    if (sweep_config_read_ini(c, path, &err) == 0) {
        /* Every template the reader accepted must expand again, as the plan will. */
        for (int i = 0; i < c->n_templates; i++) {
            SpecList l = {0};
            if (sweep_expand_template(c->templates[i], &l, &err) != 0) abort();
            spec_list_free(&l);
        }
    }
    free(c);
    close(fd);

    char *text = fuzz_string(data, size);
    SpecList l = {0};
    if (sweep_expand_template(text, &l, &err) == 0) spec_list_free(&l);
    uint64_t seeds[SWEEP_MAX_SEEDS];
    int count = 0;
    sweep_parse_seeds(text, seeds, SWEEP_MAX_SEEDS, &count, &err);
    free(text);
    return 0;
}
