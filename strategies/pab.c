/* pab — Pyramid Attention Broadcast: inside a timestep window, reuse each attention module's last computed output
 * for R - 1 of every R calls (Zhao et al. 2024, "Real-Time Video Generation with Pyramid Attention Broadcast",
 * arXiv:2408.12588).
 *
 * Official code, the specification: NUS-HPC-AI-Lab/VideoSys videosys/core/pab/pab_mgr.py (`PABManager.
 * if_broadcast_spatial/temporal/cross`, read at a6f635d; strategies-2.md §4 cites 4cce477), its per-block use in
 * videosys/models/transformers/cogvideox_transformer_3d.py (`CogVideoXBlock.forward`: `attn_count`, `last_attn`,
 * read at ff918ec) and the per-pipeline `*PABConfig` defaults (videosys/pipelines/{cogvideox,latte,...}).
 *
 * Per module instance m (one per layer and attention kind k, and here per branch b) a counter c starts at 0.
 * At every call of m, with t the model timestep truncated to an integer as VideoSys's `int(timestep[0])`:
 *     broadcast = enabled_k  and  c mod R_k != 0  and  lo_k < t < hi_k          (and step >= warmup: ours)
 *     c = (c + 1) mod S                                    (S = num_steps: the counter restarts every video)
 *     broadcast: SUPPLY the module's last computed output (taken before its gate; the engine applies this
 *                step's gate and residual add), so the modules after it run on the updated tokens;
 *     otherwise: COMPUTE, with the output copied into the module's cache.
 * Kinds on Wan2.1 (models/backend.h ModulePlan): "self" = the full 3D self-attention (VideoSys's "spatial"; Wan
 * has no temporal attention), "cross" = the text cross-attention.
 *
 * Parameters (spec "pab:self_range=2,self_lo=100,self_hi=850,cross_range=6,cross_lo=100,cross_hi=850,warmup=0"):
 *     self_range   R >= 0, 0 or 1 = never broadcast (default 2: every VideoSys config's spatial range)
 *     self_lo, self_hi    timestep window, 0..1000 (default 100, 850: CogVideoXPABConfig, the official config for
 *                  full 3D attention; diffusers and Latte use 100..800)
 *     cross_range, cross_lo, cross_hi   the same for cross-attention (default 6 in 100..850: the pyramid's cross
 *                  range in every VideoSys config that has cross-attention; CogVideoX has none)
 *     warmup       steps always computed, >= 0 (default 0; ours, VideoSys has none)
 * There is no official PAB code or config for Wan2.1: the defaults combine CogVideoX's self-attention config with
 * the pyramid's cross range. "pab:cross_range=0" is CogVideoXPABConfig exactly; "self_hi=800,cross_range=0" the
 * diffusers example.
 *
 * Differences from the official code, and why:
 *   - One counter and cache per branch. VideoSys runs cond and uncond as one batch, so each module sees one call per
 *     step; the runner calls the model once per branch, so per-branch state gives each module the same one call per
 *     step and each branch its own output. diffusers' hook (src/diffusers/hooks/pyramid_attention_broadcast.py) keeps
 *     one state per module: with sequential CFG its counter advances twice per step and the uncond call can be
 *     handed the cond call's attention output.
 *   - The MLP broadcast (`if_skip_mlp`) is not implemented: its config names exact integer timesteps of the
 *     pipeline's own schedule (Latte: DDIM timesteps 720, 640, ... with block lists and skip counts), which a
 *     flow-matching schedule with a shift never hits; diffusers leaves it out too.
 *   - A broadcast with no cached output (none computed yet, or its buffer could not be allocated) computes instead.
 *
 * Trace: signal = the number of modules supplied in this call (0 .. 2 * num_layers), written after every layer;
 * computed = 1 (the call runs, partly on cached module outputs). Memory: one [L][dim] fp32 output per enabled kind,
 * layer and branch, allocated at its first computation (bytes_held). */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strategies/strategy.h"

enum { PAB_SELF = 0, PAB_CROSS = 1, PAB_KINDS = 2 };
static const BlockModule pab_module[PAB_KINDS] = {MODULE_SELF_ATTN, MODULE_CROSS_ATTN};
static const char *const pab_kind_name[PAB_KINDS] = {"self", "cross"};

