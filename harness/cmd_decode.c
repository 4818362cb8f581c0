/* cachebench decode: latents -> RGB video through the Wan2.1 VAE decoder (models/vae/vae.h).
 *
 * Nothing is half-written: PNGs go to a staging folder inside DIR and are moved into DIR only once every frame is
 * decoded; the tensor goes to FILE.tmp (written frame by frame, so memory stays bounded) and is renamed at the end. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "harness/cli.h"
#include "harness/sweep.h"
#include "metrics/image.h"
#include "models/safetensors.h"
#include "models/vae/vae.h"

static void decode_usage(FILE *out) {
    fprintf(out,
            "Usage: cachebench decode --vae VAE.safetensors LATENTS.safetensors --out DIR [--out-tensor FILE]\n"
            "Decodes latents to RGB video with the Wan2.1 VAE decoder (WanVAE.decode: de-normalisation with the\n"
            "official mean/std, streaming one latent frame at a time, clamp to [-1, 1]).\n"
            "LATENTS holds tensor `latents` [16, F, H, W] (F32, F16 or BF16), as the DiT produced them; the video has\n"
            "1 + 4 (F - 1) frames of 8H x 8W. VAE is a checkpoint with the official names (scripts/convert_wan_vae.py\n"
            "converts Wan2.1_VAE.pth); its size is read from the tensor shapes.\n\n"
            "  --vae FILE         VAE checkpoint (required)\n"
            "  --out DIR          write DIR/frame_000.png, frame_001.png, ... (created if missing)\n"
            "  --out-tensor FILE  write tensor `video` [3, T, 8H, 8W] F32 in [-1, 1] (before quantisation)\n"
            "  --backend cpu|cuda compute backend (default cpu; cuda needs a CUDA build and a GPU)\n"
            "  --help             this text\n"
            "At least one of --out and --out-tensor. Progress per latent frame on stderr.\n"
            "Exit status: 0 done, 1 error, 2 bad usage.\n");
}

typedef struct {
    const char *stage;      /* staging folder for PNGs, or NULL */
    int tensor_fd;          /* -1 when no tensor is written */
    size_t tensor_data_at;  /* file offset of the data section */
    int T;
    int frames_done;
    uint8_t *rgb8;
} DecodeOut;

static int pwrite_all(int fd, const void *buf, size_t n, off_t at) {
    const char *p = buf;
    while (n) {
        ssize_t w = pwrite(fd, p, n, at);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
        at += w;
    }
    return 0;
}

static int write_frame(void *user, int t, const float *rgb, int height, int width, Error *err) {
    DecodeOut *o = user;
    const size_t P = (size_t)height * width;
    if (o->stage) {
        char path[4200];
        snprintf(path, sizeof path, "%s/frame_%03d.png", o->stage, t);
        vae_frame_to_rgb8(rgb, height, width, o->rgb8);
        if (image_write_png(path, o->rgb8, height, width, err)) return -1;
    }
    if (o->tensor_fd >= 0)
        for (int c = 0; c < 3; c++)
            if (pwrite_all(o->tensor_fd, rgb + c * P, P * sizeof(float),
                           (off_t)(o->tensor_data_at + ((size_t)c * o->T + t) * P * sizeof(float))))
                return error_set(err, "cannot write the video tensor: %s", strerror(errno));
    o->frames_done = t + 1;
    return 0;
}

/* The safetensors header of one F32 tensor `video` [3, T, h, w]; returns the data offset. */
static int write_tensor_header(int fd, int T, int h, int w, size_t *data_at) {
    char json[256];
    const size_t bytes = (size_t)3 * T * h * w * sizeof(float);
    int n = snprintf(json, sizeof json, "{\"video\":{\"dtype\":\"F32\",\"shape\":[3,%d,%d,%d],\"data_offsets\":[0,%zu]}}",
                     T, h, w, bytes);
    while (n % 8) json[n++] = ' ';
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)((uint64_t)n >> (8 * i));
    if (pwrite_all(fd, len, 8, 0) || pwrite_all(fd, json, (size_t)n, 8)) return -1;
    *data_at = 8 + (size_t)n;
    /* The full size up front: a full disk fails here, not after minutes of decoding. */
    return posix_fallocate(fd, 0, (off_t)(*data_at + bytes)) == 0 ? 0 : -1;
}

