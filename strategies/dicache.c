/* dicache — probe the first block(s), and while the probe output barely moves, skip the rest of the stack by
 * extrapolating the block-stack residual from its last two computed values (DiCache: Bu et al., ICLR 2026,
 * "DiCache: Let Diffusion Model Determine Its Own Cache", arXiv:2508.17356).
 *
 * Per branch b (cond and uncond are independent), on model call c = 2·step + b, with x_in the block-stack input,
 * p the output of the first D = probe_depth blocks, and P_b the previous call's p:
 *   retention (c < R, or the branch has no P_b yet): run every block; P_b = p (recorded after block D-1).
 *   otherwise, after block D-1:
 *       δy   = mean|p - P_b| / mean|P_b|,      acc_b += δy,      P_b = p     (also when skipping)
 *       acc_b < thresh -> skip: with two stored residuals
 *                  q = p - x_in,   γ = clip(mean|q - Q₂| / mean|Q₁ - Q₂|, 1, 2)
 *                  tokens = x_in + R₂ + γ·(R₁ - R₂)            (γ = 1: plain reuse of R₁)
 *              with one:  tokens = x_in + R₁
 *              and stop the stack (the head still runs): cost embed + D blocks + head.
 *       else    -> acc_b = 0, continue at block D from p (the probe is not run twice).
 *   after a computed stack (output x_out): R₂ = R₁, R₁ = x_out - x_in;  Q₂ = Q₁, Q₁ = P_b - x_in.
 * R₁/Q₁ are the official windows' entries [-1], R₂/Q₂ their entries [-2]; the official windows hold a third, stale
 * entry [0] that nothing reads, which we do not keep.
 *
 * Parameters (spec "dicache:thresh=0.08,warmup=10,probe_depth=1" at 50 steps):
 *     thresh       rel_l1_thresh >= 0                                          default 0.08
 *     retention    ret_ratio in [0, 1]: R = int(2·steps·ret_ratio) calls       default 0.2
 *     warmup       steps computed first, >= 0: R = 2·warmup   (give warmup or retention, not both)
 *     probe_depth  D in 1 .. num_layers-1                                      default 1
 * The canonical spec states warmup = R/2 when R is even, else retention (the odd R has no whole-step form).
 *
 * Official code: Bujiazi/DiCache dd7f0de, WAN2.1/run_wan_dicache.py, dicache_forward (read through a verbatim copy
 * of that function; see README "### dicache"). Where we depart from it:
 *   - A branch with no P_b yet computes in full (R < 2; the official code fails there: P_b is None).
 *   - mean|Q₁ - Q₂| = 0 with mean|q - Q₂| = 0 gives γ = 1 (official: NaN tokens); with mean|q - Q₂| > 0 it gives
 *     γ = 2 as the official clip of +inf does.
 *   - The official resumed loop records P at the index D-1 of the *remaining* blocks, which for 2D > num_layers
 *     never happens (P and Q then keep stale values); we always record the probe output p, the evident intent.
 *     For 2D <= num_layers (Wan: D = 1 of 30) the two agree.
 *   - The official δx (input rel-L1), X_prev and previous_output are computed but never read: not kept.
 * Trace: signal δy (NAN during retention), accumulator acc_b after the call (0 after a compute), threshold, k = γ
 * on a skip with two residuals (NAN otherwise). Guidance off: only cond calls (c = 2·step) happen. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strategies/strategy.h"

enum { DC_PROBE, DC_R1, DC_R2, DC_Q1, DC_Q2, DC_BUFS };

typedef struct {
    float *buf[DC_BUFS];    /* [n] P_b, R₁, R₂, Q₁, Q₂; allocated on the branch's first call */
    int have_probe;
    int residuals;          /* computed stacks stored, 0..2 */
    double acc;
} DcBranch;

typedef struct {
    double thresh;
    int retained_calls;     /* R */
    int probe_depth;
    int num_layers;
    size_t n;               /* tokens numel the buffers hold; 0 before the first call */
    float *x_in;            /* [n] this call's block-stack input */
    int usable;             /* this call has its buffers (else it computes in full and stores nothing) */
    int skipping;           /* this call stopped after the probe */
    DcBranch br[BRANCH_COUNT];
} DcState;

static void dc_release(const VecOps *ops, float **p) {
    if (*p) ops->release(ops->ctx, *p);
    *p = NULL;
}

static void dc_free_buffers(const VecOps *ops, DcState *D) {
    dc_release(ops, &D->x_in);
    for (int b = 0; b < BRANCH_COUNT; b++) {
        for (int i = 0; i < DC_BUFS; i++) dc_release(ops, &D->br[b].buf[i]);
        D->br[b].have_probe = D->br[b].residuals = 0;
        D->br[b].acc = 0.0;
    }
    D->n = 0;
}

