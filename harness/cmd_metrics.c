/* `cachebench metrics A B`: PSNR, SSIM and LPIPS of B against A, where both are run records (.h5, their videos
 * compared frame by frame) or both PNG images (DESIGN §7, metrics/metrics.h). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "harness/cli.h"
#include "metrics/image.h"
#include "metrics/metrics.h"
#include "results/record.h"

static void usage(FILE *out) {
    fprintf(out,
            "Usage: cachebench metrics [--lpips-weights DIR] [--store] A B\n"
            "Compares B against A: two run records (.h5; their videos, frame by frame) or two PNG images (.png).\n"
            "Prints PSNR in dB (inf when identical), SSIM (Gaussian window 11, sigma 1.5) and LPIPS v0.1 (AlexNet).\n"
            "For videos, one line per frame, then the video: PSNR over all pixels, SSIM and LPIPS means over frames.\n"
            "LPIPS uses the weights embedded at build time (LPIPS_WEIGHTS_DIR); without them it prints\n"
            "'unavailable' and the reason.\n"
            "\n"
            "Options:\n"
            "  --lpips-weights DIR   read the LPIPS weights from DIR instead (features.N.{weight,bias}.f32,\n"
            "                        linK.weight.f32: raw little-endian float32, as scripts/fetch_lpips_weights.py\n"
            "                        writes them)\n"
            "  --store               (records) also store the per-frame and mean values in B's /metrics group,\n"
            "                        with A recorded as its baseline (the file is rewritten atomically)\n"
            "  -h, --help            show this help\n"
            "\n"
            "Exit status: 0 compared, 1 a file could not be read or A and B differ in size, 2 usage error.\n");
}

/* One side of the comparison; exactly one of record and image holds the pixels. */
typedef struct {
    const char *path;
    int frames, height, width;
    const uint8_t *video;   /* [frames][height][width][3] */
    RunRecord record;
    Image image;
} Input;

static int has_suffix(const char *path, const char *suffix) {
    size_t n = strlen(path), m = strlen(suffix);
    return n > m && strcasecmp(path + n - m, suffix) == 0;
}

static int input_load(Input *in, const char *path, int is_record, Error *err) {
    memset(in, 0, sizeof *in);
    in->path = path;
    if (is_record) {
        if (record_read(path, &in->record, err) != 0) return -1;
        if (in->record.frames <= 0 || !in->record.video) return error_set(err, "%s: the run record has no video", path);
        in->frames = in->record.frames;
        in->height = in->record.height;
        in->width = in->record.width;
        in->video = in->record.video;
    } else {
        if (image_read_png(path, &in->image, err) != 0) return -1;
        in->frames = 1;
        in->height = in->image.height;
        in->width = in->image.width;
        in->video = in->image.rgb;
    }
    return 0;
}

static void input_free(Input *in) {
    record_free(&in->record);
    image_free(&in->image);
}

/* 1 when b runs a's trajectory (model, weights, prompt, seed, steps, solver, size), else 0 with what differs. */
static int same_trajectory(const RunRecord *a, const RunRecord *b, char *why, size_t cap) {
    if (strcmp(a->model, b->model))
        snprintf(why, cap, "model %s vs %s", a->model, b->model);
    else if (strcmp(a->weights_sha256, b->weights_sha256))
        snprintf(why, cap, "weights sha256 %.12s vs %.12s", a->weights_sha256, b->weights_sha256);
    else if (strcmp(a->prompt, b->prompt))
        snprintf(why, cap, "prompt \"%.200s\" vs \"%.200s\"", a->prompt, b->prompt);
    else if (a->seed != b->seed)
        snprintf(why, cap, "seed %llu vs %llu", (unsigned long long)a->seed, (unsigned long long)b->seed);
    else if (a->steps != b->steps)
        snprintf(why, cap, "steps %d vs %d", a->steps, b->steps);
    else if (strcmp(a->solver, b->solver))
        snprintf(why, cap, "solver %s vs %s", a->solver, b->solver);
    else if (a->frames != b->frames || a->height != b->height || a->width != b->width)
        snprintf(why, cap, "size %dx%dx%d vs %dx%dx%d", a->frames, a->height, a->width, b->frames, b->height,
                 b->width);
    else
        return 1;
    return 0;
}

static void describe(char *buf, size_t cap, const Input *in, int is_record) {
    if (is_record)
        snprintf(buf, cap, "%d frames of %dx%d", in->frames, in->width, in->height);
    else
        snprintf(buf, cap, "%dx%d", in->width, in->height);
}

static void print_lpips(double value, const LpipsNet *net, const char *why) {
    if (net)
        printf("%.6f", value);
    else
        printf("unavailable (%s)", why);
}

