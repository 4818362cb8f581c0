#include "harness/cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void cli_wrap_list(const char *list, int indent, int width, char *buf, size_t cap) {
    size_t used = 0;
    int column = indent, first = 1;
    if (!cap) return;
    buf[0] = '\0';
    for (const char *p = list; *p && used + 1 < cap;) {
        const char *comma = strstr(p, ", ");
        const int len = comma ? (int)(comma - p) + 1 : (int)strlen(p); /* the item and its comma */
        int n;
        if (!first && column + 1 + len > width) {
            n = snprintf(buf + used, cap - used, "\n%*s%.*s", indent, "", len, p);
            column = indent + len;
        } else {
            n = snprintf(buf + used, cap - used, "%s%.*s", first ? "" : " ", len, p);
            column += (first ? 0 : 1) + len;
        }
        used = n < 0 || used + (size_t)n >= cap ? cap - 1 : used + (size_t)n;
        first = 0;
        p += comma ? len + 1 : len;
    }
}