/* Buffers for branch b at n floats (a new size starts afresh). Returns 0, or -1 when allocation failed. */
static int dc_buffers(const VecOps *ops, DcState *D, Branch b, size_t n) {
    if (D->n != n) {
        dc_free_buffers(ops, D);
        D->n = n;
    }
    if (!D->x_in && !(D->x_in = ops->alloc(ops->ctx, n))) return -1;
    DcBranch *B = &D->br[b];
    for (int i = 0; i < DC_BUFS; i++)
        if (!B->buf[i] && !(B->buf[i] = ops->alloc(ops->ctx, n))) return -1;
    return 0;
}

static int dc_blocks_begin(Strategy *s, const StepInfo *st, const BlockInputs *in, BranchTrace *trace) {
    DcState *D = s->state;
    D->skipping = 0;
    D->usable = dc_buffers(s->ops, D, st->branch, in->n_tokens) == 0;
    if (D->usable) s->ops->copy(s->ops->ctx, D->x_in, in->tokens, in->n_tokens);
    trace->threshold = (float)D->thresh;
    trace->accumulator = (float)D->br[st->branch].acc;
    return STRATEGY_COMPUTE;
}

/* γ = clip(mean|q - Q₂| / mean|Q₁ - Q₂|, 1, 2), q held in tokens. */
static double dc_gamma(const VecOps *ops, const DcBranch *B, const float *q, size_t n) {
    double num = ops->mean_abs_diff(ops->ctx, q, B->buf[DC_Q2], n);
    double den = ops->mean_abs_diff(ops->ctx, B->buf[DC_Q1], B->buf[DC_Q2], n);
    if (den == 0.0) return num > 0.0 ? 2.0 : 1.0;
    double g = num / den;
    return g < 1.0 ? 1.0 : g > 2.0 ? 2.0 : g;
}

static int dc_layer_end(Strategy *s, const StepInfo *st, int layer, float *tokens, size_t n, BranchTrace *trace) {
    DcState *D = s->state;
    const VecOps *ops = s->ops;
    if (!D->usable || n != D->n || layer != D->probe_depth - 1) return layer + 1;
    DcBranch *B = &D->br[st->branch];
    const int call = 2 * st->step + (int)st->branch;
    if (call < D->retained_calls || !B->have_probe) {
        ops->copy(ops->ctx, B->buf[DC_PROBE], tokens, n);
        B->have_probe = 1;
        return layer + 1;
    }
    const double dy = ops->mean_abs_diff(ops->ctx, tokens, B->buf[DC_PROBE], n) / ops->mean_abs(ops->ctx, B->buf[DC_PROBE], n);
    B->acc += dy;
    ops->copy(ops->ctx, B->buf[DC_PROBE], tokens, n);
    trace->signal = (float)dy;
    if (!(B->acc < D->thresh) || B->residuals == 0) {
        B->acc = 0.0;
        trace->accumulator = 0.0f;
        return layer + 1;
    }
    trace->accumulator = (float)B->acc;
    if (B->residuals >= 2) {
        ops->sub(ops->ctx, tokens, tokens, D->x_in, n); /* q = p - x_in */
        const double g = dc_gamma(ops, B, tokens, n);
        ops->sub(ops->ctx, tokens, B->buf[DC_R1], B->buf[DC_R2], n);
        ops->axpby(ops->ctx, tokens, (float)g, tokens, 1.0f, B->buf[DC_R2], n);
        ops->add(ops->ctx, tokens, D->x_in, tokens, n);
        trace->k = (float)g;
    } else {
        ops->add(ops->ctx, tokens, D->x_in, B->buf[DC_R1], n);
    }
    D->skipping = 1;
    trace->computed = 0;
    return D->num_layers;
}

static void dc_swap(float **a, float **b) {
    float *t = *a;
    *a = *b;
    *b = t;
}

static void dc_blocks_end(Strategy *s, const StepInfo *st, const float *tokens_out, size_t n) {
    DcState *D = s->state;
    const VecOps *ops = s->ops;
    if (!D->usable || D->skipping || n != D->n) return;
    DcBranch *B = &D->br[st->branch];
    dc_swap(&B->buf[DC_R1], &B->buf[DC_R2]);
    dc_swap(&B->buf[DC_Q1], &B->buf[DC_Q2]);
    ops->sub(ops->ctx, B->buf[DC_R1], tokens_out, D->x_in, n);
    ops->sub(ops->ctx, B->buf[DC_Q1], B->buf[DC_PROBE], D->x_in, n);
    if (B->residuals < 2) B->residuals++;
}

