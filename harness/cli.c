#include "harness/cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* Both parsers report through cli_usage_error, so a bad number gets the same hint to --help as any usage error. */
int cli_parse_int(const char *cmd, const char *flag, const char *text, long lo, long hi, long *out) {
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end != '\0') {
        cli_usage_error(cmd, "invalid value '%s' for %s: not an integer", text, flag);
        return -1;
    }
    if (v < lo || v > hi) {
        cli_usage_error(cmd, "invalid value '%s' for %s: must be in [%ld, %ld]", text, flag, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_double(const char *cmd, const char *flag, const char *text, double lo, double hi, double *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end != '\0' || !isfinite(v)) {
        cli_usage_error(cmd, "invalid value '%s' for %s: not a finite number", text, flag);
        return -1;
    }
    if (v < lo || v > hi) {
        cli_usage_error(cmd, "invalid value '%s' for %s: must be in [%g, %g]", text, flag, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    fprintf(stderr, "cachebench %s: ", cmd);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'cachebench %s --help'.\n", cmd);
    return 2;
}
