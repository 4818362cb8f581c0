/* SHA-256 (FIPS 180-4), to identify weight files in run records. */
#ifndef CACHEBENCH_SHA256_H
#define CACHEBENCH_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct {
    uint32_t state[8];
    uint64_t bytes;
    uint8_t block[64];
    size_t fill;
} Sha256;

void sha256_init(Sha256 *h);
void sha256_update(Sha256 *h, const void *data, size_t n);
void sha256_final(Sha256 *h, uint8_t digest[32]);
/* Lower-case hex digest of a whole file into hex[65]. */
int sha256_file_hex(const char *path, char hex[65], Error *err);

#endif
