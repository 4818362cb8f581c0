/* The bad-input matrix (README "Reliability"): one test per row, each running the real CLI (fixture_run_cli, or
 * $CACHEBENCH_BIN under `make sanitize`) on one kind of bad input, and checking what the user sees: the exit status,
 * a message that names the file (or flag) and the problem, and that no partial output is left behind (no .h5 and
 * no .tmp in the output folder, an input given to `metrics --store` unchanged).
 *
 * Runs use the tiny config on a 1x16x16 grid (4 tokens) for one or two steps with random weights written here, so a
 * row costs about one process start. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <hdf5.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "metrics/image.h"
#include "models/dit/config.h"
#include "models/dit/dit.h"
#include "models/safetensors.h"
#include "strategies/strategy.h"
#include "tests/fixtures.h"

static char *dir;      /* per test (Criterion runs each test in its own process) */
static char out_dir[600]; /* dir/out: the only place a run may write */

static void setup(void) {
    dir = fixture_tmpdir();
    cr_assert_not_null(dir);
    snprintf(out_dir, sizeof out_dir, "%s/out", dir);
}

static void teardown(void) {
    fixture_rmdir(dir);
    free(dir);
}

TestSuite(bad_inputs, .init = setup, .fini = teardown, .timeout = 120);

static void path_in(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%s/%s", dir, name); }

/* ---- running the CLI ---- */

/* Like fixture_run_cli, with an optional file-size limit (RLIMIT_FSIZE, bytes; 0 = none) set in the child before
 * exec: the way to run out of disk space in a test. */
static int run_cli_limited(char *out, size_t cap, rlim_t fsize, const char *const *args) {
    int pipefd[2];
    cr_assert_eq(pipe(pipefd), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(pipefd[1], 1);
        dup2(pipefd[1], 2);
        close(pipefd[0]);
        if (fsize) {
            struct rlimit lim = {fsize, fsize};
            if (setrlimit(RLIMIT_FSIZE, &lim) != 0) _exit(125);
        }
        int nargs = 0;
        while (args[nargs]) nargs++;
        char **argv = calloc((size_t)nargs + 2, sizeof *argv);
        argv[0] = (char *)fixture_cli_path();
        for (int i = 0; i < nargs; i++) argv[i + 1] = (char *)args[i];
        execv(argv[0], argv);
        _exit(127);
    }
    close(pipefd[1]);
    size_t len = 0;
    ssize_t got;
    char sink[4096];
    while ((got = read(pipefd[0], len + 1 < cap ? out + len : sink, len + 1 < cap ? cap - 1 - len : sizeof sink)) > 0)
        if (len + 1 < cap) len += (size_t)got;
    out[len] = '\0';
    close(pipefd[0]);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    cr_assert_neq(rc, 127, "%s is missing: run the tests through `make test`", fixture_cli_path());
    return rc;
}

static int cli(char *out, size_t cap, const char *const *args) { return run_cli_limited(out, cap, 0, args); }

/* Checks exit status and that every given fragment appears in the output. NULL-terminated fragments. */
static void expect_result(const char *out, int rc, int want_rc, ...) {
    cr_expect_eq(rc, want_rc, "exit status %d, expected %d; output:\n%s", rc, want_rc, out);
    va_list ap;
    va_start(ap, want_rc);
    for (const char *s; (s = va_arg(ap, const char *));)
        cr_expect(strstr(out, s) != NULL, "output lacks \"%s\":\n%s", s, out);
    va_end(ap);
}

/* No .h5 and no .tmp anywhere under folder (a missing folder has none either). */
static void expect_no_outputs(const char *folder) {
    DIR *d = opendir(folder);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        size_t n = strlen(e->d_name);
        int h5 = n > 3 && strcmp(e->d_name + n - 3, ".h5") == 0, tmp = n > 4 && strcmp(e->d_name + n - 4, ".tmp") == 0;
        cr_expect(!h5 && !tmp, "partial output left behind: %s/%s", folder, e->d_name);
        if (e->d_type == DT_DIR) {
            char sub[1200];
            snprintf(sub, sizeof sub, "%s/%s", folder, e->d_name);
            expect_no_outputs(sub);
        }
    }
    closedir(d);
}

