/* Error reporting for library code: functions return 0 on success or -1 after filling an Error.
 * Library code never prints and never exits; the CLI prints err.msg and chooses the exit code. */
#ifndef CACHEBENCH_ERROR_H
#define CACHEBENCH_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" { /* usable from the CUDA engine (models/dit/engine_cuda.cu) */
#endif

typedef struct {
    char msg[1024];
} Error;

/* Formats the message into err (if non-NULL) and returns -1, so callers can `return error_set(...)`. */
int error_set(Error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prepends "context: " to an existing message (e.g. the file name) and returns -1. */
int error_prefix(Error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif

#endif
