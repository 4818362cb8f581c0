/* Strategy plug-ins: the installed header include/cachebench/strategy.h against the tree's types (every size and
 * field offset), `cachebench new-strategy` against examples/mycache.c, the example built as a plug-in the way a user
 * builds it and swept, and plug-ins that must be refused (missing entry point, other interface version, taken name,
 * missing file): a clear error and nothing written. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "strategies/strategy.h"
#include "tests/fixtures.h"

/* Every type of the interface, every field: X(type, field). */
#define PLUGIN_FIELDS(X)                                                                                               \
    X(Error, msg)                                                                                                      \
    X(VecOps, ctx) X(VecOps, alloc) X(VecOps, release) X(VecOps, mean_abs) X(VecOps, mean_abs_diff) X(VecOps, sub)   \
    X(VecOps, add) X(VecOps, copy) X(VecOps, guide) X(VecOps, axpby)                                                   \
    X(AttentionPlan, num_heads) X(AttentionPlan, pattern) X(AttentionPlan, band_tokens)                                \
    X(AttentionPlan, flops_dense) X(AttentionPlan, flops_done) X(AttentionPlan, sparsity) X(AttentionPlan, block)      \
    X(AttentionPlan, profile_rows) X(AttentionPlan, profile_seed) X(AttentionPlan, frames)                             \
    X(AttentionPlan, tokens_per_frame)                                                                                 \
    X(AttentionPlan, sink_tokens) X(AttentionPlan, density)                                                            \
    X(ModulePlan, mode) X(ModulePlan, out)                                                                             \
    X(StepInfo, step) X(StepInfo, num_steps) X(StepInfo, branch) X(StepInfo, guidance_on) X(StepInfo, timestep)       \
    X(StepInfo, sigma)                                                                                                 \
    X(BranchTrace, computed) X(BranchTrace, signal) X(BranchTrace, accumulator) X(BranchTrace, threshold)              \
    X(BranchTrace, k)                                                                                                  \
    X(BlockInputs, e) X(BlockInputs, e0) X(BlockInputs, dim) X(BlockInputs, tokens) X(BlockInputs, n_tokens)          \
    X(StrategyEnv, num_steps) X(StrategyEnv, num_layers) X(StrategyEnv, num_heads) X(StrategyEnv, dim)                \
    X(StrategyEnv, model_numel) X(StrategyEnv, tokens_numel) X(StrategyEnv, ops) X(StrategyEnv, model_name)           \
    X(StrategyEnv, weights_path)                                                                                       \
    X(Strategy, info) X(Strategy, state) X(Strategy, ops) X(Strategy, spec) X(Strategy, failure) X(Strategy, model_begin)                  \
    X(Strategy, model_reuse) X(Strategy, model_end) X(Strategy, blocks_begin) X(Strategy, blocks_reuse)               \
    X(Strategy, blocks_end) X(Strategy, attention_plan) X(Strategy, module_plan) X(Strategy, layer_end)               \
    X(Strategy, bytes_held) X(Strategy, clone) X(Strategy, destroy)                                                    \
    X(StrategyParams, name) X(StrategyParams, count) X(StrategyParams, keys) X(StrategyParams, values)                \
    X(StrategyInfo, name) X(StrategyInfo, summary) X(StrategyInfo, params_help) X(StrategyInfo, param_names)         \
    X(StrategyInfo, create)

#define STR(x) #x
#define LINE_TEXT(type, field)                                                                                         \
    "    printf(\"%s.%s %zu %zu %zu\\n\", \"" STR(type) "\", \"" STR(field) "\", sizeof(" STR(type) "), offsetof(" STR(  \
        type) ", " STR(field) "), sizeof(((" STR(type) " *)0)->" STR(field) "));\n"
#define LINE_HERE(type, field)                                                                                         \
    n += snprintf(here + n, sizeof here - n, "%s.%s %zu %zu %zu\n", #type, #field, sizeof(type), offsetof(type, field), \
                  sizeof(((type *)0)->field));

