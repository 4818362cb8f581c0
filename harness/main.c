/* build/cachebench: subcommand dispatch. */
#include <hdf5.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "harness/cli.h"

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} Command;

static const Command COMMANDS[] = {
    {"run", cmd_run, "run one trajectory with one strategy and write its HDF5 run record"},
    {"info", cmd_info, "print a readable summary of run records"},
    {"calibrate", cmd_calibrate, "fit TeaCache's rescaling polynomial for a model from full-inference traces"},
    {"metrics", cmd_metrics, "PSNR, SSIM and LPIPS between two runs or two PNG images"},
    {"sweep", cmd_sweep, "run a grid of strategies x settings x prompts x seeds (resumable), then summary and plots"},
    {"status", cmd_status, "where a sweep run by workers stands: runs done, claimed, left, per worker, time left"},
    {"plot", cmd_plot, "redraw a sweep's summary.tsv, plots and report.md from its run files"},
    {"export", cmd_export, "write the frames of a run record as PNG files"},
    {"encode", cmd_encode, "turn prompt text into umT5 contexts (Wan2.1's text encoder) in a .safetensors file"},
    {"decode", cmd_decode, "decode latents to RGB video with the Wan2.1 VAE decoder"},
};

static void usage(FILE *out) {
    fprintf(out, "Usage: cachebench COMMAND [options]   (cachebench COMMAND --help for details)\n\nCommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(out, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
}

int main(int argc, char **argv) {
    /* A file-size limit (ulimit -f) must end a write the way a full disk does, with an error (EFBIG) that the writer
     * reports and cleans up after, not by killing the process halfway through a file and leaving its .tmp behind. */
    signal(SIGXFSZ, SIG_IGN);
    /* No HDF5 exit handler: every file we open we also close, and the handler crashes (SIGSEGV in H5F__close_cb)
     * on a file whose H5Fclose failed for want of space, turning a reported write error into a crash. The library
     * itself stays usable after such a failure: later records are written and read normally. */
    H5dont_atexit();
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (strcmp(argv[1], COMMANDS[i].name) == 0) return COMMANDS[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "cachebench: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
