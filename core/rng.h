/* Philox4x32-10 counter-based RNG (Salmon et al., SC'11), keyed by the seed, so the CPU and CUDA backends draw
 * identical noise: element i of a tensor depends only on (seed, stream, i), never on the order of generation. */
#ifndef CACHEBENCH_RNG_H
#define CACHEBENCH_RNG_H

#include <stddef.h>
#include <stdint.h>

/* One Philox4x32-10 block: 4 words of output for counter ctr[4] and key key[2]. */
void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* Standard normal values: out[i] for i in [0,n) from counter block i/4 (counter words = {i/4, stream lo, stream hi, 0})
 * with Box-Muller on the block's 4 words (2 pairs). */
void philox_normal(float *out, size_t n, uint64_t seed, uint64_t stream);

/* Uniform in [0,1) with 24-bit resolution, same counter layout. */
void philox_uniform(float *out, size_t n, uint64_t seed, uint64_t stream);

#endif
