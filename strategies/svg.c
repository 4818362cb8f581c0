/* svg — Sparse VideoGen attention (Xi et al. 2025, "Sparse VideoGen: Accelerating Video Diffusion Transformers
 * with Spatial-Temporal Sparsity", arXiv:2502.01776; code: svg-project/Sparse-VideoGen, its Wan2.1 path).
 *
 * An attention-only strategy: every step is computed (no model_begin), and for each layer it fills the attention
 * plan. With S = num_steps, N = num_layers:
 *     step < dense_steps · S  or  layer < dense_layers · N  or  sparsity = 0:   dense attention
 *     otherwise: every head sparse, classified by the backend at this very call (profile_rows = rows): for the
 *                `rows` evenly strided query rows it compares exact attention with the spatial and the temporal
 *                pattern and keeps the one with the lower MSE (per layer, branch and head, at every sparse call)
 * The patterns, the band width and the profiler are in models/sparse_attention.h:
 *     query i attends key j  iff  |pos(i) - pos(j)| <= w  or  j is in the first frame,
 *     pos = frame-major index (spatial) or token-major index p·F + f (temporal),
 *     w = ceil(L · (1 - sqrt(sparsity)))   (the band masks a fraction `sparsity` of the L² pairs)
 * FLOPs saved are those of the skipped tiles (the backend reports what it computed, profiling included).
 *
 * Parameters (spec "svg:sparsity=0.75,dense_steps=0.2,dense_layers=0.03,rows=64"):
 *     sparsity       fraction of (query, key) pairs the band masks, in [0, 1]          default 0.75
 *     dense_steps    fraction of the steps, from the start, run dense, in [0, 1]      default 0.2
 *     dense_layers   fraction of the layers, from layer 0, run dense, in [0, 1]       default 0.03 (layer 0
 *                    of any model up to 33 layers; 0 runs every layer sparse)
 *     rows           query rows sampled to classify each head, >= 1                   default 64
 * Correspondence with the reference's flags: its --sparsity is the fraction KEPT (0.25 for Wan2.1 = our 0.75);
 * --num_sampled_rows 64 = rows; --first_layers_fp 0.025 ~ dense_layers (it keeps layer 0 dense); its
 * --first_times_fp is a timestep threshold, where dense_steps counts sampling steps (DESIGN §4).
 * Counted as: dense when step < ceil(dense_steps · S) (0.2 of 50 steps: steps 0-9; of 6 steps: 0-1), and likewise
 * for layers; the comparison tolerates rounding in the product (0.3 · 10 is 3, not 3.0000000000000004). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "strategies/strategy.h"

typedef struct {
    double sparsity;
    int rows;
    int dense_steps, dense_layers; /* counts: steps [0, dense_steps) and layers [0, dense_layers) run dense */
} SvgState;

static void svg_plan(Strategy *s, const StepInfo *st, int layer, AttentionPlan *plan) {
    const SvgState *S = s->state;
    /* Every field the backend reads is written at every call: the runner resets only pattern and band_tokens. */
    plan->sparsity = S->sparsity;
    plan->band_tokens = 0;
    plan->profile_rows = 0;
    if (st->step < S->dense_steps || layer < S->dense_layers || !(S->sparsity > 0.0)) {
        for (int h = 0; h < plan->num_heads; h++) plan->pattern[h] = ATTN_DENSE;
        return;
    }
    /* Placeholders: the backend's profiler makes each head spatial or temporal. */
    for (int h = 0; h < plan->num_heads; h++) plan->pattern[h] = ATTN_SPATIAL;
    plan->profile_rows = S->rows;
}

static void svg_destroy(Strategy *s) {
    free(s->state);
    s->state = NULL;
}

/* First indices not run dense: ceil(fraction · count), with slack for rounding in the product. */
static int leading_count(double fraction, int count) {
    const double n = ceil(fraction * count - 1e-9);
    return n < 0 ? 0 : n > count ? count : (int)n;
}

static const char *const svg_params[] = {"sparsity", "dense_steps", "dense_layers", "rows", NULL};

static int svg_create(Strategy *s, const StrategyParams *p, const StrategyEnv *env, Error *err) {
    double sparsity, dense_steps, dense_layers;
    int rows;
    if (strategy_param_double(p, "sparsity", 0.75, 0.0, 1.0, &sparsity, err) ||
        strategy_param_double(p, "dense_steps", 0.2, 0.0, 1.0, &dense_steps, err) ||
        strategy_param_double(p, "dense_layers", 0.03, 0.0, 1.0, &dense_layers, err) ||
        strategy_param_int(p, "rows", 64, 1, 1 << 20, &rows, err))
        return -1;
    SvgState *S = calloc(1, sizeof *S);
    if (!S) return error_set(err, "svg: out of memory");
    S->sparsity = sparsity;
    S->rows = rows;
    S->dense_steps = leading_count(dense_steps, env->num_steps);
    S->dense_layers = leading_count(dense_layers, env->num_layers);
    s->state = S;
    s->destroy = svg_destroy;
    s->attention_plan = svg_plan;
    char a[32], b[32], c[32];
    strategy_format_double(sparsity, a, sizeof a);
    strategy_format_double(dense_steps, b, sizeof b);
    strategy_format_double(dense_layers, c, sizeof c);
    snprintf(s->spec, sizeof s->spec, "svg:sparsity=%s,dense_steps=%s,dense_layers=%s,rows=%d", a, b, c, rows);
    return 0;
}

STRATEGY_REGISTER(strategy_svg_info, 40) = {
    .name = "svg",
    .summary = "Sparse VideoGen: per-head spatial/temporal block-sparse attention, heads classified online",
    .params_help = "sparsity      fraction of key blocks left out by a sparse head, 0..1 (default 0.75)\n"
                   "dense_steps   leading fraction of steps run dense, 0..1 (default 0.2)\n"
                   "dense_layers  leading fraction of layers run dense, 0..1 (default 0.03)\n"
                   "rows          query rows sampled to classify a head, >= 1 (default 64)",
    .param_names = svg_params,
    .create = svg_create,
};