/* The latents tensor, validated, as float32 [16][F][H][W]. */
static int read_latents(const char *path, float **out, int *F, int *H, int *W, Error *err) {
    StFile f;
    if (st_open(&f, path, err)) return -1;
    const StTensor *t = st_find(&f, "latents");
    int rc = -1;
    if (!t) {
        error_set(err, "%s: no tensor 'latents' (expected [%d, F, H, W])", path, VAE_Z_DIM);
    } else if (t->ndim != 4 || t->shape[0] != VAE_Z_DIM || t->shape[1] < 1 || t->shape[2] < 1 || t->shape[3] < 1 ||
               t->shape[1] > 100000 || t->shape[2] > 4096 || t->shape[3] > 4096) {
        error_set(err, "%s: tensor 'latents' must be [%d, F, H, W] with F >= 1 and 1 <= H, W <= 4096", path,
                  VAE_Z_DIM);
    } else {
        const size_t n = (size_t)VAE_Z_DIM * t->shape[1] * t->shape[2] * t->shape[3];
        *out = malloc(n * sizeof(float));
        if (!*out) {
            error_set(err, "%s: out of memory for the latents", path);
        } else if (st_to_f32(t, *out, err)) {
            error_prefix(err, "%s: tensor 'latents'", path);
        } else {
            rc = 0;
            for (size_t i = 0; i < n && !rc; i++)
                if (!isfinite((*out)[i]))
                    rc = error_set(err, "%s: tensor 'latents' holds a non-finite value at index %zu", path, i);
        }
        if (rc) {
            free(*out);
            *out = NULL;
        }
        *F = (int)t->shape[1];
        *H = (int)t->shape[2];
        *W = (int)t->shape[3];
    }
    st_close(&f);
    return rc;
}

/* Staged PNGs: moved into dir on success, removed otherwise; then the staging folder goes. */
static int finish_stage(const char *stage, const char *dir, int frames, int keep, Error *err) {
    char from[4200], to[4200];
    int rc = 0;
    for (int t = 0; t < frames; t++) {
        snprintf(from, sizeof from, "%s/frame_%03d.png", stage, t);
        snprintf(to, sizeof to, "%s/frame_%03d.png", dir, t);
        if (keep && !rc && rename(from, to) < 0) rc = error_set(err, "cannot rename %s to %s: %s", from, to, strerror(errno));
        unlink(from);
    }
    rmdir(stage);
    return rc;
}

