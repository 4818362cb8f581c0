/* cachebench export: the frames of a run record as PNG files. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "harness/cli.h"
#include "harness/sweep.h"
#include "metrics/image.h"
#include "results/record.h"
#include "results/strip.h"

static void export_usage(FILE *out) {
    fprintf(out,
            "Usage: cachebench export RUN.h5 --png DIR\n"
            "Writes the final video of a run record as DIR/frame_000.png, frame_001.png, ... (RGB, one file per\n"
            "frame) and DIR/strip.png (all frames side by side). DIR is created if missing.\n\n"
            "  --png DIR    output folder (required)\n"
            "  --help       this text\n"
            "Exit status: 0 done, 1 error, 2 bad usage.\n");
}

int cmd_export(int argc, char **argv) {
    enum { OPT_PNG = 1000, OPT_HELP };
    static const struct option options[] = {
        {"png", required_argument, 0, OPT_PNG}, {"help", no_argument, 0, OPT_HELP}, {0, 0, 0, 0}};
    const char *dir = NULL;
    int opt;
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case OPT_PNG: dir = optarg; break;
        case OPT_HELP: export_usage(stdout); return 0;
        default: return cli_usage_error("export", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 1) return cli_usage_error("export", "expected one run file");
    if (!dir) return cli_usage_error("export", "--png DIR is required");
    const char *path = argv[optind];
    Error err = {{0}};
    RunRecord r;
    if (record_read(path, &r, &err)) {
        fprintf(stderr, "cachebench export: %s\n", err.msg);
        return 1;
    }
    int rc = 0;
    if (sweep_make_dirs(dir, &err)) {
        fprintf(stderr, "cachebench export: %s\n", err.msg);
        record_free(&r);
        return 1;
    }
    if (r.failed)
        fprintf(stderr, "cachebench export: %s: the run failed at step %d; its frames are blank\n", path,
                r.failed_step);
    const size_t frame_bytes = (size_t)r.height * r.width * 3;
    char out[4096 + 32];
    for (int f = 0; f < r.frames && !rc; f++) {
        snprintf(out, sizeof out, "%s/frame_%03d.png", dir, f);
        rc = image_write_png(out, r.video + (size_t)f * frame_bytes, r.height, r.width, &err);
    }
    if (!rc) {
        const uint8_t *videos[1] = {r.video};
        Image strip;
        rc = strip_compose(videos, 1, r.frames, r.height, r.width, 1, 0, &strip, &err);
        if (!rc) {
            snprintf(out, sizeof out, "%s/strip.png", dir);
            rc = image_write_png(out, strip.rgb, strip.height, strip.width, &err);
            image_free(&strip);
        }
    }
    if (rc) fprintf(stderr, "cachebench export: %s\n", err.msg);
    else printf("%s: %d frames of %dx%d -> %s/frame_000.png ... frame_%03d.png, %s/strip.png\n", path, r.frames,
                r.width, r.height, dir, r.frames - 1, dir);
    record_free(&r);
    return rc ? 1 : 0;
}
