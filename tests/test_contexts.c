/* Prompt contexts (harness/contexts.h, README "Prompt contexts"): the reader's padding and dtypes, that the cond and
 * uncond branches really use the prompt's and the negative prompt's contexts (a small Wan-shaped model: no
 * vocabulary), the checks `run` and `sweep` make before any work (the real CLI with wan2.1-t2v-1.3b: every failure
 * happens before the weights are read, so these cost a process start), the refusal without contexts, and the
 * record attributes. */
#include <criterion/criterion.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/sha256.h"
#include "datasets/prompts.h"
#include "harness/contexts.h"
#include "harness/experiment.h"
#include "models/safetensors.h"
#include "results/record.h"
#include "tests/fixtures.h"

/* ---- helpers ---- */

typedef struct {
    const char *key;
    int rows, cols;
    uint64_t seed;
} CtxSpec;

/* Writes one tensor [rows][cols] per spec (seeded uniform values in [-1, 1)) with dtype dt. */
static void write_contexts(const char *path, const CtxSpec *specs, int n, StDtype dt) {
    StWriteTensor t[8];
    float *data[8];
    cr_assert_leq(n, 8);
    for (int i = 0; i < n; i++) {
        size_t count = (size_t)specs[i].rows * specs[i].cols;
        data[i] = malloc((count ? count : 1) * sizeof(float));
        cr_assert_not_null(data[i]);
        fixture_random(data[i], count, specs[i].seed);
        t[i] = (StWriteTensor){.name = specs[i].key, .dtype = dt, .ndim = 2,
                               .shape = {specs[i].rows, specs[i].cols}, .data = data[i]};
    }
    Error err = {{0}};
    cr_assert_eq(st_write(path, t, n, &err), 0, "%s", err.msg);
    for (int i = 0; i < n; i++) free(data[i]);
}

/* A Wan-shaped config small enough for a few seconds of tests: the fixture's small DiT without a vocabulary,
 * predicting velocity like Wan2.1, text contexts [5][8]. */
static const DitConfig *wan_small(void) {
    static DitConfig c;
    c = *fixture_small_config();
    snprintf(c.name, sizeof c.name, "wan-small");
    c.vocab_size = 0;
    c.prediction = DIT_PREDICT_VELOCITY;
    c.text_dim = 8;
    c.text_len = 5;
    return &c;
}

static void open_wan_small(ExperimentContext *ctx) {
    Error err = {{0}};
    memset(ctx, 0, sizeof *ctx);
    cr_assert_eq(dit_init_random(&ctx->model, wan_small(), 11, &err), 0, "%s", err.msg);
    cr_assert_eq(engine_create(&ctx->engine, "cpu", &ctx->model, &err), 0, "%s", err.msg);
}

/* One 3-step CFG run of the small Wan model with the latents recorded. contexts NULL: the random stand-in. */
static void run_wan_small(const char *contexts, const char *prompt_id, const char *negative_id, RunRecord *rec) {
    ExperimentContext ctx;
    open_wan_small(&ctx);
    Error err = {{0}};
    if (contexts) cr_assert_eq(experiment_use_contexts(&ctx, contexts, &err), 0, "%s", err.msg);
    ExperimentSpec spec = {.strategy_spec = "none", .prompt_id = prompt_id, .prompt = "a prompt",
                           .negative_id = negative_id, .random_context = contexts == NULL, .seed = 3, .steps = 3,
                           .guidance = 4.0f, .record_latents = 1};
    cr_assert_eq(experiment_run(&ctx, &spec, rec, &err), 0, "%s", err.msg);
    cr_assert_eq(rec->failed, 0);
    experiment_close(&ctx);
}

static size_t latents_numel(const RunRecord *r) {
    return (size_t)r->steps * r->lc * r->lf * r->lh * r->lw;
}

static int same_latents(const RunRecord *a, const RunRecord *b) {
    cr_assert_eq(latents_numel(a), latents_numel(b));
    cr_assert_gt(latents_numel(a), 0);
    return memcmp(a->latents, b->latents, latents_numel(a) * sizeof(float)) == 0;
}