static size_t dc_bytes_held(const Strategy *s) {
    const DcState *D = s->state;
    size_t tensors = D->x_in != NULL;
    for (int b = 0; b < BRANCH_COUNT; b++)
        for (int i = 0; i < DC_BUFS; i++) tensors += D->br[b].buf[i] != NULL;
    return tensors * D->n * sizeof(float);
}

static void dc_destroy(Strategy *s) {
    if (!s->state) return;
    dc_free_buffers(s->ops, s->state);
    free(s->state);
    s->state = NULL;
}

static int dc_clone(Strategy *dst, const Strategy *src, Error *err) {
    const DcState *S = src->state;
    DcState *D = malloc(sizeof *D);
    if (!D) return error_set(err, "dicache: out of memory");
    *D = *S;
    int failed = 0;
    D->x_in = strategy_copy_buffer(src->ops, S->x_in, S->n, &failed);
    for (int b = 0; b < BRANCH_COUNT; b++)
        for (int i = 0; i < DC_BUFS; i++)
            D->br[b].buf[i] = strategy_copy_buffer(src->ops, S->br[b].buf[i], S->n, &failed);
    dst->state = D;
    if (failed) {
        dc_destroy(dst);
        return error_set(err, "dicache: out of memory copying its caches (%zu floats each)", S->n);
    }
    return 0;
}

static const char *const dc_params[] = {"thresh", "warmup", "retention", "probe_depth", NULL};

static int dc_create(Strategy *s, const StrategyParams *p, const StrategyEnv *env, Error *err) {
    double thresh, retention;
    int warmup, probe_depth;
    if (env->num_layers < 2)
        return error_set(err, "dicache: needs a model of at least 2 layers (the probe and the rest), got %d",
                         env->num_layers);
    if (strategy_param_text(p, "warmup") && strategy_param_text(p, "retention"))
        return error_set(err, "dicache: give warmup (steps) or retention (ratio of calls), not both");
    if (strategy_param_double(p, "thresh", 0.08, 0.0, INFINITY, &thresh, err)) return -1;
    if (strategy_param_double(p, "retention", 0.2, 0.0, 1.0, &retention, err)) return -1;
    if (strategy_param_int(p, "warmup", 0, 0, INT_MAX / 2, &warmup, err)) return -1;
    if (strategy_param_int(p, "probe_depth", 1, 1, env->num_layers - 1, &probe_depth, err)) return -1;
    /* The official int(num_steps * ret_ratio) over 2·steps calls, in the same double arithmetic. */
    const int retained = strategy_param_text(p, "warmup") ? 2 * warmup
                                                          : (int)((double)(2 * env->num_steps) * retention);
    DcState *D = calloc(1, sizeof *D);
    if (!D) return error_set(err, "dicache: out of memory");
    D->thresh = thresh;
    D->retained_calls = retained;
    D->probe_depth = probe_depth;
    D->num_layers = env->num_layers;
    s->state = D;
    s->destroy = dc_destroy;
    s->blocks_begin = dc_blocks_begin;
    s->layer_end = dc_layer_end;
    s->blocks_end = dc_blocks_end;
    s->bytes_held = dc_bytes_held;
    s->clone = dc_clone;
    char th[32], ret[32];
    strategy_format_double(thresh, th, sizeof th);
    if (retained % 2 == 0) {
        snprintf(s->spec, sizeof s->spec, "dicache:thresh=%s,warmup=%d,probe_depth=%d", th, retained / 2,
                 probe_depth);
    } else {
        strategy_format_double(retention, ret, sizeof ret);
        snprintf(s->spec, sizeof s->spec, "dicache:thresh=%s,retention=%s,probe_depth=%d", th, ret, probe_depth);
    }
    return 0;
}

STRATEGY_REGISTER(strategy_dicache_info, 120) = {
    .name = "dicache",
    .summary = "probe the first block(s); while the probe output barely moves, stop and extrapolate the stack residual",
    .params_help = "thresh       rel_l1_thresh >= 0: skip while the accumulated probe-output rel-L1 stays below it\n"
                   "             (default 0.08, as official)\n"
                   "retention    ret_ratio in [0, 1]: the first int(2 * steps * ret_ratio) model calls compute\n"
                   "             (default 0.2, as official)\n"
                   "warmup       steps computed first, >= 0 (instead of retention; not both)\n"
                   "probe_depth  blocks run as the probe, 1 .. layers-1 (default 1, as official)",
    .param_names = dc_params,
    .create = dc_create,
};