typedef struct {
    int range;       /* broadcast for calls whose counter is not a multiple of it; < 2: never */
    double lo, hi;   /* open timestep window */
} PabKind;

typedef struct {
    PabKind kind[PAB_KINDS];
    int warmup, num_layers;
    size_t n;               /* floats in one module output, L * dim */
    int *count;             /* [BRANCH_COUNT][PAB_KINDS][num_layers] */
    float **cache;          /* same layout: the last computed output, NULL until the first one */
    int call_supplied;      /* modules supplied so far in the current call */
} PabState;

static size_t pab_slots(const PabState *P) { return (size_t)BRANCH_COUNT * PAB_KINDS * P->num_layers; }
static size_t pab_slot(const PabState *P, Branch b, int k, int layer) {
    return ((size_t)b * PAB_KINDS + k) * P->num_layers + layer;
}

static void pab_module_plan(Strategy *s, const StepInfo *st, int layer, ModulePlan *plan) {
    PabState *P = s->state;
    if (layer == 0) P->call_supplied = 0;
    if (layer < 0 || layer >= P->num_layers) return;
    const int t = (int)st->timestep; /* VideoSys: int(timestep[0]), truncation */
    for (int k = 0; k < PAB_KINDS; k++) {
        const PabKind *K = &P->kind[k];
        if (K->range < 2) continue;
        const size_t i = pab_slot(P, st->branch, k, layer);
        const int c = P->count[i];
        const int broadcast = st->step >= P->warmup && c % K->range != 0 && K->lo < t && t < K->hi;
        P->count[i] = st->num_steps > 0 ? (c + 1) % st->num_steps : c + 1;
        const BlockModule m = pab_module[k];
        if (broadcast && P->cache[i]) {
            plan->mode[m] = MODULE_SUPPLY;
            plan->out[m] = P->cache[i];
            P->call_supplied++;
            continue;
        }
        /* Compute and keep the output. A buffer is handed out only for a computed module, which the engine always
         * fills: a non-NULL cache therefore always holds a computed output. */
        if (!P->cache[i]) P->cache[i] = s->ops->alloc(s->ops->ctx, P->n);
        plan->out[m] = P->cache[i];
    }
}

static int pab_layer_end(Strategy *s, const StepInfo *st, int layer, float *tokens, size_t n, BranchTrace *trace) {
    (void)st, (void)tokens, (void)n;
    const PabState *P = s->state;
    trace->signal = (float)P->call_supplied;
    return layer + 1;
}

static size_t pab_bytes_held(const Strategy *s) {
    const PabState *P = s->state;
    size_t held = 0;
    for (size_t i = 0; i < pab_slots(P); i++)
        if (P->cache[i]) held += P->n * sizeof(float);
    return held;
}

static void pab_free(const VecOps *ops, PabState *P) {
    if (!P) return;
    if (P->cache)
        for (size_t i = 0; i < pab_slots(P); i++)
            if (P->cache[i]) ops->release(ops->ctx, P->cache[i]);
    free(P->cache);
    free(P->count);
    free(P);
}

static void pab_destroy(Strategy *s) {
    pab_free(s->ops, s->state);
    s->state = NULL;
}

/* A state with src's parameters, zero counters and no caches. */
static PabState *pab_state_new(const PabState *params) {
    PabState *P = malloc(sizeof *P);
    if (!P) return NULL;
    *P = *params;
    P->count = calloc(pab_slots(P), sizeof *P->count);
    P->cache = calloc(pab_slots(P), sizeof *P->cache);
    P->call_supplied = 0;
    if (P->count && P->cache) return P;
    free(P->count);
    free(P->cache);
    free(P);
    return NULL;
}

static int pab_clone(Strategy *dst, const Strategy *src, Error *err) {
    const PabState *S = src->state;
    const VecOps *ops = src->ops;
    PabState *P = pab_state_new(S);
    if (!P) return error_set(err, "pab: out of memory for a copy of the state");
    memcpy(P->count, S->count, pab_slots(S) * sizeof *P->count);
    P->call_supplied = S->call_supplied;
    int failed = 0;
    for (size_t i = 0; i < pab_slots(S); i++) {
        P->cache[i] = strategy_copy_buffer(ops, S->cache[i], S->n, &failed);
        if (failed) {
            pab_free(ops, P);
            return error_set(err, "pab: out of memory copying a cached module output (%zu floats)", S->n);
        }
    }
    dst->state = P;
    return 0;
}

