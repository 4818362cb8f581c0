#include "models/dit/config.h"

#include <string.h>

/* tiny: the embedded default model (DESIGN §6): pixel space RGB, 8 frames of 64x64, 8x8 patches
 * -> 8*8*8 = 512 tokens, small enough that a 50-step CFG sample runs in seconds on two cores.
 * dim must be at least the patch vector (3*8*8 = 192): the head maps dim -> 192 values per token, so with a
 * smaller dim its output has rank < 192 and the noise outside that range is never removed by sampling. Its head
 * predicts x0 rather than v (config.h DitPrediction; training/tiny/TRAINING.md). */
static const DitConfig CONFIGS[] = {
    {.name = "tiny", .in_dim = 3, .out_dim = 3, .patch_t = 1, .patch_h = 8, .patch_w = 8,
     .dim = 192, .ffn_dim = 768, .num_heads = 6, .num_layers = 4, .freq_dim = 256,
     .text_dim = 64, .text_len = 16, .vocab_size = 18, .eps = 1e-6f, .rope_theta = 10000.0f,
     .prediction = DIT_PREDICT_X0, .sigma_min = 0.05f,
     .frames = 8, .height = 64, .width = 64,
     .default_steps = 50, .default_shift = 3.0f, .default_guidance = 3.0f, .default_solver = "euler"},
    /* Wan2.1 T2V 1.3B: latent 16 channels; 480p 81 frames is a 21x60x104 latent. */
    {.name = "wan2.1-t2v-1.3b", .in_dim = 16, .out_dim = 16, .patch_t = 1, .patch_h = 2, .patch_w = 2,
     .dim = 1536, .ffn_dim = 8960, .num_heads = 12, .num_layers = 30, .freq_dim = 256,
     .text_dim = 4096, .text_len = 512, .vocab_size = 0, .eps = 1e-6f, .rope_theta = 10000.0f,
     .frames = 21, .height = 60, .width = 104,
     .default_steps = 50, .default_shift = 5.0f, .default_guidance = 5.0f, .default_solver = "unipc"},
    {.name = "wan2.1-t2v-14b", .in_dim = 16, .out_dim = 16, .patch_t = 1, .patch_h = 2, .patch_w = 2,
     .dim = 5120, .ffn_dim = 13824, .num_heads = 40, .num_layers = 40, .freq_dim = 256,
     .text_dim = 4096, .text_len = 512, .vocab_size = 0, .eps = 1e-6f, .rope_theta = 10000.0f,
     .frames = 21, .height = 60, .width = 104,
     .default_steps = 50, .default_shift = 5.0f, .default_guidance = 5.0f, .default_solver = "unipc"},
};

const DitConfig *dit_config_by_name(const char *name) {
    for (size_t i = 0; i < sizeof CONFIGS / sizeof CONFIGS[0]; i++)
        if (strcmp(CONFIGS[i].name, name) == 0) return &CONFIGS[i];
    return NULL;
}

const char *dit_config_names(void) { return "tiny, wan2.1-t2v-1.3b, wan2.1-t2v-14b"; }