/* `run` on the quick geometry with the given weights and extra arguments (NULL-terminated), output into out_dir. */
static int run_tiny(char *out, size_t cap, rlim_t fsize, const char *weights, ...) {
    const char *args[64] = {"run", "--weights", weights, "--prompt", "red circle moving right", "--frames", "1",
                            "--height", "16", "--width", "16", "--steps", "2", "--quiet", "--out", out_dir};
    int n = 16;
    va_list ap;
    va_start(ap, weights);
    for (const char *s; (s = va_arg(ap, const char *)) && n < 63;) args[n++] = s;
    va_end(ap);
    args[n] = NULL;
    return run_cli_limited(out, cap, fsize, args);
}

/* ---- writing weights ---- */

typedef void (*Mutate)(const char *name, float *data, size_t n);

typedef struct {
    StWriteTensor list[256];
    int count;
    StDtype dtype;
    Mutate mutate;
} Collect;

static int collect(void *user, const char *name, int ndim, const int64_t *shape, const float **slot) {
    Collect *c = user;
    cr_assert_lt(c->count, 256);
    StWriteTensor *t = &c->list[c->count++];
    t->name = strdup(name);
    t->dtype = c->dtype;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->data = *slot;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    if (c->mutate) c->mutate(name, (float *)*slot, n); /* the random model's own arena: writable */
    return 0;
}

/* Random weights of cfg as safetensors (dtype as StDtype), each tensor passed through mutate (may be NULL), plus
 * the tiny vocabulary beside them. */
static void write_weights(const char *path, const DitConfig *cfg, StDtype dtype, Mutate mutate) {
    DitModel m;
    Error err = {{0}};
    cr_assert_eq(dit_init_random(&m, cfg, 1, &err), 0, "%s", err.msg);
    Collect *c = calloc(1, sizeof *c);
    c->dtype = dtype;
    c->mutate = mutate;
    dit_for_each_tensor(&m, collect, c);
    cr_assert_eq(st_write(path, c->list, c->count, &err), 0, "%s", err.msg);
    for (int i = 0; i < c->count; i++) free((char *)c->list[i].name);
    free(c);
    dit_free(&m);
    char d[4096], cmd[8400];
    snprintf(d, sizeof d, "%s", path);
    snprintf(cmd, sizeof cmd, "cp models/tiny/vocab.txt '%s/vocab.txt'", dirname(d));
    cr_assert_eq(system(cmd), 0);
}