static const char *const pab_params[] = {"self_range", "self_lo",  "self_hi", "cross_range",
                                         "cross_lo",   "cross_hi", "warmup",  NULL};

static int pab_create(Strategy *s, const StrategyParams *p, const StrategyEnv *env, Error *err) {
    static const int def_range[PAB_KINDS] = {2, 6};
    PabState params = {0};
    for (int k = 0; k < PAB_KINDS; k++) {
        char key[32];
        PabKind *K = &params.kind[k];
        snprintf(key, sizeof key, "%s_range", pab_kind_name[k]);
        if (strategy_param_int(p, key, def_range[k], 0, INT_MAX, &K->range, err)) return -1;
        snprintf(key, sizeof key, "%s_lo", pab_kind_name[k]);
        if (strategy_param_double(p, key, 100.0, 0.0, 1000.0, &K->lo, err)) return -1;
        snprintf(key, sizeof key, "%s_hi", pab_kind_name[k]);
        if (strategy_param_double(p, key, 850.0, 0.0, 1000.0, &K->hi, err)) return -1;
        if (K->lo > K->hi)
            return error_set(err, "pab: %s_lo (%g) must not exceed %s_hi (%g)", pab_kind_name[k], K->lo,
                             pab_kind_name[k], K->hi);
    }
    if (strategy_param_int(p, "warmup", 0, 0, INT_MAX, &params.warmup, err)) return -1;
    if (env->num_layers < 1 || env->tokens_numel == 0)
        return error_set(err, "pab: needs the model's layer count and block-stack size (got %d layers, %zu floats)",
                         env->num_layers, env->tokens_numel);
    params.num_layers = env->num_layers;
    params.n = env->tokens_numel;
    PabState *P = pab_state_new(&params);
    if (!P) return error_set(err, "pab: out of memory");
    s->state = P;
    s->destroy = pab_destroy;
    s->module_plan = pab_module_plan;
    s->layer_end = pab_layer_end;
    s->bytes_held = pab_bytes_held;
    s->clone = pab_clone;
    char v[PAB_KINDS][2][32];
    for (int k = 0; k < PAB_KINDS; k++) {
        strategy_format_double(P->kind[k].lo, v[k][0], sizeof v[k][0]);
        strategy_format_double(P->kind[k].hi, v[k][1], sizeof v[k][1]);
    }
    snprintf(s->spec, sizeof s->spec, "pab:self_range=%d,self_lo=%s,self_hi=%s,cross_range=%d,cross_lo=%s,cross_hi=%s,"
             "warmup=%d", P->kind[PAB_SELF].range, v[PAB_SELF][0], v[PAB_SELF][1], P->kind[PAB_CROSS].range,
             v[PAB_CROSS][0], v[PAB_CROSS][1], P->warmup);
    return 0;
}

STRATEGY_REGISTER(strategy_pab_info, 110) = {
    .name = "pab",
    .summary = "Pyramid Attention Broadcast: in a timestep window, reuse each attention output R-1 of every R steps",
    .params_help =
        "self_range   R >= 0: self-attention computes every R-th call, reuses its output in between; 0 or 1 off\n"
        "             (default 2, VideoSys's spatial range)\n"
        "self_lo      broadcast only while self_lo < int(timestep) < self_hi, 0..1000 (default 100)\n"
        "self_hi      (default 850 as CogVideoXPABConfig, the official config for full 3D attention; diffusers 800)\n"
        "cross_range  the same for cross-attention (default 6, the pyramid's cross range; 0 off: CogVideoX's config)\n"
        "cross_lo     (default 100)\n"
        "cross_hi     (default 850)\n"
        "warmup       steps always computed, >= 0 (default 0; ours, not in the official code)\n"
        "thresh       does not apply: PAB's schedule is fixed by the ranges and windows",
    .param_names = pab_params,
    .create = pab_create,
};
