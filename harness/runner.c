#include "harness/runner.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/rng.h"

static double cpu_seconds(void) {
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)) return NAN;
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The machine's 1-minute load average: how busy it was while this run was timed. NAN where unavailable. */
static double load_average(void) {
    double avg[1];
    return getloadavg(avg, 1) == 1 ? avg[0] : NAN;
}

static void sync_engine(Engine *e) {
    if (e->synchronize) e->synchronize(e);
}

void runner_initial_noise(float *x, size_t n, uint64_t seed) { philox_normal(x, n, seed, 0); }

void runner_decode_video(const float *x, int channels, int F, int H, int W, uint8_t *video) {
    size_t plane = (size_t)F * H * W;
    for (int c = 0; c < 3; c++) {
        const float *src = x + (size_t)(c < channels ? c : channels - 1) * plane;
        float lo = -1.0f, hi = 1.0f;
        if (channels != 3) {
            lo = hi = src[0];
            for (size_t i = 1; i < plane; i++) lo = fminf(lo, src[i]), hi = fmaxf(hi, src[i]);
            if (hi <= lo) hi = lo + 1.0f;
        }
        for (size_t i = 0; i < plane; i++) {
            float v = (src[i] - lo) / (hi - lo);
            v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
            video[i * 3 + c] = (uint8_t)lrintf(v * 255.0f);
        }
    }
}

/* ---- SVG trace (strategies that plan attention, DESIGN §4 svg) --------------------------------------------- */

/* Adds what layer `layer` of call st ran to the record's SVG trace (when allocated): heads per pattern, each head's
 * density (1 for dense heads, NAN when the backend reported none), the self-attention FLOPs spent and dense. */
static void trace_attention(RunRecord *rec, const StepInfo *st, int layer, const AttentionPlan *p) {
    if (!rec->svg_layers) return;
    const size_t at = ((size_t)st->step * 2 + st->branch) * rec->svg_layers + layer;
    int spatial = 0, temporal = 0;
    for (int h = 0; h < p->num_heads && h < rec->svg_heads; h++) {
        spatial += p->pattern[h] == ATTN_SPATIAL;
        temporal += p->pattern[h] == ATTN_TEMPORAL;
        rec->svg_density[at * rec->svg_heads + h] =
            p->pattern[h] == ATTN_DENSE ? 1.0f : p->density ? p->density[h] : NAN;
    }
    rec->svg_spatial_heads[at] = spatial, rec->svg_temporal_heads[at] = temporal;
    rec->attn_flops[st->step] += p->flops_done;
    rec->attn_flops_dense[st->step] += p->flops_dense;
}

/* ------------------------------------------------------------------------------------------------------------ */

/* The block stack of one computed call: layers run as the strategy's layer_end directs (H1), each with its attention
 * plan (SVG) and module plan (H2). Returns the FLOPs spent, or -1 with err set when the strategy asked for an
 * impossible layer. *layers_run counts the layers that ran. */
static double run_blocks(Engine *e, Strategy *s, const StepInfo *st, AttentionPlan *plan, BranchTrace *trace,
                         RunRecord *rec, int *layers_run, Error *err) {
    const DitConfig *cfg = &e->model->cfg;
    const size_t n_tokens = (size_t)e->L * cfg->dim;
    const double attn_dense = dit_flops_self_attention(cfg, e->L);
    double flops = 0.0;
    *layers_run = 0;
    for (int layer = 0; layer < cfg->num_layers;) {
        AttentionPlan *p = NULL;
        if (s->attention_plan) {
            memset(plan->pattern, 0, (size_t)plan->num_heads * sizeof *plan->pattern);
            plan->band_tokens = 0;
            s->attention_plan(s, st, layer, plan);
            p = plan;
        }
        ModulePlan modules = {{MODULE_COMPUTE, MODULE_COMPUTE, MODULE_COMPUTE}, {NULL, NULL, NULL}};
        if (s->module_plan) s->module_plan(s, st, layer, &modules);
        e->block(e, layer, p, s->module_plan ? &modules : NULL);
        if (p) trace_attention(rec, st, layer, p);
        (*layers_run)++;
        /* A sparse plan saves attention work, a supplied module all of its work; the rest of the block is spent. */
        double block = dit_flops_block(cfg, e->L);
        for (int m = 0; m < MODULE_COUNT; m++)
            if (modules.mode[m] == MODULE_SUPPLY) block -= dit_flops_module(cfg, e->L, (BlockModule)m);
        if (p && modules.mode[MODULE_SELF_ATTN] == MODULE_COMPUTE) block -= attn_dense - p->flops_done;
        flops += block;
        int next = layer + 1;
        if (s->layer_end) next = s->layer_end(s, st, layer, e->tokens(e), n_tokens, trace);
        if (next <= layer || next > cfg->num_layers) {
            error_set(err, "strategy %s: layer_end after layer %d returned %d (valid: %d..%d)", s->spec, layer, next,
                      layer + 1, cfg->num_layers);
            return -1.0;
        }
        layer = next;
    }
    if (s->blocks_end) s->blocks_end(s, st, e->tokens(e), n_tokens);
    return flops;
}

