#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int error_set(Error *err, const char *fmt, ...) {
    if (!err) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

int error_prefix(Error *err, const char *fmt, ...) {
    if (!err) return -1;
    char prefix[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[sizeof err->msg];
    memcpy(old, err->msg, sizeof old);
    /* "prefix: old", cut at the buffer end. Copied by hand: snprintf("%s: %s") into a buffer of old's size trips
     * -Wformat-truncation in the -O1 sanitizer build. The prefix part always fits (< 512 + 2 bytes). */
    size_t n = (size_t)snprintf(err->msg, sizeof err->msg, "%s: ", prefix);
    size_t len = strnlen(old, sizeof err->msg - 1 - n);
    memcpy(err->msg + n, old, len);
    err->msg[n + len] = '\0';
    return -1;
}