static int sh(const char *cmd) {
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

Test(plugin, installed_header_has_the_layout_of_the_tree_types) {
    char *dir = fixture_tmpdir();
    char src[512], exe[512], out[512], cmd[4096];
    snprintf(src, sizeof src, "%s/layout.c", dir);
    snprintf(exe, sizeof exe, "%s/layout", dir);
    snprintf(out, sizeof out, "%s/layout.txt", dir);
    FILE *f = fopen(src, "w");
    cr_assert_not_null(f);
    fputs("#include <cachebench/strategy.h>\n#include <stddef.h>\n#include <stdio.h>\nint main(void) {\n"
          "    printf(\"ABI %d\\n\", CACHEBENCH_STRATEGY_ABI);\n" PLUGIN_FIELDS(LINE_TEXT) "    return 0;\n}\n",
          f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "cc -std=gnu11 -Wall -Werror -Iinclude '%s' -o '%s' && '%s' > '%s'", src, exe, exe, out);
    cr_assert_eq(sh(cmd), 0, "the installed header does not compile on its own: %s", cmd);
    static char here[16384];
    int n = snprintf(here, sizeof here, "ABI %d\n", CACHEBENCH_STRATEGY_ABI);
    PLUGIN_FIELDS(LINE_HERE)
    char *there = fixture_read_file(out);
    cr_assert_not_null(there);
    cr_expect_str_eq(there, here, "include/cachebench/strategy.h and the tree's types differ: update the header "
                                  "(and CACHEBENCH_STRATEGY_ABI in both)");
    free(there);
    fixture_rmdir(dir);
    free(dir);
}

Test(plugin, new_strategy_writes_the_example_and_refuses_to_overwrite) {
    char *dir = fixture_tmpdir();
    char path[512], log[4096];
    snprintf(path, sizeof path, "%s/mycache.c", dir);
    const char *args[] = {"new-strategy", "mycache", "--out", path, NULL};
    cr_assert_eq(fixture_run_cli(log, sizeof log, args), 0, "%s", log);
    char *made = fixture_read_file(path), *example = fixture_read_file("examples/mycache.c");
    cr_assert(made && example);
    cr_expect_str_eq(made, example, "examples/mycache.c is not what `cachebench new-strategy mycache` writes: "
                                    "regenerate it");
    cr_expect_eq(fixture_run_cli(log, sizeof log, args), 1, "%s", log);
    cr_expect(strstr(log, "exists already (not overwritten)") != NULL, "%s", log);
    char *again = fixture_read_file(path);
    cr_expect_str_eq(again, made, "the file was touched");
    const char *bad[] = {"new-strategy", "My-Cache", NULL};
    cr_expect_eq(fixture_run_cli(log, sizeof log, bad), 2, "%s", log);
    const char *builtin[] = {"new-strategy", "easycache", "--out", path, NULL};
    cr_expect_eq(fixture_run_cli(log, sizeof log, builtin), 2, "%s", log);
    cr_expect(strstr(log, "built-in strategy") != NULL, "%s", log);
    free(made), free(example), free(again);
    fixture_rmdir(dir);
    free(dir);
}

Test(plugin, example_builds_outside_the_tree_and_sweeps, .timeout = 120) {
    char *dir = fixture_tmpdir();
    char so[512], cmd[2048], out[512], path[600], log[65536];
    snprintf(so, sizeof so, "%s/mycache.so", dir);
    /* As a user builds it: only the installed header on the include path. */
    snprintf(cmd, sizeof cmd, "cc -O2 -std=gnu11 -Wall -Wextra -Werror -shared -fPIC -Iinclude examples/mycache.c -o '%s'",
             so);
    cr_assert_eq(sh(cmd), 0, "%s", cmd);
    snprintf(out, sizeof out, "%s/sweep", dir);
    const char *sweep[] = {"sweep", "--plugin", so, "--prompts", "tests/golden/prompts.txt", "--weights",
                           "models/tiny/tiny.safetensors", "--steps", "6", "--out", out, "--quiet",
                           "--strategy", "mycache:thresh=0.05|1,warmup=1", NULL};
    cr_assert_eq(fixture_run_cli(log, sizeof log, sweep), 0, "%s", log);
    snprintf(path, sizeof path, "%s/summary.tsv", out);
    char *tsv = fixture_read_file(path);
    cr_assert_not_null(tsv);
    cr_expect(strstr(tsv, "\tmycache\tmycache:thresh=0.05,warmup=1\t") != NULL, "%s", tsv);
    cr_expect(strstr(tsv, "\tmycache\tmycache:thresh=1,warmup=1\t") != NULL, "%s", tsv);
    cr_expect(strstr(tsv, "failed") == NULL, "%s", tsv);
    /* thresh=1 reuses: it has a FLOP speed-up above 1. */
    const char *line = strstr(tsv, "mycache:thresh=1,warmup=1");
    cr_assert_not_null(line);
    int computed = 0, total = 0;
    cr_assert_eq(sscanf(line, "%*s %*s %*s %*s %d %d", &computed, &total), 2);
    cr_expect_lt(computed, total, "thresh=1 must reuse some calls: %.200s", line);
    free(tsv);
    /* A resumed sweep with the plug-in finds everything finished; the gate reads the plug-in's runs. */
    cr_assert_eq(fixture_run_cli(log, sizeof log, sweep), 0, "%s", log);
    snprintf(path, sizeof path, "%s/base.tsv", dir);
    const char *write[] = {"check", out, "--plugin", so, "--write-baseline", path, NULL};
    cr_assert_eq(fixture_run_cli(log, sizeof log, write), 0, "%s", log);
    const char *gate[] = {"check", out, "--plugin", so, "--baseline", path, "--decisions", "exact", NULL};
    cr_expect_eq(fixture_run_cli(log, sizeof log, gate), 0, "%s", log);
    /* run with the plug-in */
    char runs[512];
    snprintf(runs, sizeof runs, "%s/runs", dir);
    const char *run[] = {"run", "--plugin", so, "--prompt", "a red circle", "--weights", "random:1", "--steps", "3",
                         "--strategy", "mycache:thresh=0.5", "--out", runs, "--quiet", NULL};
    cr_expect_eq(fixture_run_cli(log, sizeof log, run), 0, "%s", log);
    fixture_rmdir(dir);
    free(dir);
}

Test(plugin, bad_plugins_are_refused_with_nothing_written, .timeout = 60) {
    char *dir = fixture_tmpdir();
    char src[512], so[512], cmd[2048], out[512], log[8192];
    snprintf(out, sizeof out, "%s/out", dir);
    static const struct {
        const char *name, *code, *message;
    } cases[] = {
        {"noentry", "int foo(void) { return 1; }\n", "entry point cachebench_strategy_abi missing"},
        {"v99",
         "int cachebench_strategy_abi(void) { return 99; }\nconst void *cachebench_strategy_info(void) { return 0; }\n",
         "built against strategy interface version 99, this cachebench has version 2"},
        {"taken",
         "#include <cachebench/strategy.h>\nstatic const char *const k[] = {0};\n"
         "static int c(Strategy *s, const StrategyParams *p, const StrategyEnv *e, Error *err) {\n"
         "    (void)s, (void)p, (void)e, (void)err; return 0; }\n"
         "static const StrategyInfo info = {.name = \"easycache\", .summary = \"x\", .param_names = k, .create = c};\n"
         "CACHEBENCH_STRATEGY_PLUGIN(info)\n",
         "a strategy named \"easycache\" exists already"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(src, sizeof src, "%s/%s.c", dir, cases[i].name);
        snprintf(so, sizeof so, "%s/%s.so", dir, cases[i].name);
        FILE *f = fopen(src, "w");
        cr_assert_not_null(f);
        fputs(cases[i].code, f);
        fclose(f);
        snprintf(cmd, sizeof cmd, "cc -shared -fPIC -Iinclude '%s' -o '%s'", src, so);
        cr_assert_eq(sh(cmd), 0, "%s", cmd);
        const char *sweep[] = {"sweep", "--plugin", so, "--prompts", "tests/golden/prompts.txt", "--weights",
                               "random:1", "--steps", "2", "--out", out, NULL};
        cr_expect_eq(fixture_run_cli(log, sizeof log, sweep), 1, "%s: %s", cases[i].name, log);
        cr_expect(strstr(log, cases[i].message) != NULL, "%s: %s", cases[i].name, log);
        cr_expect(strstr(log, so) != NULL, "the message names the file: %s", log);
        cr_expect_neq(access(out, F_OK), 0, "%s: the sweep folder was created", cases[i].name);
    }
    snprintf(so, sizeof so, "%s/nosuch.so", dir);
    const char *run[] = {"run", "--plugin", so, "--prompt", "x", "--out", out, NULL};
    cr_expect_eq(fixture_run_cli(log, sizeof log, run), 1, "%s", log);
    cr_expect(strstr(log, "cannot load") != NULL, "%s", log);
    cr_expect_neq(access(out, F_OK), 0);
    fixture_rmdir(dir);
    free(dir);
}
