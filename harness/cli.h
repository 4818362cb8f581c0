/* Subcommands of build/cachebench. Each takes argv with argv[0] = the subcommand name, parses its own flags
 * (getopt_long; --help prints usage to stdout and returns 0) and returns the process exit code:
 * 0 success, 1 runtime failure (message on stderr naming the file and the problem), 2 usage error
 * (unknown flag, bad value: message plus a hint to --help). */
#ifndef CACHEBENCH_CLI_H
#define CACHEBENCH_CLI_H

#include <stddef.h>

int cmd_run(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_metrics(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
int cmd_sweep(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_encode(int argc, char **argv);
int cmd_decode(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_new_strategy(int argc, char **argv);
int cmd_strategies(int argc, char **argv);
int cmd_status(int argc, char **argv);

/* Shared parsing helpers (harness/cli.c): strict number parsing, the whole string must be a number in [lo, hi].
 * On failure print "cachebench <cmd>: invalid value 'v' for --flag: ..." and the hint of cli_usage_error to stderr
 * and return -1. */
int cli_parse_int(const char *cmd, const char *flag, const char *text, long lo, long hi, long *out);
int cli_parse_double(const char *cmd, const char *flag, const char *text, double lo, double hi, double *out);
/* Wraps a ", "-separated list at the commas into lines of at most width characters, every line after the first
 * indented by indent spaces, into buf (for --help texts). */
void cli_wrap_list(const char *list, int indent, int width, char *buf, size_t cap);
/* Prints "cachebench <cmd>: <message>\nTry 'cachebench <cmd> --help'.\n" to stderr and returns 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