/* One model call for one branch, with the strategy deciding at model, block-stack, layer and module level.
 * Returns the FLOPs spent, or -1 with err set. */
static double model_call(Engine *e, Strategy *s, const StepInfo *st, const float *x, const float *text, float *v,
                         size_t n, AttentionPlan *plan, BranchTrace *trace, RunRecord *rec, int *layers_run,
                         Error *err) {
    const DitConfig *cfg = &e->model->cfg;
    *layers_run = 0;
    if (s->model_begin && s->model_begin(s, st, x, n, trace) == STRATEGY_REUSE) {
        s->model_reuse(s, st, x, v, n);
        trace->computed = 0;
        return 0.0;
    }
    double flops = dit_flops_embed(cfg, e->L) + dit_flops_head(cfg, e->L);
    e->embed(e, x, st->timestep, text);
    BlockInputs in = {.e = e->time_embedding(e), .e0 = e->time_projection(e), .dim = (size_t)cfg->dim,
                      .tokens = e->tokens(e), .n_tokens = (size_t)e->L * cfg->dim};
    if (s->blocks_begin && s->blocks_begin(s, st, &in, trace) == STRATEGY_REUSE) {
        s->blocks_reuse(s, st, e->tokens(e), in.n_tokens);
        trace->computed = 0;
    } else {
        double blocks = run_blocks(e, s, st, plan, trace, rec, layers_run, err);
        if (blocks < 0) return -1.0;
        flops += blocks;
    }
    e->head(e, v);
    if (s->model_end) s->model_end(s, st, x, v, n);
    return flops;
}

