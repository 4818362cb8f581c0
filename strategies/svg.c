/* svg — Sparse VideoGen attention (Xi et al. 2025, "Sparse VideoGen: Accelerating Video Diffusion Transformers
 * with Spatial-Temporal Sparsity", arXiv:2502.01776; code: svg-project/Sparse-VideoGen, SVG1, its Wan2.1 path).
 *
 * An attention-only strategy: every step is computed (no model_begin), and for each layer it fills the attention
 * plan: dense during the warm-up (below), otherwise every head sparse, classified by the backend at this very call
 * (profile_rows = rows, from rows drawn with svg_call_seed(row_seed, step, branch, layer)): it compares exact
 * attention with the two fixed profiling masks on the sampled rows and keeps the pattern with the lower MSE (per
 * layer, branch and head, at every sparse call). Masks, band, profiler and FLOPs: models/sparse_attention.h.
 *
 * The dense warm-up follows a named official version (svg_version), each with its own rule and defaults:
 *   5efea72 (the last SVG1-only commit; wan_inference.py, scripts/wan_t2v_inference.sh, svg/models/wan/attention.py):
 *       dense when layer < N · dense_layers (a real comparison)  or  timestep > 1000 · (1 - dense_steps)
 *       defaults: sparsity 0.75 (--sparsity 0.25 kept), dense_steps 0.075 (--first_times_fp, T2V), dense_layers
 *       0.025 (--first_layers_fp), rows 64 (--num_sampled_rows)
 *   head (5ce7b01; wan_t2v_inference.py, scripts/wan/wan_t2v_720p_svg.sh):
 *       dense when step < floor(dense_steps · S)  or  layer < floor(dense_layers · N)
 *       defaults: sparsity 0.7 (--sparsity 0.3 kept), dense_steps 0.2, dense_layers 0.03, rows 64
 * S = num_steps, N = num_layers, timestep = the model timestep of the step (sigma · 1000). sparsity = 0 is dense.
 *
 * Parameters (spec "svg:svg_version=5efea72,sparsity=0.75,dense_steps=0.075,dense_layers=0.025,rows=64,row_seed=0,
 * band=official"):
 *     svg_version    5efea72 | head                                                   default 5efea72
 *     sparsity       fraction of (query, key) pairs skipped (1 - the official --sparsity), in [0, 1]
 *     dense_steps    --first_times_fp, in [0, 1]
 *     dense_layers   --first_layers_fp, in [0, 1]
 *     rows           query rows sampled to classify each head (--num_sampled_rows), >= 1
 *     row_seed       seed of the sampled rows, >= 0                                    default 0
 *     band           official (rounded up to 128 tokens, 128x128 blocks) | exact (ceil(L(1 - sqrt(s))), 64x16
 *                    tiles: not the official mask)                                     default official */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/sparse_attention.h"
#include "strategies/strategy.h"

typedef enum { SVG_5EFEA72 = 0, SVG_HEAD = 1 } SvgVersion;

typedef struct {
    SvgVersion version;
    double sparsity, dense_steps, dense_layers;
    int rows, row_seed, block;
    int num_steps, num_layers;
} SvgState;

/* The dense warm-up of the chosen official version. */
static int svg_dense(const SvgState *S, const StepInfo *st, int layer) {
    if (S->version == SVG_5EFEA72)
        return layer < S->num_layers * S->dense_layers || (double)st->timestep > 1000.0 * (1.0 - S->dense_steps);
    return st->step < (int)floor(S->dense_steps * S->num_steps) || layer < (int)floor(S->dense_layers * S->num_layers);
}

static void svg_plan(Strategy *s, const StepInfo *st, int layer, AttentionPlan *plan) {
    const SvgState *S = s->state;
    /* Every field the backend reads is written at every call: the runner resets only pattern and band_tokens. */
    plan->sparsity = S->sparsity;
    plan->block = S->block;
    plan->band_tokens = 0;
    plan->profile_rows = 0;
    plan->profile_seed = svg_call_seed((unsigned long long)S->row_seed, st->step, st->branch, layer);
    if (svg_dense(S, st, layer) || !(S->sparsity > 0.0)) {
        for (int h = 0; h < plan->num_heads; h++) plan->pattern[h] = ATTN_DENSE;
        return;
    }
    /* Placeholders: the backend's profiler makes each head spatial or temporal. */
    for (int h = 0; h < plan->num_heads; h++) plan->pattern[h] = ATTN_SPATIAL;
    plan->profile_rows = S->rows;
}