int cmd_decode(int argc, char **argv) {
    enum { OPT_VAE = 1000, OPT_OUT, OPT_TENSOR, OPT_BACKEND, OPT_HELP };
    static const struct option options[] = {{"vae", required_argument, 0, OPT_VAE},
                                            {"out", required_argument, 0, OPT_OUT},
                                            {"out-tensor", required_argument, 0, OPT_TENSOR},
                                            {"backend", required_argument, 0, OPT_BACKEND},
                                            {"help", no_argument, 0, OPT_HELP},
                                            {0, 0, 0, 0}};
    const char *vae_path = NULL, *dir = NULL, *tensor_path = NULL, *backend = "cpu";
    int opt;
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case OPT_VAE: vae_path = optarg; break;
        case OPT_OUT: dir = optarg; break;
        case OPT_TENSOR: tensor_path = optarg; break;
        case OPT_BACKEND:
            if (strcmp(optarg, "cpu") && strcmp(optarg, "cuda"))
                return cli_usage_error("decode", "invalid value '%s' for --backend: use cpu or cuda", optarg);
            backend = optarg;
            break;
        case OPT_HELP: decode_usage(stdout); return 0;
        default: return cli_usage_error("decode", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 1) return cli_usage_error("decode", "expected one latents file");
    if (!vae_path) return cli_usage_error("decode", "--vae FILE is required");
    if (!dir && !tensor_path) return cli_usage_error("decode", "give --out DIR, --out-tensor FILE or both");
    const char *latents_path = argv[optind];

    Error err = {{0}};
    float *latents = NULL;
    int F = 0, H = 0, W = 0, T = 0, h = 0, w = 0;
    VaeModel m = {0};
    VaeDecoder *dec = NULL;
    DecodeOut o = {.tensor_fd = -1};
    char stage[4200] = "", tensor_tmp[4200] = "";
    int rc = 1;
    if (read_latents(latents_path, &latents, &F, &H, &W, &err) || vae_load_auto(&m, vae_path, &err)) goto done;
    T = vae_num_frames(&m.cfg, F);
    h = H << (m.cfg.num_stages - 1);
    w = W << (m.cfg.num_stages - 1);
    o.T = T;
    if (vae_decoder_new_on(&dec, &m, H, W, backend, &err)) goto done;
    if (dir) {
        if (sweep_make_dirs(dir, &err)) goto done;
        snprintf(stage, sizeof stage, "%s/.decode-XXXXXX", dir);
        if (!mkdtemp(stage)) {
            error_set(&err, "cannot create a staging folder in %s: %s", dir, strerror(errno));
            stage[0] = 0;
            goto done;
        }
        o.stage = stage;
        o.rgb8 = malloc((size_t)h * w * 3);
        if (!o.rgb8) {
            error_set(&err, "out of memory");
            goto done;
        }
    }
    if (tensor_path) {
        snprintf(tensor_tmp, sizeof tensor_tmp, "%s.tmp", tensor_path);
        o.tensor_fd = open(tensor_tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
        if (o.tensor_fd < 0) {
            error_set(&err, "cannot create %s: %s", tensor_tmp, strerror(errno));
            tensor_tmp[0] = 0;
            goto done;
        }
        if (write_tensor_header(o.tensor_fd, T, h, w, &o.tensor_data_at)) {
            error_set(&err, "cannot write %s: %s", tensor_tmp, strerror(errno));
            goto done;
        }
    }
    fprintf(stderr, "decode: %s: %d latent frames of %dx%d -> %d frames of %dx%d (decoder state %.1f MiB)\n",
            latents_path, F, W, H, T, w, h, (double)vae_decoder_bytes(dec) / (1024.0 * 1024.0));
    const size_t P = (size_t)H * W;
    float *const frame = malloc((size_t)VAE_Z_DIM * P * sizeof(float));
    if (!frame) {
        error_set(&err, "out of memory");
        goto done;
    }
    const double t0 = clock_seconds();
    int failed = 0;
    for (int f = 0; f < F && !failed; f++) {
        for (int c = 0; c < VAE_Z_DIM; c++)
            memcpy(frame + c * P, latents + ((size_t)c * F + f) * P, P * sizeof(float));
        const int before = o.frames_done;
        failed = vae_decoder_push(dec, frame, write_frame, &o, &err) != 0;
        if (!failed)
            fprintf(stderr, "decode: latent frame %d/%d -> frames %d..%d (%.1f s)\n", f + 1, F, before,
                    o.frames_done - 1, clock_seconds() - t0);
    }
    free(frame);
    if (failed) goto done;
    if (o.tensor_fd >= 0) {
        if (fsync(o.tensor_fd) < 0 || close(o.tensor_fd) < 0) {
            o.tensor_fd = -1;
            error_set(&err, "cannot write %s: %s", tensor_tmp, strerror(errno));
            goto done;
        }
        o.tensor_fd = -1;
        if (rename(tensor_tmp, tensor_path) < 0) {
            error_set(&err, "cannot rename %s to %s: %s", tensor_tmp, tensor_path, strerror(errno));
            goto done;
        }
        tensor_tmp[0] = 0;
    }
    if (stage[0]) {
        const int r = finish_stage(stage, dir, T, 1, &err);
        stage[0] = 0;
        if (r) goto done;
    }
    printf("%s: %d latent frames -> %d frames of %dx%d", latents_path, F, T, w, h);
    if (dir) printf(", %s/frame_000.png ... frame_%03d.png", dir, T - 1);
    if (tensor_path) printf(", %s", tensor_path);
    printf(" (%.1f s)\n", clock_seconds() - t0);
    rc = 0;
done:
    if (rc) fprintf(stderr, "cachebench decode: %s\n", err.msg);
    if (o.tensor_fd >= 0) close(o.tensor_fd);
    if (tensor_tmp[0]) unlink(tensor_tmp);
    if (stage[0]) finish_stage(stage, dir, o.frames_done, 0, &err);
    vae_decoder_free(dec);
    vae_free(&m);
    free(latents);
    free(o.rgb8);
    return rc;
}
