/* TeaCache coefficient files (strategies/teacache.c), shared with the calibrate command.
 *
 * Format: text; lines whose first non-blank character is '#' are comments; the other lines hold exactly 5 numbers
 * in all, separated by blanks, highest degree first: poly(s) = c[0] s^4 + c[1] s^3 + c[2] s^2 + c[3] s + c[4]. */
#ifndef CACHEBENCH_TEACACHE_H
#define CACHEBENCH_TEACACHE_H

#include "core/error.h"

/* Reads the 5 coefficients of path; an error names the file (and line) and says what is wrong. */
int teacache_read_coeffs(const char *path, double coeffs[5], Error *err);
/* Writes c as a coefficient file, comment (may be NULL, may span lines) first as '#' lines. The numbers are
 * written so that they read back exactly. The file is written beside path and renamed into place, so a failed
 * write never leaves a truncated coefficient file. */
int teacache_write_coeffs(const char *path, const double c[5], const char *comment, Error *err);

#endif
