#include "models/dit/config.h"

#include <math.h>
#include <stdio.h>
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

int dit_config_compare(const DitConfig *a, const DitConfig *b, const char **field, char *a_val, char *b_val,
                       size_t cap) {
    const struct { const char *name; int a, b; } ints[] = {
        {"dim", a->dim, b->dim},                   {"num_heads", a->num_heads, b->num_heads},
        {"num_layers", a->num_layers, b->num_layers}, {"ffn_dim", a->ffn_dim, b->ffn_dim},
        {"in_dim", a->in_dim, b->in_dim},          {"out_dim", a->out_dim, b->out_dim},
        {"patch_size[0]", a->patch_t, b->patch_t}, {"patch_size[1]", a->patch_h, b->patch_h},
        {"patch_size[2]", a->patch_w, b->patch_w}, {"freq_dim", a->freq_dim, b->freq_dim},
        {"text_dim", a->text_dim, b->text_dim},    {"text_len", a->text_len, b->text_len},
        {"vocab_size", a->vocab_size, b->vocab_size},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (ints[i].a != ints[i].b) {
            *field = ints[i].name;
            snprintf(a_val, cap, "%d", ints[i].a);
            snprintf(b_val, cap, "%d", ints[i].b);
            return -1;
        }
    /* eps arrives as a JSON double and is stored as float: equal within float rounding. */
    if (fabsf(a->eps - b->eps) > 1e-6f * fmaxf(fabsf(a->eps), fabsf(b->eps))) {
        *field = "eps";
        snprintf(a_val, cap, "%g", (double)a->eps);
        snprintf(b_val, cap, "%g", (double)b->eps);
        return -1;
    }
    return 0;
}

const DitConfig *dit_config_matching(const DitConfig *c) {
    const char *field;
    char x[32], y[32];
    for (size_t i = 0; i < sizeof CONFIGS / sizeof CONFIGS[0]; i++)
        if (dit_config_compare(c, &CONFIGS[i], &field, x, y, sizeof x) == 0) return &CONFIGS[i];
    return NULL;
}
