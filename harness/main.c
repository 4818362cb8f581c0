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
    {"compare", cmd_compare, "two strategies pair by pair at matched speed-up, with bootstrap intervals"},
    {"check", cmd_check, "regression gate: a sweep against a baseline file (exit 0 pass, 1 fail)"},
    {"new-strategy", cmd_new_strategy, "write NAME.c, a commented strategy plug-in to start from"},
    {"strategies", cmd_strategies, "list every caching strategy with its parameters, ranges and defaults"},
};

/* Levenshtein distance, for "did you mean": command names are short, so the quadratic table is nothing. */
static size_t edit_distance(const char *a, const char *b) {
    size_t n = strlen(a), m = strlen(b);
    if (n > 63 || m > 63) return 64;
    size_t d[64][64];
    for (size_t i = 0; i <= n; i++) d[i][0] = i;
    for (size_t j = 0; j <= m; j++) d[0][j] = j;
    for (size_t i = 1; i <= n; i++)
        for (size_t j = 1; j <= m; j++) {
            size_t sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
            d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    return d[n][m];
}

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
    const char *nearest = NULL;
    size_t best = 3; /* more than two edits away is not a typo */
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++) {
        size_t d = edit_distance(argv[1], COMMANDS[i].name);
        if (d < best) best = d, nearest = COMMANDS[i].name;
    }
    if (nearest) {
        fprintf(stderr, "cachebench: unknown command '%s'; did you mean '%s'?\n", argv[1], nearest);
        return 2;
    }
    fprintf(stderr, "cachebench: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