static char *path_in(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    cr_assert_not_null(p);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* ---- the reader ---- */

Test(contexts, padded_rows_are_zero_and_values_exact) {
    char *dir = fixture_tmpdir();
    char *file = path_in(dir, "c.safetensors");
    const CtxSpec specs[] = {{"p0", 3, 8, 1}, {CONTEXTS_NEGATIVE_KEY, 5, 8, 2}};
    write_contexts(file, specs, 2, ST_F32);
    float want[3 * 8];
    fixture_random(want, 3 * 8, 1);

    PromptContexts c;
    Error err = {{0}};
    cr_assert_eq(contexts_open(&c, file, 5, 8, &err), 0, "%s", err.msg);
    float text[5 * 8];
    for (int i = 0; i < 5 * 8; i++) text[i] = NAN; /* what the reader leaves unwritten shows up */
    cr_assert_eq(contexts_fill(&c, "p0", "p0", text, &err), 0, "%s", err.msg);
    for (int i = 0; i < 3 * 8; i++) cr_assert_eq(text[i], want[i], "element %d", i);
    for (int i = 3 * 8; i < 5 * 8; i++) cr_assert_eq(text[i], 0.0f, "padding element %d is %g", i, text[i]);
    char hex[65];
    cr_assert_eq(sha256_file_hex(file, hex, &err), 0);
    cr_assert_str_eq(c.sha256, hex);
    contexts_close(&c);
    free(file);
    fixture_rmdir(dir);
    free(dir);
}

Test(contexts, bf16_and_f16_read_as_their_float32_values) {
    char *dir = fixture_tmpdir();
    const StDtype types[] = {ST_BF16, ST_F16};
    for (int k = 0; k < 2; k++) {
        char *file = path_in(dir, k ? "h.safetensors" : "b.safetensors");
        const CtxSpec specs[] = {{"p0", 4, 8, 5}};
        write_contexts(file, specs, 1, types[k]);
        float x[4 * 8], text[5 * 8];
        fixture_random(x, 4 * 8, 5);
        PromptContexts c;
        Error err = {{0}};
        cr_assert_eq(contexts_open(&c, file, 5, 8, &err), 0, "%s", err.msg);
        cr_assert_eq(contexts_fill(&c, "p0", "p0", text, &err), 0, "%s", err.msg);
        for (int i = 0; i < 4 * 8; i++) {
            float want = k ? st_f16_to_f32(st_f32_to_f16(x[i])) : st_bf16_to_f32(st_f32_to_bf16(x[i]));
            cr_assert_eq(text[i], want, "dtype %d element %d: %g != %g", k, i, text[i], want);
        }
        for (int i = 4 * 8; i < 5 * 8; i++) cr_assert_eq(text[i], 0.0f);
        contexts_close(&c);
        free(file);
    }
    fixture_rmdir(dir);
    free(dir);
}

/* ---- the runs use them ---- */

Test(contexts, uncond_branch_uses_the_negative_context, .timeout = 60) {
    char *dir = fixture_tmpdir();
    char *a = path_in(dir, "a.safetensors"), *a_copy = path_in(dir, "a2.safetensors");
    char *b = path_in(dir, "b.safetensors"), *both = path_in(dir, "both.safetensors");
    /* a and its copy: one file content under two names. b: same prompt context, another negative. both: a's
     * negative under the default key and b's under "neg_b". */
    const CtxSpec sa[] = {{"p0", 3, 8, 1}, {"p1", 2, 8, 9}, {CONTEXTS_NEGATIVE_KEY, 4, 8, 2}};
    const CtxSpec sb[] = {{"p0", 3, 8, 1}, {CONTEXTS_NEGATIVE_KEY, 4, 8, 3}};
    const CtxSpec sboth[] = {{"p0", 3, 8, 1}, {CONTEXTS_NEGATIVE_KEY, 4, 8, 2}, {"neg_b", 4, 8, 3}};
    write_contexts(a, sa, 3, ST_F32);
    write_contexts(a_copy, sa, 3, ST_F32);
    write_contexts(b, sb, 2, ST_F32);
    write_contexts(both, sboth, 3, ST_F32);

    RunRecord ra, ra2, rb, rboth_b, rp1;
    run_wan_small(a, "p0", NULL, &ra);
    run_wan_small(a_copy, "p0", NULL, &ra2);
    run_wan_small(b, "p0", NULL, &rb);
    run_wan_small(both, "p0", "neg_b", &rboth_b);
    run_wan_small(a, "p1", NULL, &rp1);
    cr_assert(same_latents(&ra, &ra2), "the same contexts gave different trajectories");
    cr_assert(!same_latents(&ra, &rb), "another negative context left the trajectory unchanged: uncond ignores it");
    cr_assert(same_latents(&rb, &rboth_b), "--negative-id neg_b did not select the context under neg_b");
    cr_assert(!same_latents(&ra, &rp1), "another prompt context left the trajectory unchanged: cond ignores it");

    cr_assert_str_eq(ra.conditioning, "contexts");
    cr_assert_str_eq(ra.contexts_path, a);
    cr_assert_str_eq(ra.contexts_negative_id, CONTEXTS_NEGATIVE_KEY);
    cr_assert_str_eq(rboth_b.contexts_negative_id, "neg_b");
    char hex[65];
    Error err = {{0}};
    cr_assert_eq(sha256_file_hex(a, hex, &err), 0);
    cr_assert_str_eq(ra.contexts_sha256, hex);
    /* No negative text given for a model without a vocabulary: the official default, as wan/text2video.py. */
    cr_assert_str_eq(ra.negative_prompt, WAN_DEFAULT_NEGATIVE_PROMPT);
    cr_assert(strncmp(WAN_DEFAULT_NEGATIVE_PROMPT, "\xe8\x89\xb2\xe8\xb0\x83\xe8\x89\xb3\xe4\xb8\xbd", 12) == 0);

    /* The record round-trips the attributes. */
    char *rec_path = path_in(dir, "r.h5");
    cr_assert_eq(record_write(rec_path, &ra, &err), 0, "%s", err.msg);
    RunRecord back;
    cr_assert_eq(record_read_header(rec_path, &back, &err), 0, "%s", err.msg);
    cr_assert_str_eq(back.conditioning, "contexts");
    cr_assert_str_eq(back.contexts_path, a);
    cr_assert_str_eq(back.contexts_sha256, hex);
    cr_assert_str_eq(back.contexts_negative_id, CONTEXTS_NEGATIVE_KEY);
    cr_assert_str_eq(back.negative_prompt, WAN_DEFAULT_NEGATIVE_PROMPT);
    record_free(&back);

    RunRecord *all[] = {&ra, &ra2, &rb, &rboth_b, &rp1};
    for (int i = 0; i < 5; i++) record_free(all[i]);
    free(rec_path), free(a), free(a_copy), free(b), free(both);
    fixture_rmdir(dir);
    free(dir);
}

Test(contexts, bf16_file_runs_like_its_float32_values, .timeout = 60) {
    char *dir = fixture_tmpdir();
    char *f32 = path_in(dir, "f32.safetensors"), *bf16 = path_in(dir, "bf16.safetensors");
    /* The F32 file holds the values the BF16 file rounds to: both must give one trajectory bit for bit. */
    float p[3 * 8], n[4 * 8];
    fixture_random(p, 3 * 8, 1);
    fixture_random(n, 4 * 8, 2);
    float pr[3 * 8], nr[4 * 8];
    for (int i = 0; i < 3 * 8; i++) pr[i] = st_bf16_to_f32(st_f32_to_bf16(p[i]));
    for (int i = 0; i < 4 * 8; i++) nr[i] = st_bf16_to_f32(st_f32_to_bf16(n[i]));
    StWriteTensor t32[] = {{"p0", ST_F32, 2, {3, 8}, pr}, {CONTEXTS_NEGATIVE_KEY, ST_F32, 2, {4, 8}, nr}};
    StWriteTensor t16[] = {{"p0", ST_BF16, 2, {3, 8}, p}, {CONTEXTS_NEGATIVE_KEY, ST_BF16, 2, {4, 8}, n}};
    Error err = {{0}};
    cr_assert_eq(st_write(f32, t32, 2, &err), 0, "%s", err.msg);
    cr_assert_eq(st_write(bf16, t16, 2, &err), 0, "%s", err.msg);
    RunRecord r32, r16;
    run_wan_small(f32, "p0", NULL, &r32);
    run_wan_small(bf16, "p0", NULL, &r16);
    cr_assert(same_latents(&r32, &r16));
    cr_assert_str_neq(r32.contexts_sha256, r16.contexts_sha256);
    record_free(&r32);
    record_free(&r16);
    free(f32), free(bf16);
    fixture_rmdir(dir);
    free(dir);
}

Test(contexts, random_stand_in_is_recorded_and_needs_asking_for, .timeout = 60) {
    RunRecord r;
    run_wan_small(NULL, "p0", NULL, &r);
    cr_assert_str_eq(r.conditioning, "random-stand-in");
    cr_assert_str_eq(r.contexts_path, "");
    cr_assert_str_eq(r.negative_prompt, WAN_DEFAULT_NEGATIVE_PROMPT);
    record_free(&r);

    /* Neither contexts nor random_context: experiment_run refuses too, not only the CLI. */
    ExperimentContext ctx;
    open_wan_small(&ctx);
    ExperimentSpec spec = {.strategy_spec = "none", .prompt_id = "p0", .prompt = "x", .steps = 2};
    Error err = {{0}};
    cr_assert_neq(experiment_run(&ctx, &spec, &r, &err), 0);
    cr_assert(strstr(err.msg, "--contexts") && strstr(err.msg, "--random-context"), "%s", err.msg);
    experiment_close(&ctx);
}

/* ---- the CLI: checks before any work ---- */

static int cli(char *out, size_t cap, const char *const *args) { return fixture_run_cli(out, cap, args); }

static int exists(const char *path) { return access(path, F_OK) == 0; }

/* `run` with wan2.1-t2v-1.3b and weights that do not exist: a failure that names the contexts problem rather than
 * the weights happened before loading them; the output folder is never created. */
static void expect_run_fails(const char *dir, const char *contexts, const char *negative_id, const char *want1,
                             const char *want2) {
    char *out_dir = path_in(dir, "out");
    const char *args[24] = {"run", "--model", "wan2.1-t2v-1.3b", "--weights", "/nonexistent/wan.safetensors",
                            "--prompt", "a cat", "--prompt-id", "p1", "--contexts", contexts, "--out", out_dir,
                            "--quiet"};
    int n = 14;
    if (negative_id) args[n++] = "--negative-id", args[n++] = negative_id;
    args[n] = NULL;
    char out[4096];
    int rc = cli(out, sizeof out, args);
    cr_assert_eq(rc, 1, "rc %d: %s", rc, out);
    cr_assert(strstr(out, contexts), "the message does not name %s: %s", contexts, out);
    cr_assert(strstr(out, want1), "the message lacks \"%s\": %s", want1, out);
    if (want2) cr_assert(strstr(out, want2), "the message lacks \"%s\": %s", want2, out);
    cr_assert(!strstr(out, "/nonexistent/wan.safetensors"), "the weights were read first: %s", out);
    cr_assert(!exists(out_dir), "%s was created", out_dir);
    free(out_dir);
}

Test(contexts, cli_bad_contexts_fail_before_any_work, .timeout = 60) {
    char *dir = fixture_tmpdir();
    char *f = path_in(dir, "c.safetensors");
    const int W = 4096;

    const CtxSpec only_neg[] = {{CONTEXTS_NEGATIVE_KEY, 2, W, 1}};
    write_contexts(f, only_neg, 1, ST_F32);
    expect_run_fails(dir, f, NULL, "prompt id 'p1'", "missing");

    const CtxSpec only_p1[] = {{"p1", 2, W, 1}};
    write_contexts(f, only_p1, 1, ST_F32);
    expect_run_fails(dir, f, NULL, "negative prompt", CONTEXTS_NEGATIVE_KEY);

    const CtxSpec both[] = {{"p1", 2, W, 1}, {CONTEXTS_NEGATIVE_KEY, 2, W, 2}};
    write_contexts(f, both, 2, ST_F32);
    expect_run_fails(dir, f, "neg_other", "negative prompt", "neg_other");

    const CtxSpec narrow[] = {{"p1", 2, W - 1, 1}, {CONTEXTS_NEGATIVE_KEY, 2, W, 2}};
    write_contexts(f, narrow, 2, ST_F32);
    expect_run_fails(dir, f, NULL, "prompt id 'p1'", "4095 wide");

    const CtxSpec tall[] = {{"p1", 513, W, 1}, {CONTEXTS_NEGATIVE_KEY, 2, W, 2}};
    write_contexts(f, tall, 2, ST_BF16);
    expect_run_fails(dir, f, NULL, "prompt id 'p1'", "513 tokens");

    const CtxSpec tall_neg[] = {{"p1", 2, W, 1}, {CONTEXTS_NEGATIVE_KEY, 600, W, 2}};
    write_contexts(f, tall_neg, 2, ST_BF16);
    expect_run_fails(dir, f, NULL, "negative prompt", "600 tokens");

    /* Rank 3 and rank 1. */
    float *x = calloc((size_t)2 * W, sizeof(float));
    cr_assert_not_null(x);
    fixture_random(x, (size_t)2 * W, 4);
    StWriteTensor r3[] = {{"p1", ST_F32, 3, {1, 2, W}, x}, {CONTEXTS_NEGATIVE_KEY, ST_F32, 2, {2, W}, x}};
    Error err = {{0}};
    cr_assert_eq(st_write(f, r3, 2, &err), 0, "%s", err.msg);
    expect_run_fails(dir, f, NULL, "prompt id 'p1'", "rank 3");
    StWriteTensor r1[] = {{"p1", ST_F32, 2, {2, W}, x}, {CONTEXTS_NEGATIVE_KEY, ST_F32, 1, {W}, x}};
    cr_assert_eq(st_write(f, r1, 2, &err), 0, "%s", err.msg);
    expect_run_fails(dir, f, NULL, "negative prompt", "rank 1");

    /* A NaN in the prompt's context, an Inf in the negative's. */
    x[W + 17] = NAN;
    StWriteTensor nan[] = {{"p1", ST_F32, 2, {2, W}, x}, {CONTEXTS_NEGATIVE_KEY, ST_F32, 2, {1, W}, x}};
    cr_assert_eq(st_write(f, nan, 2, &err), 0, "%s", err.msg);
    expect_run_fails(dir, f, NULL, "prompt id 'p1'", "non-finite value at token 1, channel 17");
    x[W + 17] = 0.5f;
    x[3] = INFINITY;
    StWriteTensor inf[] = {{"p1", ST_F32, 2, {1, W}, x + W}, {CONTEXTS_NEGATIVE_KEY, ST_F32, 2, {1, W}, x}};
    cr_assert_eq(st_write(f, inf, 2, &err), 0, "%s", err.msg);
    expect_run_fails(dir, f, NULL, "negative prompt", "non-finite");
    free(x);

    /* Not a safetensors file, and no file at all. */
    FILE *t = fopen(f, "w");
    cr_assert_not_null(t);
    fputs("id\tprompt\np1\ta cat\n", t);
    fclose(t);
    expect_run_fails(dir, f, NULL, "header", NULL);
    char *missing = path_in(dir, "missing.safetensors");
    expect_run_fails(dir, missing, NULL, "missing.safetensors", NULL);
    free(missing);
    free(f);
    fixture_rmdir(dir);
    free(dir);
}

Test(contexts, cli_sweep_checks_every_prompt_id_up_front, .timeout = 60) {
    char *dir = fixture_tmpdir();
    char *f = path_in(dir, "c.safetensors"), *prompts = path_in(dir, "p.txt"), *out_dir = path_in(dir, "sweep");
    char *ini = path_in(dir, "s.ini");
    FILE *p = fopen(prompts, "w");
    cr_assert_not_null(p);
    fputs("a\ta cat\nb\ta dog\n", p);
    fclose(p);
    /* "a" and the negative are fine; "b", the second prompt, is missing: nothing may run for "a" first. */
    const CtxSpec specs[] = {{"a", 3, 4096, 1}, {CONTEXTS_NEGATIVE_KEY, 3, 4096, 2}};
    write_contexts(f, specs, 2, ST_BF16);
    const char *args[] = {"sweep", "--model", "wan2.1-t2v-1.3b", "--weights", "/nonexistent/wan.safetensors",
                          "--prompts", prompts, "--contexts", f, "--out", out_dir, "--quiet", NULL};
    char out[4096];
    int rc = cli(out, sizeof out, args);
    cr_assert_eq(rc, 1, "rc %d: %s", rc, out);
    cr_assert(strstr(out, "prompt id 'b'") && strstr(out, f), "%s", out);
    cr_assert(!exists(out_dir), "the sweep folder was created before the check");

    /* The same from the INI file (key contexts), and random_context must be a boolean. */
    FILE *c = fopen(ini, "w");
    cr_assert_not_null(c);
    fprintf(c, "[sweep]\nmodel = wan2.1-t2v-1.3b\nweights = /nonexistent/wan.safetensors\nprompts = %s\n"
               "contexts = %s\nout = %s\n", prompts, f, out_dir);
    fclose(c);
    const char *args_ini[] = {"sweep", "--config", ini, "--quiet", NULL};
    rc = cli(out, sizeof out, args_ini);
    cr_assert_eq(rc, 1, "rc %d: %s", rc, out);
    cr_assert(strstr(out, "prompt id 'b'") && strstr(out, f), "%s", out);
    cr_assert(!exists(out_dir));

    c = fopen(ini, "w");
    cr_assert_not_null(c);
    fprintf(c, "[sweep]\nprompts = %s\nout = %s\nrandom_context = maybe\n", prompts, out_dir);
    fclose(c);
    rc = cli(out, sizeof out, args_ini);
    cr_assert_eq(rc, 2, "rc %d: %s", rc, out);
    cr_assert(strstr(out, "random_context") && strstr(out, ini), "%s", out);
    free(f), free(prompts), free(out_dir), free(ini);
    fixture_rmdir(dir);
    free(dir);
}

Test(contexts, cli_wan_without_contexts_refuses, .timeout = 60) {
    char *dir = fixture_tmpdir();
    char *out_dir = path_in(dir, "out"), *prompts = path_in(dir, "p.txt");
    FILE *p = fopen(prompts, "w");
    cr_assert_not_null(p);
    fputs("a\ta cat\n", p);
    fclose(p);
    const char *run[] = {"run", "--model", "wan2.1-t2v-1.3b", "--weights", "random", "--prompt", "a cat",
                         "--out", out_dir, "--quiet", NULL};
    const char *sweep[] = {"sweep", "--model", "wan2.1-t2v-1.3b", "--weights", "random", "--prompts", prompts,
                           "--out", out_dir, "--quiet", NULL};
    const char *const *cmds[] = {run, sweep};
    for (int i = 0; i < 2; i++) {
        char out[4096];
        int rc = cli(out, sizeof out, cmds[i]);
        cr_assert_eq(rc, 1, "%s: rc %d: %s", cmds[i][0], rc, out);
        cr_assert(strstr(out, "--contexts") && strstr(out, "--random-context") && strstr(out, "wan2.1-t2v-1.3b"),
                  "%s: %s", cmds[i][0], out);
        cr_assert(!exists(out_dir));
    }
    const char *both[] = {"run", "--model", "wan2.1-t2v-1.3b", "--weights", "random", "--prompt", "a cat",
                          "--contexts", prompts, "--random-context", "--out", out_dir, NULL};
    char out[4096];
    cr_assert_eq(cli(out, sizeof out, both), 2, "%s", out);
    free(out_dir), free(prompts);
    fixture_rmdir(dir);
    free(dir);
}

/* The tiny model (text 16x64) accepts contexts too: the whole CLI path, record and `info`, in a fraction of a
 * second. Without them it embeds its words, as before. */
Test(contexts, cli_tiny_run_records_the_conditioning, .timeout = 60) {
    char *dir = fixture_tmpdir();
    char *f = path_in(dir, "c.safetensors"), *w = path_in(dir, "w.safetensors");
    char *out_ctx = path_in(dir, "ctx"), *out_voc = path_in(dir, "voc");
    cr_assert_eq(fixture_write_random_weights(w, dit_config_by_name("tiny"), 5, 0), 0);
    const CtxSpec specs[] = {{"p7", 6, 64, 1}, {CONTEXTS_NEGATIVE_KEY, 16, 64, 2}};
    write_contexts(f, specs, 2, ST_F16);
    const char *common[] = {"--weights", w, "--prompt", "red circle", "--frames", "1", "--height", "16", "--width",
                            "16", "--steps", "2", "--quiet"};
    const char *a1[32] = {"run", "--prompt-id", "p7", "--contexts", f, "--out", out_ctx};
    const char *a2[32] = {"run", "--prompt-id", "p7", "--out", out_voc};
    for (int i = 0; i < 13; i++) a1[7 + i] = common[i], a2[5 + i] = common[i];
    char out[4096];
    cr_assert_eq(cli(out, sizeof out, a1), 0, "%s", out);
    cr_assert_eq(cli(out, sizeof out, a2), 0, "%s", out);

    char *rec_ctx = path_in(out_ctx, "tiny__none__p7__s0.h5"), *rec_voc = path_in(out_voc, "tiny__none__p7__s0.h5");
    RunRecord r;
    Error err = {{0}};
    char hex[65];
    cr_assert_eq(sha256_file_hex(f, hex, &err), 0);
    cr_assert_eq(record_read_header(rec_ctx, &r, &err), 0, "%s", err.msg);
    cr_assert_str_eq(r.conditioning, "contexts");
    cr_assert_str_eq(r.contexts_path, f);
    cr_assert_str_eq(r.contexts_sha256, hex);
    cr_assert_str_eq(r.negative_prompt, ""); /* a model with a vocabulary keeps the empty default */
    record_free(&r);
    cr_assert_eq(record_read_header(rec_voc, &r, &err), 0, "%s", err.msg);
    cr_assert_str_eq(r.conditioning, "vocabulary");
    cr_assert_str_eq(r.contexts_path, "");
    record_free(&r);
    /* Records written before these attributes existed still read, with "". */
    hid_t h = H5Fopen(rec_voc, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(h, 0);
    const char *added[] = {"conditioning", "contexts_path", "contexts_sha256", "contexts_negative_id"};
    for (int i = 0; i < 4; i++) cr_assert_geq(H5Adelete(h, added[i]), 0);
    H5Fclose(h);
    cr_assert_eq(record_read_header(rec_voc, &r, &err), 0, "%s", err.msg);
    cr_assert_str_eq(r.conditioning, "");
    record_free(&r);

    const char *info[] = {"info", rec_ctx, NULL};
    cr_assert_eq(cli(out, sizeof out, info), 0, "%s", out);
    cr_assert(strstr(out, "contexts from") && strstr(out, hex), "%s", out);
    free(rec_ctx), free(rec_voc), free(f), free(w), free(out_ctx), free(out_voc);
    fixture_rmdir(dir);
    free(dir);
}

/* scripts/make_contexts.py --random writes what the reader accepts: every prompt id and the negative, in the
 * requested width and dtype. */
Test(contexts, make_contexts_random_file_is_readable, .timeout = 60) {
    const char *py = fixture_python();
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import numpy' >/dev/null 2>&1", py);
    if (system(cmd) != 0) cr_skip_test("%s cannot import numpy (Debian: python3-numpy)", py);
    char *dir = fixture_tmpdir();
    char *f = path_in(dir, "c.safetensors");
    snprintf(cmd, sizeof cmd, "'%s' scripts/make_contexts.py --prompts datasets/prompts_short.txt --out '%s' "
                              "--random --text-dim 64 --dtype bf16 --seed 3 2>&1",
             py, f);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    char out[4096] = {0};
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    cr_assert_eq(pclose(p), 0, "%s: %s", cmd, out);

    PromptSet set;
    Error err = {{0}};
    cr_assert_eq(prompt_set_read("datasets/prompts_short.txt", &set, &err), 0, "%s", err.msg);
    const char *ids[64];
    cr_assert_leq(set.count, 64);
    for (int i = 0; i < set.count; i++) ids[i] = set.items[i].id;
    cr_assert_eq(contexts_check_all(f, ids, set.count, CONTEXTS_NEGATIVE_KEY, 16, 64, &err), 0, "%s", err.msg);
    StFile st;
    cr_assert_eq(st_open(&st, f, &err), 0, "%s", err.msg);
    cr_assert_eq(st.num_tensors, set.count + 1);
    for (int i = 0; i < st.num_tensors; i++) cr_assert_eq(st.tensors[i].dtype, ST_BF16);
    st_close(&st);
    /* A model of another width rejects it, naming the first id. */
    cr_assert_neq(contexts_check_all(f, ids, set.count, CONTEXTS_NEGATIVE_KEY, 512, 4096, &err), 0);
    cr_assert(strstr(err.msg, ids[0]) && strstr(err.msg, "64 wide"), "%s", err.msg);
    prompt_set_free(&set);
    free(f);
    fixture_rmdir(dir);
    free(dir);
}

/* A sweep with contexts runs, and a finished run made with another contexts file is not taken for this sweep's. */
Test(contexts, cli_sweep_with_contexts_and_resume_identity, .timeout = 120) {
    char *dir = fixture_tmpdir();
    char *f = path_in(dir, "c.safetensors"), *g = path_in(dir, "g.safetensors"), *w = path_in(dir, "w.safetensors");
    char *prompts = path_in(dir, "p.txt"), *out_dir = path_in(dir, "sweep");
    cr_assert_eq(fixture_write_random_weights(w, dit_config_by_name("tiny"), 5, 0), 0);
    FILE *p = fopen(prompts, "w");
    cr_assert_not_null(p);
    fputs("a\tred circle\n", p);
    fclose(p);
    const CtxSpec specs[] = {{"a", 4, 64, 1}, {CONTEXTS_NEGATIVE_KEY, 3, 64, 2}};
    write_contexts(f, specs, 2, ST_F32);
    const CtxSpec other[] = {{"a", 4, 64, 1}, {CONTEXTS_NEGATIVE_KEY, 3, 64, 5}};
    write_contexts(g, other, 2, ST_F32);
    const char *args[] = {"sweep", "--weights", w, "--prompts", prompts, "--contexts", f, "--steps", "2",
                          "--out", out_dir, "--quiet", NULL};
    char out[8192];
    int rc = cli(out, sizeof out, args);
    cr_assert_eq(rc, 0, "rc %d: %s", rc, out);
    char *rec = path_in(out_dir, "runs/none__a__s0.h5");
    RunRecord r;
    Error err = {{0}};
    cr_assert_eq(record_read_header(rec, &r, &err), 0, "%s", err.msg);
    cr_assert_str_eq(r.conditioning, "contexts");
    cr_assert_str_eq(r.contexts_path, f);
    record_free(&r);
    args[6] = g;
    rc = cli(out, sizeof out, args);
    cr_assert_eq(rc, 1, "rc %d: %s", rc, out);
    cr_assert(strstr(out, "contexts") && strstr(out, g), "%s", out);
    free(rec), free(f), free(g), free(w), free(prompts), free(out_dir);
    fixture_rmdir(dir);
    free(dir);
}