static const DitConfig *tiny(void) {
    const DitConfig *cfg = dit_config_by_name("tiny");
    cr_assert_not_null(cfg);
    return cfg;
}

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fwrite(data, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

/* A raw safetensors file: length field, header text, data_len bytes of a pattern. */
static void write_raw_safetensors(const char *path, const char *header, size_t data_len) {
    size_t hl = strlen(header), total = 8 + hl + data_len;
    unsigned char *buf = malloc(total);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    for (size_t i = 0; i < data_len; i++) buf[8 + hl + i] = (unsigned char)(i * 7 + 1);
    write_bytes(path, buf, total);
    free(buf);
}

/* ---- rows: weights ---- */

Test(bad_inputs, truncated_safetensors) {
    char w[600], out[8192];
    path_in(w, sizeof w, "w.safetensors");
    write_weights(w, tiny(), ST_F32, NULL);
    cr_assert_eq(truncate(w, file_size(w) / 2), 0);
    int rc = run_tiny(out, sizeof out, 0, w, NULL);
    expect_result(out, rc, 1, w, "end past the data section", NULL);
    expect_no_outputs(out_dir);
}

Test(bad_inputs, truncated_safetensors_header) {
    char w[600], out[8192];
    path_in(w, sizeof w, "w.safetensors");
    write_weights(w, tiny(), ST_F32, NULL);
    cr_assert_eq(truncate(w, 100), 0);
    int rc = run_tiny(out, sizeof out, 0, w, NULL);
    expect_result(out, rc, 1, w, "runs past the end of the file", NULL);
    expect_no_outputs(out_dir);
}

Test(bad_inputs, lying_safetensors_offsets_beyond_data) {
    char w[600], out[8192];
    path_in(w, sizeof w, "w.safetensors");
    write_raw_safetensors(
        w, "{\"patch_embedding.bias\":{\"dtype\":\"F32\",\"shape\":[1024],\"data_offsets\":[0,4096]}}", 64);
    int rc = run_tiny(out, sizeof out, 0, w, NULL);
    expect_result(out, rc, 1, w, "tensor 'patch_embedding.bias'", "end past the data section (64 bytes)", NULL);
    expect_no_outputs(out_dir);
}

Test(bad_inputs, lying_safetensors_dtype_times_shape) {
    char w[600], out[8192];
    path_in(w, sizeof w, "w.safetensors");
    write_raw_safetensors(w, "{\"patch_embedding.bias\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,8]}}",
                          8);
    int rc = run_tiny(out, sizeof out, 0, w, NULL);
    expect_result(out, rc, 1, w, "tensor 'patch_embedding.bias'", "do not match dtype F32 x shape [2, 3] = 24 bytes",
                  NULL);
    expect_no_outputs(out_dir);
}

Test(bad_inputs, wrong_shapes_for_the_config) {
    char w[600], out[8192];
    path_in(w, sizeof w, "w.safetensors");
    write_weights(w, fixture_small_config(), ST_F32, NULL); /* dim 32 where tiny has 128 */
    int rc = run_tiny(out, sizeof out, 0, w, NULL);
    expect_result(out, rc, 1, w, "tensor 'token_embedding.weight' has shape [18, 8], config tiny needs [18, 64]",
                  NULL);
    expect_no_outputs(out_dir);
}

Test(bad_inputs, wrong_dtype_i32) {
    char w[600], out[8192];
    path_in(w, sizeof w, "w.safetensors");
    write_weights(w, tiny(), ST_F32, NULL);
    /* Relabel the first tensor of the header I32: same element size, so the file stays consistent. */
    FILE *f = fopen(w, "r+b");
    cr_assert_not_null(f);
    char head[4096] = {0};
    cr_assert_gt(fread(head, 1, sizeof head - 1, f), 100);
    char *dtype = strstr(head + 8, "\"F32\"");
    cr_assert_not_null(dtype);
    fseek(f, dtype - head + 1, SEEK_SET);
    fputc('I', f);
    cr_assert_eq(fclose(f), 0);
    int rc = run_tiny(out, sizeof out, 0, w, NULL);
    expect_result(out, rc, 1, w, "has dtype I32; only F32, F16 and BF16 are supported", NULL);
    expect_no_outputs(out_dir);
}

static void put_nan(const char *name, float *data, size_t n) {
    if (strcmp(name, "blocks.1.ffn.0.weight") == 0 && n > 5) data[5] = NAN;
}

Test(bad_inputs, nan_weight_rejected_at_load) {
    char w[600], out[8192];
    path_in(w, sizeof w, "w.safetensors");
    write_weights(w, tiny(), ST_F32, put_nan);
    int rc = run_tiny(out, sizeof out, 0, w, NULL);
    expect_result(out, rc, 1, w, "tensor 'blocks.1.ffn.0.weight' holds a non-finite value (nan at index 5)", NULL);
    expect_no_outputs(out_dir);
}

static void put_overflow(const char *name, float *data, size_t n) {
    if (strcmp(name, "head.head.bias") == 0 && n > 2) data[2] = 1e6f; /* beyond F16's 65504: stored as inf */
}

Test(bad_inputs, inf_weight_rejected_at_load) {
    char w[600], out[8192];
    path_in(w, sizeof w, "w.safetensors");
    write_weights(w, tiny(), ST_F16, put_overflow);
    int rc = run_tiny(out, sizeof out, 0, w, NULL);
    expect_result(out, rc, 1, w, "tensor 'head.head.bias' holds a non-finite value (inf at index 2)", NULL);
    expect_no_outputs(out_dir);
}

Test(bad_inputs, missing_weights_file) {
    char w[600], out[8192];
    path_in(w, sizeof w, "nowhere.safetensors");
    int rc = run_tiny(out, sizeof out, 0, w, NULL);
    expect_result(out, rc, 1, w, "cannot open: No such file or directory", NULL);
    expect_no_outputs(out_dir);
}

/* ---- rows: prompt and run time ---- */

Test(bad_inputs, unknown_prompt_word_lists_the_vocabulary) {
    char out[8192];
    const char *args[] = {"run", "--weights", "random:1", "--prompt", "a purple circle", "--frames", "1", "--height",
                          "16", "--width", "16", "--steps", "1", "--quiet", "--out", out_dir, NULL};
    int rc = cli(out, sizeof out, args);
    expect_result(out, rc, 1, "unknown word 'purple'", "the vocabulary is: a moving on background red", NULL);
    expect_no_outputs(out_dir);
}

Test(bad_inputs, prompt_with_punctuation_or_empty) {
    char out[8192];
    const char *args[] = {"run", "--weights", "random:1", "--prompt", "a red circle, moving right.", "--frames", "1",
                          "--height", "16", "--width", "16", "--steps", "1", "--quiet", "--out", out_dir, NULL};
    expect_result(out, cli(out, sizeof out, args), 1, "unknown word 'circle,'",
                  "the vocabulary has no punctuation: write bare words separated by spaces", NULL);
    args[4] = "  ";
    expect_result(out, cli(out, sizeof out, args), 2, "--prompt is empty", NULL);
    expect_no_outputs(out_dir);
}

/* `cachebench strategies` documents every registered strategy and every parameter it accepts. */
Test(bad_inputs, strategies_lists_every_strategy_and_parameter) {
    static char out[65536];
    const char *args[] = {"strategies", NULL};
    expect_result(out, cli(out, sizeof out, args), 0, "official", NULL);
    for (int i = 0; i < strategy_count(); i++) {
        const StrategyInfo *info = strategy_at(i);
        char line[128];
        snprintf(line, sizeof line, "\n%s\n", info->name);
        cr_expect(strstr(out, line) || strncmp(out, line + 1, strlen(line + 1)) == 0, "%s missing:\n%s", info->name,
                  out);
        cr_expect_not_null(info->params_help, "%s: no params_help", info->name);
        for (const char *const *k = info->param_names; *k; k++) {
            snprintf(line, sizeof line, "    %s ", *k);
            cr_expect(strstr(out, line), "%s: parameter %s undocumented", info->name, *k);
        }
    }
}

Test(bad_inputs, misspelt_command_suggests_the_nearest) {
    char out[8192];
    const char *args[] = {"swep", "--help", NULL};
    expect_result(out, cli(out, sizeof out, args), 2, "unknown command 'swep'; did you mean 'sweep'?", NULL);
    const char *far[] = {"frobnicate", NULL};
    int rc = cli(out, sizeof out, far);
    expect_result(out, rc, 2, "unknown command 'frobnicate'", NULL);
    cr_expect(strstr(out, "did you mean") == NULL, "%s", out);
}

/* calibrate keeps an existing default coefficient file (a tracked file beside the shipped weights) unless --force,
 * takes seeds in the sweep's grammar, and its samples file says which branch each sample is from. */
Test(bad_inputs, calibrate_keeps_the_default_file_and_takes_seed_ranges) {
    char out[8192], prompts[700], coeffs[700], samples[700];
    path_in(prompts, sizeof prompts, "p.txt");
    path_in(coeffs, sizeof coeffs, "c.txt");
    path_in(samples, sizeof samples, "s.tsv");
    FILE *f = fopen(prompts, "w");
    cr_assert_not_null(f);
    fputs("p0\ta red circle moving right on a black background\n", f);
    fclose(f);
    const char *keep[] = {"calibrate", "--prompts", prompts, NULL};
    expect_result(out, cli(out, sizeof out, keep), 2, "teacache_coeffs_e.txt exists: pass --force to replace it",
                  NULL);
    const char *fit[] = {"calibrate", "--weights", "random:1", "--prompts", prompts, "--steps", "4", "--seeds",
                         "0..2", "--out", coeffs, "--samples", samples, NULL};
    expect_result(out, cli(out, sizeof out, fit), 0, coeffs, NULL);
    f = fopen(samples, "r");
    cr_assert_not_null(f);
    char line[256];
    int rows = 0, cond = 0, uncond = 0;
    cr_assert_not_null(fgets(line, sizeof line, f));
    cr_expect_str_eq(line, "step\tbranch\tinput_rel_l1\toutput_rel_l1\n");
    while (fgets(line, sizeof line, f)) {
        rows++;
        cond += strstr(line, "\tcond\t") != NULL;
        uncond += strstr(line, "\tuncond\t") != NULL;
    }
    fclose(f);
    /* 3 seeds x 2 branches x (4 steps - the first call of each branch) samples. */
    cr_expect_eq(rows, 3 * 2 * 3, "%d samples", rows);
    cr_expect_eq(cond, uncond, "%d cond, %d uncond", cond, uncond);
    const char *bad[] = {"calibrate", "--weights", "random:1", "--prompts", prompts, "--seeds", "2..1", "--out",
                         coeffs, NULL};
    expect_result(out, cli(out, sizeof out, bad), 2, "invalid value for --seeds", NULL);
}

/* A second run of the same settings into the same folder would replace a record someone may quote: refused before
 * sampling, the first file unchanged; --force overwrites. */
Test(bad_inputs, run_refuses_to_overwrite_a_record) {
    char out[8192], rec[900];
    const char *args[] = {"run", "--weights", "random:1", "--prompt", "red", "--frames", "1", "--height", "16",
                          "--width", "16", "--steps", "1", "--quiet", "--out", out_dir, NULL, NULL};
    int rc = cli(out, sizeof out, args);
    expect_result(out, rc, 0, "complete", NULL);
    snprintf(rec, sizeof rec, "%s/tiny__none__p0__s0.h5", out_dir);
    struct stat before, after;
    cr_assert_eq(stat(rec, &before), 0);
    rc = cli(out, sizeof out, args);
    expect_result(out, rc, 1, rec, "exists; pass --force to overwrite it", NULL);
    cr_assert_eq(stat(rec, &after), 0);
    cr_expect(before.st_ino == after.st_ino && before.st_mtime == after.st_mtime, "the record was replaced");
    args[16] = "--force";
    rc = cli(out, sizeof out, args);
    expect_result(out, rc, 0, "complete", NULL);
}

/* Finite weights whose product overflows: every head output is a sum of 128 terms of size ~3e38. */
static void put_huge(const char *name, float *data, size_t n) {
    if (strcmp(name, "head.head.weight") == 0)
        for (size_t i = 0; i < n; i++) data[i] = i % 3 ? 3e38f : -3e38f;
}

Test(bad_inputs, output_turns_non_finite_at_run_time) {
    char w[600], out[8192], rec[900];
    path_in(w, sizeof w, "w.safetensors");
    write_weights(w, tiny(), ST_F32, put_huge);
    int rc = run_tiny(out, sizeof out, 0, w, NULL);
    /* Recorded, not an error: a strategy that blows up is a result. */
    expect_result(out, rc, 0, "FAILED (non-finite output at step 0)", NULL);
    snprintf(rec, sizeof rec, "%s/tiny__none__p0__s0.h5", out_dir);
    cr_assert_gt(file_size(rec), 0, "no record written:\n%s", out);
    const char *info[] = {"info", rec, NULL};
    rc = cli(out, sizeof out, info);
    expect_result(out, rc, 0, "status     failed at step 0: model output has", "non-finite values at step 0",
                  "cond     C-", NULL);
    char tmp[1000];
    snprintf(tmp, sizeof tmp, "%s.tmp", rec);
    cr_expect_eq(access(tmp, F_OK), -1, "%s left behind", tmp);
}

/* ---- rows: run records given to info and metrics ---- */

/* A real record from a 1-step run: out_dir/tiny__none__<id>__s0.h5, with the given frames and width. */
static void make_record(char *path, size_t cap, const char *id, const char *frames, const char *width) {
    char out[8192];
    const char *args[] = {"run", "--weights", "random:1", "--prompt", "red", "--frames", frames, "--height", "16",
                          "--width", width, "--steps", "1", "--quiet", "--prompt-id", id, "--out", out_dir, NULL};
    int rc = cli(out, sizeof out, args);
    cr_assert_eq(rc, 0, "%s", out);
    snprintf(path, cap, "%s/tiny__none__%s__s0.h5", out_dir, id);
}

/* Reads a whole file (for "unchanged" checks); *n gets its size. */
static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    rewind(f);
    char *buf = malloc(*n + 1);
    cr_assert_eq(fread(buf, 1, *n, f), *n);
    fclose(f);
    return buf;
}