int runner_sample(Engine *e, Strategy *s, const RunSettings *rs, RunRecord *rec, float *final_x, Error *err) {
    const DitConfig *cfg = &e->model->cfg;
    if (rs->steps < 1) return error_set(err, "steps must be >= 1, got %d", rs->steps);
    if (e->prepare(e, rs->F, rs->H, rs->W, err)) return -1;
    const size_t n = (size_t)cfg->in_dim * rs->F * rs->H * rs->W;
    const size_t text_n = (size_t)cfg->text_len * cfg->text_dim;
    const int branches = rs->guidance != 1.0f ? 2 : 1;
    const VecOps *ops = e->ops;

    const SolverKind *kind = rs->solver ? rs->solver : solver_by_name("euler");
    Solver *solver = NULL;
    float *host = malloc(n * sizeof(float));
    float *sigmas = malloc((size_t)(rs->steps + 1) * sizeof(float));
    float *timesteps = malloc((size_t)rs->steps * sizeof(float));
    float *x = ops->alloc(ops->ctx, n);
    float *guided = ops->alloc(ops->ctx, n);
    float *v[2] = {ops->alloc(ops->ctx, n), branches == 2 ? ops->alloc(ops->ctx, n) : NULL};
    float *text[2] = {ops->alloc(ops->ctx, text_n), branches == 2 ? ops->alloc(ops->ctx, text_n) : NULL};
    AttentionPlan plan = {.num_heads = cfg->num_heads, .pattern = calloc((size_t)cfg->num_heads, sizeof(AttnPattern))};
    rec->step = calloc((size_t)rs->steps, sizeof *rec->step);
    rec->video = malloc((size_t)rs->F * rs->H * rs->W * 3);
    if (rs->record_latents) rec->latents = calloc((size_t)rs->steps * n, sizeof(float));
    int ok = host && sigmas && timesteps && x && guided && v[0] && text[0] && plan.pattern && rec->step && rec->video &&
             (branches == 1 || (v[1] && text[1])) && (!rs->record_latents || rec->latents);
    if (!ok) {
        error_set(err, "out of memory for a %dx%dx%d run", rs->F, rs->H, rs->W);
        goto done;
    }
    /* SVG trace: only for strategies that plan attention; the plan's per-head density array comes with it. */
    if (s->attention_plan) {
        plan.density = calloc((size_t)cfg->num_heads, sizeof *plan.density);
        ok = plan.density && record_alloc_svg(rec, rs->steps, cfg->num_layers, cfg->num_heads, err) == 0;
        if (!ok) {
            if (!plan.density) error_set(err, "out of memory for the attention plan");
            goto done;
        }
    }

    rec->steps = rs->steps;
    rec->strategy_bytes_peak = 0.0;
    rec->frames = rs->F;
    rec->height = rs->H, rec->width = rs->W;
    rec->lc = cfg->in_dim, rec->lf = rs->F, rec->lh = rs->H, rec->lw = rs->W;
    rec->grid[0] = rs->F, rec->grid[1] = rs->H, rec->grid[2] = rs->W;
    rec->failed = 0, rec->failed_step = -1;
    snprintf(rec->backend, sizeof rec->backend, "%s", e->backend);
    snprintf(rec->device, sizeof rec->device, "%s", e->device);
    for (int b = 0; b < branches; b++) e->upload(e, text[b], rs->text[b], text_n);
    runner_initial_noise(host, n, rs->seed);
    e->upload(e, x, host, n);
    kind->schedule(rs->steps, rs->shift, sigmas, timesteps);
    if (!(solver = kind->create(ops, n, sigmas, rs->steps, err))) {
        ok = 0;
        goto done;
    }

    const double full_call = dit_flops_forward(cfg, e->L);
    rec->load_average_start = load_average();
    const double cpu_start = cpu_seconds();
    const double run_start = clock_seconds();
    for (int i = 0; i < rs->steps; i++) {
        StepRecord *r = &rec->step[i];
        const double step_start = clock_seconds(), step_cpu_start = cpu_seconds();
        r->sigma = sigmas[i];
        r->timestep = timesteps[i];
        for (int b = 0; b < 2; b++) {
            r->computed[b] = 0;
            r->layers_run[b] = -1;
            r->signal[b] = r->accumulator[b] = r->threshold[b] = r->k[b] = NAN;
        }
        for (int b = 0; b < branches; b++) {
            StepInfo st = {.step = i, .num_steps = rs->steps, .branch = (Branch)b, .guidance_on = branches == 2,
                           .timestep = r->timestep, .sigma = r->sigma};
            BranchTrace trace = {.computed = 1, .signal = NAN, .accumulator = NAN, .threshold = NAN, .k = NAN};
            const double call_start = clock_seconds();
            int layers_run = 0;
            const double flops = model_call(e, s, &st, x, text[b], v[b], n, &plan, &trace, rec, &layers_run, err);
            if (flops < 0 || s->failure[0]) {
                if (flops >= 0) error_set(err, "strategy %s: %s", s->spec, s->failure);
                ok = 0;
                goto done;
            }
            r->flops += flops;
            r->layers_run[b] = layers_run;
            sync_engine(e);
            r->call_seconds[b] = clock_seconds() - call_start;
            rec->model_seconds += r->call_seconds[b];
            r->computed[b] = (uint8_t)trace.computed;
            r->signal[b] = trace.signal, r->accumulator[b] = trace.accumulator;
            r->threshold[b] = trace.threshold, r->k[b] = trace.k;
            rec->calls_total++;
            if (trace.computed) rec->calls_computed++;
            else rec->calls_skipped++;
        }
        r->strategy_bytes = (double)strategy_bytes_held(s);
        if (r->strategy_bytes > rec->strategy_bytes_peak) rec->strategy_bytes_peak = r->strategy_bytes;
        rec->flops_spent += r->flops;
        rec->flops_full += full_call * branches;
        /* x stays as it was when the guided velocity is not finite: the record keeps the last good latent. */
        size_t bad = ops->guide(ops->ctx, guided, v[0], branches == 2 ? v[1] : NULL, rs->guidance, n);
        if (!bad) kind->step(solver, i, x, guided);
        sync_engine(e);
        r->wall_seconds = clock_seconds() - step_start;
        r->cpu_seconds = cpu_seconds() - step_cpu_start;
        if (bad) {
            rec->failed = 1;
            rec->failed_step = i;
            snprintf(rec->failure, sizeof rec->failure, "model output has %zu non-finite values at step %d", bad, i);
            break;
        }
        if (rs->record_latents) e->download(e, rec->latents + (size_t)i * n, x, n);
        if (rs->progress) rs->progress(rs->progress_user, i + 1, rs->steps, clock_seconds() - run_start);
    }
    rec->wall_seconds = clock_seconds() - run_start;
    rec->cpu_seconds = cpu_seconds() - cpu_start;
    rec->load_average_end = load_average();
    e->download(e, host, x, n);
    if (final_x) memcpy(final_x, host, n * sizeof(float));
    if (rec->failed) memset(rec->video, 0, (size_t)rs->F * rs->H * rs->W * 3);
    else runner_decode_video(host, cfg->in_dim, rs->F, rs->H, rs->W, rec->video);
    ok = 1;
done:
    if (solver) kind->destroy(solver);
    free(host);
    free(sigmas);
    free(timesteps);
    free(plan.pattern);
    free(plan.density);
    ops->release(ops->ctx, x);
    ops->release(ops->ctx, guided);
    for (int b = 0; b < 2; b++) {
        if (v[b]) ops->release(ops->ctx, v[b]);
        if (text[b]) ops->release(ops->ctx, text[b]);
    }
    return ok ? 0 : -1;
}
