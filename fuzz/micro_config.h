/* The model config of fuzz_dit_load (and of the seed checkpoints fuzz/make_corpus.c writes for it): the tiny model's
 * structure (every tensor kind, a word vocabulary, two layers) at sizes where a whole checkpoint is a few KB, so
 * mutations reach the loader's shape, dtype and finiteness checks instead of drowning in data bytes. */
#ifndef CACHEBENCH_FUZZ_MICRO_CONFIG_H
#define CACHEBENCH_FUZZ_MICRO_CONFIG_H

#include "models/dit/config.h"

static const DitConfig FUZZ_MICRO_CONFIG = {
    .name = "micro", .in_dim = 3, .out_dim = 3, .patch_t = 1, .patch_h = 2, .patch_w = 2,
    .dim = 8, .ffn_dim = 16, .num_heads = 2, .num_layers = 2, .freq_dim = 8,
    .text_dim = 4, .text_len = 3, .vocab_size = 5, .eps = 1e-6f, .rope_theta = 10000.0f,
    .frames = 1, .height = 2, .width = 2, .default_steps = 2, .default_shift = 3.0f, .default_guidance = 5.0f};

#endif