/* info and metrics on one bad file: exit 1, the file named with the problem, and --store leaves the good record B
 * byte-identical with no .tmp beside it. */
static void expect_bad_record(const char *bad, const char *problem) {
    char good[900], out[8192];
    make_record(good, sizeof good, "good", "1", "16");
    size_t n0, n1;
    char *before = slurp(good, &n0);
    const char *info[] = {"info", bad, NULL};
    int rc = cli(out, sizeof out, info);
    expect_result(out, rc, 1, bad, problem, NULL);
    const char *metrics[] = {"metrics", bad, good, NULL};
    rc = cli(out, sizeof out, metrics);
    expect_result(out, rc, 1, bad, problem, NULL);
    const char *store[] = {"metrics", "--store", good, bad, NULL};
    rc = cli(out, sizeof out, store);
    expect_result(out, rc, 1, bad, problem, NULL);
    char *after = slurp(good, &n1);
    cr_expect(n0 == n1 && memcmp(before, after, n0) == 0, "%s changed", good);
    free(before);
    free(after);
    char tmp[1000];
    snprintf(tmp, sizeof tmp, "%s.tmp", bad);
    cr_expect_eq(access(tmp, F_OK), -1, "%s left behind", tmp);
}

Test(bad_inputs, not_hdf5_record) {
    char bad[600];
    path_in(bad, sizeof bad, "notes.h5");
    write_bytes(bad, "this is a text file, not HDF5\n", 30);
    expect_bad_record(bad, "not an HDF5 file");
}

