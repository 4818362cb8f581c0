/* build/cachebench: subcommand dispatch. */
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
};

static void usage(FILE *out) {
    fprintf(out, "Usage: cachebench COMMAND [options]   (cachebench COMMAND --help for details)\n\nCommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(out, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
}

int main(int argc, char **argv) {
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
