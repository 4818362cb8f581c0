/* The pieces of a real Wan run put together in the harness: the VAE decodes a latent model's final latent into the
 * run record's video (experiment_use_vae), so metrics compare pixels; records say which space their video is in. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness/experiment.h"
#include "models/vae/vae.h"
#include "results/record.h"
#include "tests/fixtures.h"

/* The small DiT structure with Wan's 16 latent channels, no vocabulary (the text comes as contexts). */
static const DitConfig *latent_small(int channels) {
    static DitConfig c;
    c = *fixture_small_config();
    snprintf(c.name, sizeof c.name, "wan-latent-small");
    c.in_dim = c.out_dim = channels;
    c.vocab_size = 0;
    c.prediction = DIT_PREDICT_VELOCITY;
    c.text_dim = 8;
    c.text_len = 5;
    return &c;
}

/* Wan2.1's VAE structure (4 stages, temporal upsampling in the first two up-stages) at width 4. */
static char *write_small_vae(const char *dir) {
    VaeConfig v = {.z_dim = VAE_Z_DIM, .dim = 4, .num_stages = 4, .dim_mult = {1, 2, 4, 4}, .num_res_blocks = 1,
                   .temporal_upsample = {1, 1, 0}};
    char *path = malloc(4096);
    snprintf(path, 4096, "%s/vae.safetensors", dir);
    Error err = {{0}};
    cr_assert_eq(vae_write_random(path, &v, 5, ST_F32, &err), 0, "%s", err.msg);
    return path;
}

static void open_latent_small(ExperimentContext *ctx, int channels) {
    Error err = {{0}};
    memset(ctx, 0, sizeof *ctx);
    cr_assert_eq(dit_init_random(&ctx->model, latent_small(channels), 11, &err), 0, "%s", err.msg);
    cr_assert_eq(engine_create(&ctx->engine, "cpu", &ctx->model, &err), 0, "%s", err.msg);
}

static const ExperimentSpec SPEC = {.strategy_spec = "easycache:thresh=0.2,warmup=1", .prompt_id = "p0",
                                    .prompt = "a prompt", .random_context = 1, .seed = 3, .steps = 4,
                                    .guidance = 4.0f, .F = 2, .H = 4, .W = 6, .record_latents = 1};

Test(wan_pipeline, vae_decodes_the_final_latent_into_the_record, .timeout = 120) {
    char *dir = fixture_tmpdir(), *vae_path = write_small_vae(dir);
    ExperimentContext ctx;
    open_latent_small(&ctx, VAE_Z_DIM);
    Error err = {{0}};
    RunRecord latent, pixel;
    cr_assert_eq(experiment_run(&ctx, &SPEC, &latent, &err), 0, "%s", err.msg);
    cr_assert_str_eq(latent.video_space, "latent");
    cr_assert_eq(latent.frames, 2);
    cr_assert_str_eq(latent.vae_path, "");

    cr_assert_eq(experiment_use_vae(&ctx, vae_path, &err), 0, "%s", err.msg);
    cr_assert_eq(experiment_run(&ctx, &SPEC, &pixel, &err), 0, "%s", err.msg);
    cr_assert_eq(pixel.failed, 0);
    cr_assert_str_eq(pixel.video_space, "pixel");
    cr_assert_eq(pixel.frames, 5, "1 + 4 (F - 1) frames, got %d", pixel.frames);
    cr_assert_eq(pixel.height, 32);
    cr_assert_eq(pixel.width, 48);
    cr_assert_str_eq(pixel.vae_path, vae_path);
    cr_assert_eq(strlen(pixel.vae_sha256), 64);
    /* The same trajectory (the VAE only reads the result) ... */
    const size_t n = (size_t)SPEC.steps * 16 * 2 * 4 * 6;
    cr_assert_eq(memcmp(latent.latents, pixel.latents, n * sizeof(float)), 0);
    /* ... and the video is the VAE's decode of its last latent. */
    const float *last = pixel.latents + (size_t)(SPEC.steps - 1) * 16 * 2 * 4 * 6;
    uint8_t *want = malloc((size_t)5 * 32 * 48 * 3);
    cr_assert_eq(vae_decode_video(ctx.vae, last, 2, 4, 6, want, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(want, pixel.video, (size_t)5 * 32 * 48 * 3), 0);
    int distinct = 0;
    for (size_t i = 1; i < (size_t)5 * 32 * 48 * 3; i++) distinct += want[i] != want[0];
    cr_assert_gt(distinct, 0, "a constant video proves nothing");

    /* The record keeps what its video is. */
    char path[4200];
    snprintf(path, sizeof path, "%s/r.h5", dir);
    cr_assert_eq(record_write(path, &pixel, &err), 0, "%s", err.msg);
    RunRecord back;
    cr_assert_eq(record_read(path, &back, &err), 0, "%s", err.msg);
    cr_assert_str_eq(back.video_space, "pixel");
    cr_assert_str_eq(back.vae_sha256, pixel.vae_sha256);
    cr_assert_eq(back.frames, 5);
    record_free(&back);
    free(want);
    record_free(&latent);
    record_free(&pixel);
    experiment_close(&ctx);
    fixture_rmdir(dir);
    free(vae_path);
    free(dir);
}

Test(wan_pipeline, vae_is_refused_for_pixel_models_and_other_latents) {
    char *dir = fixture_tmpdir(), *vae_path = write_small_vae(dir);
    Error err = {{0}};
    ExperimentContext ctx;
    open_latent_small(&ctx, 3); /* three channels: a pixel-space model, like tiny */
    cr_assert_neq(experiment_use_vae(&ctx, vae_path, &err), 0);
    cr_assert(strstr(err.msg, "pixel space"), "%s", err.msg);
    experiment_close(&ctx);
    open_latent_small(&ctx, 8);
    cr_assert_neq(experiment_use_vae(&ctx, vae_path, &err), 0);
    cr_assert(strstr(err.msg, "16 latent channels") && strstr(err.msg, "makes 8"), "%s", err.msg);
    cr_assert_null(ctx.vae);
    experiment_close(&ctx);
    fixture_rmdir(dir);
    free(vae_path);
    free(dir);
}
