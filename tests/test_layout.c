/* The folder layout is the architecture (README "Layout"): scripts/check-layers.sh keeps every #include pointing down
 * the layers (core < models, datasets, metrics < strategies < results < harness). This runs it on the tree, and on a
 * small tree with one include pointing up, which it must refuse, naming the file. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fixtures.h"

static int run(const char *cmd, char *out, size_t cap) {
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "cannot run %s", cmd);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    return pclose(p);
}

Test(layout, includes_point_down_the_layers) {
    char out[8192];
    int status = run("sh scripts/check-layers.sh . 2>&1", out, sizeof out);
    cr_assert_eq(status, 0, "scripts/check-layers.sh found includes pointing up:\n%s", out);
}

Test(layout, an_include_pointing_up_is_refused) {
    char *dir = fixture_tmpdir(), cmd[8192], out[8192];
    cr_assert_not_null(dir);
    const char *folders[] = {"core", "models/dit", "datasets", "metrics", "strategies", "results", "harness"};
    for (size_t i = 0; i < sizeof folders / sizeof folders[0]; i++) {
        snprintf(cmd, sizeof cmd, "mkdir -p '%s/%s'", dir, folders[i]);
        cr_assert_eq(system(cmd), 0);
    }
    /* Allowed: harness over results, models/dit over core. Refused: models/dit including harness/. */
    snprintf(cmd, sizeof cmd,
             "printf '#include \"results/record.h\"\\n' > '%s/harness/a.c' && "
             "printf '#include \"core/error.h\"\\n#include \"models/dit/dit.h\"\\n' > '%s/models/dit/ok.c' && "
             "sh scripts/check-layers.sh '%s' 2>&1", dir, dir, dir);
    cr_assert_eq(run(cmd, out, sizeof out), 0, "a tree with only downward includes was refused:\n%s", out);
    snprintf(cmd, sizeof cmd,
             "printf '#include \"harness/runner.h\"\\n' > '%s/models/dit/bad.h' && sh scripts/check-layers.sh '%s' 2>&1",
             dir, dir);
    int status = run(cmd, out, sizeof out);
    cr_assert_neq(status, 0, "an include from models/ into harness/ passed:\n%s", out);
    cr_assert(strstr(out, "models/dit/bad.h:1:") && strstr(out, "harness/runner.h"), "%s", out);
    cr_assert_null(strstr(out, "ok.c"), "%s", out);
    fixture_rmdir(dir);
    free(dir);
}