Test(bad_inputs, truncated_record) {
    char src[900], bad[600];
    make_record(src, sizeof src, "src", "1", "16");
    path_in(bad, sizeof bad, "truncated.h5");
    size_t n;
    char *bytes = slurp(src, &n);
    write_bytes(bad, bytes, n / 2);
    free(bytes);
    expect_bad_record(bad, "corrupt or truncated HDF5 file (HDF5: truncated file");
}

Test(bad_inputs, foreign_hdf5_file) {
    char bad[600];
    path_in(bad, sizeof bad, "foreign.h5");
    hid_t f = H5Fcreate(bad, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    hsize_t dims[1] = {4};
    int values[4] = {1, 2, 3, 4};
    hid_t space = H5Screate_simple(1, dims, NULL);
    hid_t d = H5Dcreate2(f, "measurements", H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values);
    H5Dclose(d);
    H5Sclose(space);
    cr_assert_geq(H5Fclose(f), 0);
    expect_bad_record(bad, "missing attribute /strategy");
}

/* An input that crashes HDF5 1.10 itself (found by fuzz_record; h5dump crashes on it too): the reader survives it
 * by reading in a child process first (results/record.c, read_in_child). Not under ASan: see test_regressions.c. */
Test(bad_inputs, record_that_crashes_hdf5) {
#if defined(__SANITIZE_ADDRESS__)
    cr_skip_test("ASan reports HDF5's own memcpy of (size_t)-1 bytes inside the reading child");
#endif
    char bad[600], cmd[1400];
    path_in(bad, sizeof bad, "crashes_hdf5.h5");
    snprintf(cmd, sizeof cmd, "cp tests/regressions/record/hdf5_crash_global_heap_memcpy.h5 '%s'", bad);
    cr_assert_eq(system(cmd), 0);
    expect_bad_record(bad, "corrupt HDF5 file: the HDF5 library crashed reading it (Segmentation fault)");
}

Test(bad_inputs, metrics_frame_counts_differ) {
    char a[900], b[900], out[8192];
    make_record(a, sizeof a, "one", "1", "16");
    make_record(b, sizeof b, "two", "2", "16");
    size_t n0, n1;
    char *before = slurp(b, &n0);
    const char *args[] = {"metrics", a, b, NULL};
    int rc = cli(out, sizeof out, args);
    expect_result(out, rc, 1, a, "(1 frames of 16x16)", b, "(2 frames of 16x16)", "sizes differ", NULL);
    const char *store[] = {"metrics", "--store", a, b, NULL};
    rc = cli(out, sizeof out, store);
    expect_result(out, rc, 1, "sizes differ", NULL);
    char *after = slurp(b, &n1);
    cr_expect(n0 == n1 && memcmp(before, after, n0) == 0, "%s changed", b);
    free(before);
    free(after);
}

/* A "baseline" of another trajectory (here another prompt) is refused by --store (nothing written) and warned
 * about by plain metrics. */
Test(bad_inputs, metrics_store_refuses_a_baseline_of_another_trajectory) {
    char a[900], b[900], out[8192];
    make_record(a, sizeof a, "a", "1", "16");
    const char *other[] = {"run", "--weights", "random:1", "--prompt", "red moving", "--frames", "1", "--height",
                           "16", "--width", "16", "--steps", "1", "--quiet", "--prompt-id", "b", "--out", out_dir,
                           NULL};
    cr_assert_eq(cli(out, sizeof out, other), 0, "%s", out);
    snprintf(b, sizeof b, "%s/tiny__none__b__s0.h5", out_dir);
    size_t n0, n1;
    char *before = slurp(b, &n0);
    const char *store[] = {"metrics", "--store", a, b, NULL};
    expect_result(out, cli(out, sizeof out, store), 1, "is not a baseline of", "prompt \"red\" vs \"red moving\"",
                  "nothing stored", NULL);
    char *after = slurp(b, &n1);
    cr_expect(n0 == n1 && memcmp(before, after, n0) == 0, "%s changed", b);
    free(before);
    free(after);
    const char *plain[] = {"metrics", a, b, NULL};
    expect_result(out, cli(out, sizeof out, plain), 0, "warning:", "differ: prompt", "psnr_db", NULL);
}

Test(bad_inputs, metrics_frame_sizes_differ) {
    char a[900], b[900], out[8192];
    make_record(a, sizeof a, "narrow", "1", "16");
    make_record(b, sizeof b, "wide", "1", "24");
    const char *args[] = {"metrics", a, b, NULL};
    int rc = cli(out, sizeof out, args);
    expect_result(out, rc, 1, a, "(1 frames of 16x16)", b, "(1 frames of 24x16)", "sizes differ", NULL);
}

Test(bad_inputs, png_not_a_png) {
    char a[600], out[8192];
    path_in(a, sizeof a, "frame.png");
    write_bytes(a, "GIF89a not really", 17);
    const char *args[] = {"metrics", a, a, NULL};
    int rc = cli(out, sizeof out, args);
    expect_result(out, rc, 1, a, "not a PNG file", NULL);
}

Test(bad_inputs, png_truncated) {
    char a[600], out[8192];
    path_in(a, sizeof a, "frame.png");
    uint8_t rgb[16 * 16 * 3];
    for (size_t i = 0; i < sizeof rgb; i++) rgb[i] = (uint8_t)(i * 31);
    Error err = {{0}};
    cr_assert_eq(image_write_png(a, rgb, 16, 16, &err), 0, "%s", err.msg);
    cr_assert_eq(truncate(a, file_size(a) - 20), 0);
    const char *args[] = {"metrics", a, a, NULL};
    int rc = cli(out, sizeof out, args);
    expect_result(out, rc, 1, a, "corrupt or truncated PNG", NULL);
}

/* ---- rows: where the output goes ---- */

Test(bad_inputs, output_folder_under_a_regular_file) {
    char file[600], out[8192], target[700];
    path_in(file, sizeof file, "file.txt");
    write_bytes(file, "keep", 4);
    snprintf(target, sizeof target, "%s/sub", file);
    const char *args[] = {"run", "--weights", "random:1", "--prompt", "red", "--frames", "1", "--height", "16",
                          "--width", "16", "--steps", "1", "--quiet", "--out", target, NULL};
    int rc = cli(out, sizeof out, args);
    expect_result(out, rc, 1, target, "cannot create output folder: Not a directory", NULL);
    cr_expect_eq(file_size(file), 4, "%s was touched", file);
    expect_no_outputs(dir);
}

Test(bad_inputs, output_folder_in_proc) {
    char out[8192];
    const char *args[] = {"run", "--weights", "random:1", "--prompt", "red", "--frames", "1", "--height", "16",
                          "--width", "16", "--steps", "1", "--quiet", "--out", "/proc/cachebench-out", NULL};
    int rc = cli(out, sizeof out, args);
    expect_result(out, rc, 1, "/proc/cachebench-out", "cannot create output folder", NULL);
}

/* The disk fills while the record is written: RLIMIT_FSIZE of 16 KiB, below the ~30 KB a record of this run needs.
 * The run's message says the write failed and why, and no partial record is left. */
Test(bad_inputs, disk_full_while_writing_the_record) {
    char out[8192];
    int rc = run_tiny(out, sizeof out, 16384, "random:1", NULL);
    expect_result(out, rc, 1, "cannot write", "tiny__none__p0__s0.h5.tmp", "File too large", NULL);
    expect_no_outputs(out_dir);
}

Test(bad_inputs, disk_full_while_storing_metrics) {
    char a[900], b[900], out[8192];
    make_record(a, sizeof a, "a", "1", "16");
    make_record(b, sizeof b, "b", "1", "16");
    size_t n0, n1;
    char *before = slurp(b, &n0);
    const char *args[] = {"metrics", "--store", a, b, NULL};
    int rc = run_cli_limited(out, sizeof out, 8192, args);
    expect_result(out, rc, 1, b, "File too large", NULL);
    char *after = slurp(b, &n1);
    cr_expect(n0 == n1 && memcmp(before, after, n0) == 0, "%s changed", b);
    free(before);
    free(after);
    char tmp[1000];
    snprintf(tmp, sizeof tmp, "%s.tmp", b);
    cr_expect_eq(access(tmp, F_OK), -1, "%s left behind", tmp);
}

/* ---- rows: command-line values (exit 2, a hint, nothing loaded or written) ---- */

static void expect_usage_error(const char *flag, const char *value, const char *message) {
    char out[8192];
    const char *args[] = {"run", "--weights", "random:1", "--prompt", "red", "--frames", "1", "--height", "16",
                          "--width", "16", "--quiet", "--out", out_dir, flag, value, NULL};
    int rc = cli(out, sizeof out, args);
    expect_result(out, rc, 2, message, "Try 'cachebench run --help'.", NULL);
    expect_no_outputs(out_dir);
}

Test(bad_inputs, negative_steps) {
    expect_usage_error("--steps", "-3", "invalid value '-3' for --steps: must be in [1, 10000]");
}

Test(bad_inputs, non_numeric_seed) {
    expect_usage_error("--seed", "abc", "invalid value 'abc' for --seed: not an integer");
}

Test(bad_inputs, unknown_strategy) {
    expect_usage_error("--strategy", "fastcache", "unknown strategy 'fastcache' (valid: none, ");
}

Test(bad_inputs, unknown_strategy_key) {
    expect_usage_error("--strategy", "easycache:treshold=0.1",
                       "easycache: unknown parameter \"treshold\" (valid: thresh, warmup, defaults)");
}

Test(bad_inputs, strategy_value_out_of_range) {
    expect_usage_error("--strategy", "static:interval=0", "static: interval must be >= 1, got 0");
}

Test(bad_inputs, bad_backend) {
    expect_usage_error("--backend", "tpu", "invalid value 'tpu' for --backend: use cpu or cuda");
}

Test(bad_inputs, missing_prompt) {
    char out[8192];
    const char *args[] = {"run", "--weights", "random:1", "--steps", "1", "--out", out_dir, NULL};
    int rc = cli(out, sizeof out, args);
    expect_result(out, rc, 2, "--prompt is required", "Try 'cachebench run --help'.", NULL);
    expect_no_outputs(out_dir);
}
