/* `cachebench info FILE.h5 [FILE2.h5 ...]`: human-readable summary of run records (results/record.h). */
#include <getopt.h>
#include <stdio.h>

#include "harness/cli.h"
#include "results/record.h"

static void usage(FILE *out) {
    fprintf(out,
            "Usage: cachebench info FILE.h5 [FILE2.h5 ...]\n"
            "Prints a summary of each run record: run id, strategy, model, prompt, seed, sampling settings,\n"
            "backend, status, totals (time, model calls, hit rate, FLOP speed-up), the compute/reuse decision\n"
            "of every step per branch (C computed, R reused) and the metrics against the baseline if present.\n"
            "\n"
            "Options:\n"
            "  -h, --help   show this help\n"
            "\n"
            "Exit status: 0 all files read, 1 a file could not be read (the others are still printed), 2 usage error.\n");
}

int cmd_info(int argc, char **argv) {
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    /* optind = 0 makes glibc re-initialise getopt, since other subcommands may have parsed in this process. */
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); return 0;
        default:
            /* optopt names an unknown short option; for an unknown long one it is 0 and argv holds it. */
            if (optopt) return cli_usage_error("info", "unknown option '-%c'", optopt);
            return cli_usage_error("info", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc) return cli_usage_error("info", "no record file given");
    int rc = 0;
    for (int i = optind; i < argc; i++) {
        Error err = {{0}};
        if (i > optind) fputc('\n', stdout);
        if (record_print_info(argv[i], stdout, &err)) {
            fflush(stdout);
            fprintf(stderr, "cachebench info: %s\n", err.msg);
            rc = 1;
        }
    }
    return rc;
}