int cmd_metrics(int argc, char **argv) {
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'}, {"lpips-weights", required_argument, NULL, 'w'},
        {"store", no_argument, NULL, 's'}, {NULL, 0, NULL, 0}};
    /* optind = 0 makes glibc re-initialise getopt, since other subcommands may have parsed in this process;
     * the leading ":" in the option string makes a missing value return ':' rather than '?'. */
    optind = 0;
    opterr = 0;
    const char *weights_dir = NULL;
    int c, store = 0;
    while ((c = getopt_long(argc, argv, "+:h", opts, NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); return 0;
        case 'w': weights_dir = optarg; break;
        case 's': store = 1; break;
        case ':': return cli_usage_error("metrics", "option '%s' needs a value", argv[optind - 1]);
        default:
            /* optopt names an unknown short option; for an unknown long one it is 0 and argv holds it. */
            if (optopt) return cli_usage_error("metrics", "unknown option '-%c'", optopt);
            return cli_usage_error("metrics", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 2)
        return cli_usage_error("metrics", "expected two files A and B, got %d", argc - optind);
    const char *path_a = argv[optind], *path_b = argv[optind + 1];
    int records = has_suffix(path_a, ".h5") && has_suffix(path_b, ".h5");
    if (!records && !(has_suffix(path_a, ".png") && has_suffix(path_b, ".png")))
        return cli_usage_error("metrics", "A and B must both be run records (.h5) or both PNG images (.png): '%s', '%s'",
                               path_a, path_b);

    if (store && !records) return cli_usage_error("metrics", "--store needs two run records (.h5)");

    Error err = {{0}};
    Input a, b;
    memset(&b, 0, sizeof b);
    int rc = 1;
    LpipsNet *net = NULL;
    RunMetrics m = {0};
    if (input_load(&a, path_a, records, &err) != 0 || input_load(&b, path_b, records, &err) != 0) {
        fprintf(stderr, "cachebench metrics: %s\n", err.msg);
        goto done;
    }
    char size_a[96], size_b[96];
    describe(size_a, sizeof size_a, &a, records);
    describe(size_b, sizeof size_b, &b, records);
    if (a.frames != b.frames || a.height != b.height || a.width != b.width) {
        fprintf(stderr, "cachebench metrics: cannot compare %s (%s) with %s (%s): sizes differ\n", path_a, size_a,
                path_b, size_b);
        goto done;
    }

    /* B must be a run of A's trajectory with another strategy: otherwise the numbers compare different videos. */
    if (records) {
        char why_not[600];
        if (!same_trajectory(&a.record, &b.record, why_not, sizeof why_not)) {
            if (store) {
                fprintf(stderr, "cachebench metrics: %s is not a baseline of %s: %s; nothing stored\n", path_a,
                        path_b, why_not);
                goto done;
            }
            fprintf(stderr, "cachebench metrics: warning: %s and %s differ: %s\n", path_a, path_b, why_not);
        }
    }

    /* LPIPS: the run-time folder when given (a failure there is an error: it was asked for), else the embedded
     * weights when the build had them, else reported unavailable. */
    const char *why = NULL;
    if (weights_dir) {
        if (lpips_create_from_dir(&net, weights_dir, &err) != 0) {
            fprintf(stderr, "cachebench metrics: --lpips-weights: %s\n", err.msg);
            goto done;
        }
    } else if (lpips_available()) {
        if (lpips_create(&net, &err) != 0) {
            fprintf(stderr, "cachebench metrics: %s\n", err.msg);
            goto done;
        }
    } else {
        why = lpips_unavailable_reason();
    }
    if (net && !lpips_fits(a.height, a.width)) {
        lpips_destroy(net);
        net = NULL;
        why = "frames smaller than the 31x31 that AlexNet needs";
    }

    if (metrics_compare_videos(a.video, b.video, a.frames, a.height, a.width, net, &m, &err) != 0) {
        fprintf(stderr, "cachebench metrics: %s vs %s: %s\n", path_a, path_b, err.msg);
        goto done;
    }
    printf("A: %s (%s)\nB: %s (%s)\n", path_a, size_a, path_b, size_b);
    if (records) {
        printf("%-6s %10s %10s %10s\n", "frame", "psnr_db", "ssim", "lpips");
        for (int f = 0; f < m.frames; f++) {
            printf("%-6d %10.4f %10.6f ", f, m.psnr[f], m.ssim[f]);
            if (net) printf("%10.6f", m.lpips[f]);
            else printf("%10s", "-");
            printf("\n");
        }
        printf("video: PSNR over all pixels, SSIM and LPIPS means over frames\n");
    }
    printf("psnr_db %.4f\nssim    %.6f\nlpips   ", m.psnr_mean, m.ssim_mean);
    print_lpips(m.lpips_mean, net, why);
    printf("\n");
    if (store) {
        snprintf(m.baseline, sizeof m.baseline, "%s", path_a);
        if (record_write_metrics(path_b, &m, &err) != 0) {
            fprintf(stderr, "cachebench metrics: %s\n", err.msg);
            goto done;
        }
        printf("stored in %s (/metrics, baseline %s)\n", path_b, path_a);
    }
    rc = 0;

done:
    run_metrics_free(&m);
    lpips_destroy(net);
    input_free(&a);
    input_free(&b);
    return rc;
}