/* Its settings only: the head classification lives in the attention plan, per call. */
static size_t svg_bytes_held(const Strategy *s) {
    (void)s;
    return sizeof(SvgState);
}

static void svg_destroy(Strategy *s) {
    free(s->state);
    s->state = NULL;
}

static int svg_clone(Strategy *dst, const Strategy *src, Error *err) {
    SvgState *D = malloc(sizeof *D);
    if (!D) return error_set(err, "svg: out of memory");
    *D = *(const SvgState *)src->state;
    dst->state = D;
    return 0;
}

static const char *const svg_params[] = {"svg_version", "sparsity", "dense_steps", "dense_layers", "rows",
                                         "row_seed",    "band",     NULL};

static int svg_create(Strategy *s, const StrategyParams *p, const StrategyEnv *env, Error *err) {
    const char *version = strategy_param_text(p, "svg_version"), *band = strategy_param_text(p, "band");
    SvgState st = {.version = SVG_5EFEA72, .block = SVG_BLOCK, .num_steps = env->num_steps,
                   .num_layers = env->num_layers};
    if (version && strcmp(version, "head") == 0)
        st.version = SVG_HEAD;
    else if (version && strcmp(version, "5efea72") != 0)
        return error_set(err, "%s: svg_version must be 5efea72 or head, got %s", p->name, version);
    if (band && strcmp(band, "exact") == 0)
        st.block = 0;
    else if (band && strcmp(band, "official") != 0)
        return error_set(err, "%s: band must be official or exact, got %s", p->name, band);
    const int head = st.version == SVG_HEAD;
    if (strategy_param_double(p, "sparsity", head ? 0.7 : 0.75, 0.0, 1.0, &st.sparsity, err) ||
        strategy_param_double(p, "dense_steps", head ? 0.2 : 0.075, 0.0, 1.0, &st.dense_steps, err) ||
        strategy_param_double(p, "dense_layers", head ? 0.03 : 0.025, 0.0, 1.0, &st.dense_layers, err) ||
        strategy_param_int(p, "rows", 64, 1, 1 << 20, &st.rows, err) ||
        strategy_param_int(p, "row_seed", 0, 0, 2147483647, &st.row_seed, err))
        return -1;
    SvgState *S = malloc(sizeof *S);
    if (!S) return error_set(err, "%s: out of memory", p->name);
    *S = st;
    s->state = S;
    s->destroy = svg_destroy;
    s->bytes_held = svg_bytes_held;
    s->clone = svg_clone;
    s->attention_plan = svg_plan;
    char a[32], b[32], c[32];
    strategy_format_double(st.sparsity, a, sizeof a);
    strategy_format_double(st.dense_steps, b, sizeof b);
    strategy_format_double(st.dense_layers, c, sizeof c);
    snprintf(s->spec, sizeof s->spec,
             "svg:svg_version=%s,sparsity=%s,dense_steps=%s,dense_layers=%s,rows=%d,row_seed=%d,band=%s",
             head ? "head" : "5efea72", a, b, c, st.rows, st.row_seed, st.block ? "official" : "exact");
    return 0;
}

STRATEGY_REGISTER(strategy_svg_info, 40) = {
    .name = "svg",
    .summary = "Sparse VideoGen (SVG1): per-head spatial/temporal block-sparse attention, heads classified online",
    .params_help = "svg_version   5efea72 | head: the official version whose dense warm-up and defaults apply\n"
                   "              (default 5efea72)\n"
                   "sparsity      fraction of (query, key) pairs skipped, 0..1 (default 0.75; head: 0.7)\n"
                   "dense_steps   --first_times_fp, 0..1 (default 0.075; head: 0.2)\n"
                   "dense_layers  --first_layers_fp, 0..1 (default 0.025; head: 0.03)\n"
                   "rows          query rows sampled to classify a head, >= 1 (default 64)\n"
                   "row_seed      seed of the sampled rows, >= 0 (default 0)\n"
                   "band          official (128-token blocks) | exact (not the official mask) (default official)",
    .param_names = svg_params,
    .create = svg_create,
};
