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

/* The computed part of one model call (the strategy's model_begin said COMPUTE): embed, the block stack as the
 * strategy directs, head and model_end. Returns the FLOPs spent, or -1 with err set. */
static double compute_call(Engine *e, Strategy *s, const StepInfo *st, const float *x, const float *text, float *v,
                           size_t n, AttentionPlan *plan, BranchTrace *trace, RunRecord *rec, int *layers_run,
                           Error *err) {
    const DitConfig *cfg = &e->model->cfg;
    *layers_run = 0;
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

/* ------------------------------------------------------------------------------------------------------------
 * Trajectories and the settings that follow them (harness/runner.h). One code path serves a single run (one member,
 * one branch) and a fork tree (many members, branches forked where they part). */

/* What every trajectory of one run or tree shares: the settings, the schedule, the text and scratch buffers. */
typedef struct {
    Engine *e;
    const RunSettings *rs;
    const SolverKind *kind;
    const VecOps *ops;
    size_t n, text_n, n_tokens;
    int branches;
    float *sigmas, *timesteps;      /* host */
    float *text[2];                 /* backend */
    float *host;                    /* host [n] */
    AttentionPlan plan;             /* scratch for attention_plan hooks (density when any member plans attention) */
    AttnPattern *dense_pattern;     /* [num_heads] all ATTN_DENSE: what a shared layer ran */
    double *layer_attn[2];          /* [num_layers] a shared call's attention FLOPs done and dense, per layer */
    float *y[2];                    /* backend [n]: a shared call's output per branch */
    float *scratch_tokens;          /* backend [n_tokens]: what a member's layer_end sees in a shared call */
    float *host_tokens[2];          /* host [n_tokens]: to compare what it left with the engine's tokens */
    RunnerShareStats *stats;
    int total_members;
    double run_start;
} Sampling;

/* One trajectory: x and the solver's history before step `step`. */
typedef struct {
    float *x;
    Solver *solver;
    int step;
} RunState;

/* One setting following a trajectory. */
typedef struct {
    Strategy *s;
    RunRecord *rec;
    float *final_x;
    float *v[2], *guided;           /* backend [n]: its own outputs (a call it made alone) and guided velocity */
    const float *out[2];            /* this step's output per branch: v[b] or the shared y[b] */
    Strategy saved;                 /* its state before a shared call (has_saved): restored when it leaves it */
    BranchTrace saved_trace;
    int has_saved;
    BranchTrace trace;
    int layers_run;
    double flops, blocks_flops;
    int staying;                    /* in the shared call now */
    double call_seconds, call_cpu;
    double step_seconds, step_cpu;  /* its calls and its update this step, as if it ran alone */
    double run_cpu_start;
    int finished;
} Member;

static void state_release(const Sampling *g, RunState *r) {
    if (r->solver) g->kind->destroy(r->solver);
    if (r->x) g->ops->release(g->ops->ctx, r->x);
    memset(r, 0, sizeof *r);
}

static int state_alloc(const Sampling *g, RunState *r, Error *err) {
    memset(r, 0, sizeof *r);
    r->x = g->ops->alloc(g->ops->ctx, g->n);
    if (!r->x) return error_set(err, "out of memory for a %zu-float latent", g->n);
    if (!(r->solver = g->kind->create(g->ops, g->n, g->sigmas, g->rs->steps, err))) {
        state_release(g, r);
        return -1;
    }
    return 0;
}

/* dst continues src's trajectory: same x, same solver history, same step. */
static void state_copy(const Sampling *g, RunState *dst, const RunState *src) {
    g->ops->copy(g->ops->ctx, dst->x, src->x, g->n);
    g->kind->copy(dst->solver, src->solver);
    dst->step = src->step;
}

static int needs_saving(const Strategy *s) {
    /* Hooks that can part a member from a shared call after the engine started it (model_begin parts it before). */
    return s->blocks_begin || s->attention_plan || s->module_plan || s->layer_end;
}

static int plan_is_dense(const AttentionPlan *p) {
    for (int h = 0; h < p->num_heads; h++)
        if (p->pattern[h] != ATTN_DENSE) return 0;
    return 1;
}

/* A member leaves the shared call in progress: it is replayed alone from its saved state afterwards. */
static void leave(Member *m, int *staying) {
    if (!m->staying) return;
    m->staying = 0;
    (*staying)--;
}

/* One model call (step i, branch b) for every member of a trajectory, computed once for all that agree.
 * Each member's hooks see exactly the inputs they would see alone, in the same order; a member whose decision
 * departs (model-level reuse, block-stack reuse, a sparse attention plan, a supplied module, a layer_end that jumps,
 * stops or rewrites the tokens) leaves the shared call and, when the engine had started it, is replayed alone from
 * the state saved at the call's start. Returns 0, or -1 with err set. */
static int call_members(Sampling *g, Member **mem, int count, const StepInfo *st, const float *x, Error *err) {
    Engine *e = g->e;
    const DitConfig *cfg = &e->model->cfg;
    const int b = st->branch;
    const double t0 = clock_seconds(), c0 = cpu_seconds();
    int staying = 0;
    for (int j = 0; j < count; j++) {
        Member *m = mem[j];
        m->trace = (BranchTrace){.computed = 1, .signal = NAN, .accumulator = NAN, .threshold = NAN, .k = NAN};
        m->layers_run = 0;
        m->flops = 0.0;
        m->staying = 0;
        m->has_saved = 0;
        m->out[b] = m->v[b];
    }
    if (count == 1) { /* alone: the call as a single run makes it */
        Member *m = mem[0];
        double flops = 0.0;
        if (m->s->model_begin && m->s->model_begin(m->s, st, x, g->n, &m->trace) == STRATEGY_REUSE) {
            m->s->model_reuse(m->s, st, x, m->v[b], g->n);
            m->trace.computed = 0;
        } else {
            flops = compute_call(e, m->s, st, x, g->text[b], m->v[b], g->n, &g->plan, &m->trace, m->rec,
                                 &m->layers_run, err);
            if (flops < 0) return -1;
            if (g->stats) g->stats->calls_run++, g->stats->flops_run += flops;
        }
        m->flops = flops;
        sync_engine(e);
        m->call_seconds = clock_seconds() - t0, m->call_cpu = cpu_seconds() - c0;
        return 0;
    }

    for (int j = 0; j < count; j++) {
        Member *m = mem[j];
        const double tm = clock_seconds(), cm = cpu_seconds();
        if (m->s->model_begin && m->s->model_begin(m->s, st, x, g->n, &m->trace) == STRATEGY_REUSE) {
            m->s->model_reuse(m->s, st, x, m->v[b], g->n);
            m->trace.computed = 0;
            sync_engine(e);
            m->call_seconds = clock_seconds() - tm, m->call_cpu = cpu_seconds() - cm;
            continue;
        }
        m->staying = 1;
        staying++;
        m->call_seconds = clock_seconds() - tm, m->call_cpu = cpu_seconds() - cm; /* its own part, before sharing */
    }
    if (staying == 0) return 0;
    if (staying == 1) { /* the only one computing: its call alone, nothing to share */
        Member *m = NULL;
        for (int j = 0; j < count && !m; j++) m = mem[j]->staying ? mem[j] : NULL;
        const double tr = clock_seconds(), cr = cpu_seconds();
        m->flops = compute_call(e, m->s, st, x, g->text[b], m->v[b], g->n, &g->plan, &m->trace, m->rec,
                                &m->layers_run, err);
        if (m->flops < 0) return -1;
        sync_engine(e);
        m->call_seconds += clock_seconds() - tr, m->call_cpu += cpu_seconds() - cr;
        if (g->stats) g->stats->calls_run++, g->stats->flops_run += m->flops;
        m->staying = 0;
        return 0;
    }
    /* Members that may leave once the engine has started: their state as model_begin left it, to replay from. */
    for (int j = 0; j < count; j++) {
        Member *m = mem[j];
        if (!m->staying || !needs_saving(m->s)) continue;
        const double tm = clock_seconds(), cm = cpu_seconds();
        if (strategy_clone(&m->saved, m->s, err)) return error_prefix(err, "sharing a call");
        m->saved_trace = m->trace;
        m->has_saved = 1;
        m->call_seconds += clock_seconds() - tm, m->call_cpu += cpu_seconds() - cm;
    }
    const double shared_start = clock_seconds(), shared_cpu = cpu_seconds();

    /* The shared call. */
    const double full_edges = dit_flops_embed(cfg, e->L) + dit_flops_head(cfg, e->L);
    e->embed(e, x, st->timestep, g->text[b]);
    BlockInputs in = {.e = e->time_embedding(e), .e0 = e->time_projection(e), .dim = (size_t)cfg->dim,
                      .tokens = e->tokens(e), .n_tokens = g->n_tokens};
    for (int j = 0; j < count; j++) {
        Member *m = mem[j];
        if (m->staying && m->s->blocks_begin && m->s->blocks_begin(m->s, st, &in, &m->trace) == STRATEGY_REUSE)
            leave(m, &staying);
        m->blocks_flops = 0.0;
    }
    const double attn_dense = dit_flops_self_attention(cfg, e->L);
    int layers = 0;
    for (int layer = 0; layer < cfg->num_layers && staying > 0; layer++) {
        int any_plan = 0, any_modules = 0;
        ModulePlan engine_modules = {{MODULE_COMPUTE, MODULE_COMPUTE, MODULE_COMPUTE}, {NULL, NULL, NULL}};
        ModulePlan wanted[count];
        for (int j = 0; j < count; j++) {
            Member *m = mem[j];
            if (!m->staying) continue;
            if (m->s->attention_plan) {
                memset(g->plan.pattern, 0, (size_t)g->plan.num_heads * sizeof *g->plan.pattern);
                g->plan.band_tokens = 0;
                m->s->attention_plan(m->s, st, layer, &g->plan);
                any_plan = 1;
                if (!plan_is_dense(&g->plan)) {
                    leave(m, &staying);
                    continue;
                }
            }
            wanted[j] = (ModulePlan){{MODULE_COMPUTE, MODULE_COMPUTE, MODULE_COMPUTE}, {NULL, NULL, NULL}};
            if (m->s->module_plan) {
                m->s->module_plan(m->s, st, layer, &wanted[j]);
                any_modules = 1;
                for (int k = 0; k < MODULE_COUNT; k++)
                    if (wanted[j].mode[k] == MODULE_SUPPLY) leave(m, &staying);
                for (int k = 0; k < MODULE_COUNT && m->staying; k++)
                    if (wanted[j].out[k] && !engine_modules.out[k]) engine_modules.out[k] = wanted[j].out[k];
            }
        }
        if (staying == 0) break;
        /* A dense plan runs the dense path (models/backend.h), exactly what a member without one runs. */
        AttentionPlan dense = {.num_heads = cfg->num_heads, .pattern = g->dense_pattern};
        e->block(e, layer, any_plan ? &dense : NULL, any_modules ? &engine_modules : NULL);
        for (int j = 0; j < count; j++) { /* every other member that asked for a module's output gets a copy */
            Member *m = mem[j];
            if (!m->staying || !m->s->module_plan) continue;
            for (int k = 0; k < MODULE_COUNT; k++)
                if (wanted[j].out[k] && wanted[j].out[k] != engine_modules.out[k])
                    g->ops->copy(g->ops->ctx, wanted[j].out[k], engine_modules.out[k], g->n_tokens);
        }
        g->layer_attn[0][layer] = any_plan ? dense.flops_done : attn_dense;
        g->layer_attn[1][layer] = any_plan ? dense.flops_dense : attn_dense;
        const double block = dit_flops_block(cfg, e->L);
        layers++;
        for (int j = 0; j < count; j++) {
            Member *m = mem[j];
            if (!m->staying) continue;
            double mine = block;
            if (m->s->attention_plan) mine -= attn_dense - dense.flops_done;
            m->blocks_flops += mine;
            if (!m->s->layer_end) continue;
            /* layer_end may rewrite the tokens: it works on a copy, and stays only when it continues with them
             * unchanged. */
            g->ops->copy(g->ops->ctx, g->scratch_tokens, e->tokens(e), g->n_tokens);
            int next = m->s->layer_end(m->s, st, layer, g->scratch_tokens, g->n_tokens, &m->trace);
            if (next != layer + 1) {
                leave(m, &staying);
                continue;
            }
            e->download(e, g->host_tokens[0], e->tokens(e), g->n_tokens);
            e->download(e, g->host_tokens[1], g->scratch_tokens, g->n_tokens);
            if (memcmp(g->host_tokens[0], g->host_tokens[1], g->n_tokens * sizeof(float))) leave(m, &staying);
        }
    }
    int shared_calls = 0;
    if (staying > 0) {
        for (int j = 0; j < count; j++)
            if (mem[j]->staying && mem[j]->s->blocks_end)
                mem[j]->s->blocks_end(mem[j]->s, st, e->tokens(e), g->n_tokens);
        e->head(e, g->y[b]);
        for (int j = 0; j < count; j++) {
            Member *m = mem[j];
            if (!m->staying) continue;
            if (m->s->model_end) m->s->model_end(m->s, st, x, g->y[b], g->n);
            m->out[b] = g->y[b];
            m->layers_run = layers;
            m->flops = full_edges + m->blocks_flops;
            if (m->rec->svg_layers) {
                AttentionPlan ran = {.num_heads = cfg->num_heads, .pattern = g->dense_pattern};
                for (int layer = 0; layer < layers; layer++) {
                    ran.flops_done = g->layer_attn[0][layer], ran.flops_dense = g->layer_attn[1][layer];
                    trace_attention(m->rec, st, layer, &ran);
                }
            }
            shared_calls++;
        }
    }
    sync_engine(e);
    const double shared_seconds = clock_seconds() - shared_start, shared_cpu_seconds = cpu_seconds() - shared_cpu;
    if (g->stats) {
        g->stats->calls_run++;
        g->stats->flops_run += full_edges + layers * dit_flops_block(cfg, e->L);
    }
    for (int j = 0; j < count; j++) {
        Member *m = mem[j];
        if (m->staying) {
            m->call_seconds += shared_seconds, m->call_cpu += shared_cpu_seconds;
            m->rec->step[st->step].shared[b] = shared_calls > 1;
            m->rec->calls_shared += shared_calls > 1;
        }
    }
    /* Members that left after the engine started: their state as the call found it, and the call alone. */
    for (int j = 0; j < count; j++) {
        Member *m = mem[j];
        if (m->has_saved && !m->staying) { /* it left mid-call */
            strategy_destroy(m->s);
            *m->s = m->saved;
            m->has_saved = 0;
            m->trace = m->saved_trace;
            const double tr = clock_seconds(), cr = cpu_seconds();
            double flops = compute_call(e, m->s, st, x, g->text[b], m->v[b], g->n, &g->plan, &m->trace, m->rec,
                                        &m->layers_run, err);
            if (flops < 0) return -1;
            m->flops = flops;
            sync_engine(e);
            m->call_seconds += clock_seconds() - tr, m->call_cpu += cpu_seconds() - cr; /* as alone: begin + call */
            if (g->stats) g->stats->calls_run++, g->stats->flops_run += flops, g->stats->replays++;
        } else if (m->has_saved) {
            strategy_destroy(&m->saved);
            m->has_saved = 0;
        }
    }
    return 0;
}

/* A member's record before its first step. */
static int member_begin(Sampling *g, Member *m, Error *err) {
    const DitConfig *cfg = &g->e->model->cfg;
    const RunSettings *rs = g->rs;
    RunRecord *rec = m->rec;
    m->v[0] = g->ops->alloc(g->ops->ctx, g->n);
    m->v[1] = g->branches == 2 ? g->ops->alloc(g->ops->ctx, g->n) : NULL;
    m->guided = g->ops->alloc(g->ops->ctx, g->n);
    rec->step = calloc((size_t)rs->steps, sizeof *rec->step);
    rec->video = malloc((size_t)rs->F * rs->H * rs->W * 3);
    if (rs->record_latents) rec->latents = calloc((size_t)rs->steps * g->n, sizeof(float));
    if (!m->v[0] || (g->branches == 2 && !m->v[1]) || !m->guided || !rec->step || !rec->video ||
        (rs->record_latents && !rec->latents))
        return error_set(err, "out of memory for a %dx%dx%d run", rs->F, rs->H, rs->W);
    /* SVG trace: only for strategies that plan attention. */
    if (m->s->attention_plan && record_alloc_svg(rec, rs->steps, cfg->num_layers, cfg->num_heads, err)) return -1;
    rec->steps = rs->steps;
    rec->strategy_bytes_peak = 0.0;
    rec->frames = rs->F;
    rec->height = rs->H, rec->width = rs->W;
    rec->lc = cfg->in_dim, rec->lf = rs->F, rec->lh = rs->H, rec->lw = rs->W;
    rec->grid[0] = rs->F, rec->grid[1] = rs->H, rec->grid[2] = rs->W;
    rec->failed = 0, rec->failed_step = -1;
    snprintf(rec->backend, sizeof rec->backend, "%s", g->e->backend);
    snprintf(rec->device, sizeof rec->device, "%s", g->e->device);
    rec->load_average_start = load_average();
    m->run_cpu_start = cpu_seconds();
    return 0;
}

static void member_release(const Sampling *g, Member *m) {
    for (int b = 0; b < 2; b++)
        if (m->v[b]) g->ops->release(g->ops->ctx, m->v[b]);
    if (m->guided) g->ops->release(g->ops->ctx, m->guided);
    if (m->has_saved) strategy_destroy(&m->saved);
    m->v[0] = m->v[1] = m->guided = NULL;
    m->has_saved = 0;
}

/* A member's record after its last step (or its failure), from x. */
static void member_finish(Sampling *g, Member *m, const float *x) {
    const DitConfig *cfg = &g->e->model->cfg;
    const RunSettings *rs = g->rs;
    RunRecord *rec = m->rec;
    rec->cpu_seconds = g->total_members == 1 ? cpu_seconds() - m->run_cpu_start : rec->cpu_seconds;
    rec->load_average_end = load_average();
    g->e->download(g->e, g->host, x, g->n);
    if (m->final_x) memcpy(m->final_x, g->host, g->n * sizeof(float));
    if (rec->failed) memset(rec->video, 0, (size_t)rs->F * rs->H * rs->W * 3);
    else runner_decode_video(g->host, cfg->in_dim, rs->F, rs->H, rs->W, rec->video);
    m->finished = 1;
}

/* A trajectory and the members following it. */
typedef struct {
    RunState state;
    Member **mem;
    int count;
} Trajectory;

/* The members of a trajectory after a step, grouped by their guided velocity, bit for bit: members of one group
 * continue together. Fills group[j] (0-based, in order of first appearance) and returns the number of groups;
 * -1 on allocation failure. rep[k] is the first member of group k. */
static int group_by_velocity(Sampling *g, Member **mem, int count, int *group, int *rep, size_t *bad) {
    int groups = 0;
    float *host[count];
    int rc = 0;
    for (int j = 0; j < count; j++) host[j] = NULL;
    for (int j = 0; j < count && rc == 0; j++) {
        Member *m = mem[j];
        group[j] = -1;
        for (int k = 0; k < groups; k++) { /* the same outputs: the same velocity, nothing to compare */
            const Member *r = mem[rep[k]];
            if (r->out[0] == m->out[0] && (g->branches == 1 || r->out[1] == m->out[1])) {
                group[j] = k;
                break;
            }
        }
        if (group[j] >= 0) continue;
        bad[j] = g->ops->guide(g->ops->ctx, m->guided, m->out[0], g->branches == 2 ? m->out[1] : NULL,
                               g->rs->guidance, g->n);
        if (count > 1) {
            if (!(host[j] = malloc(g->n * sizeof(float)))) {
                rc = -1;
                break;
            }
            g->e->download(g->e, host[j], m->guided, g->n);
            for (int k = 0; k < groups; k++)
                if (host[rep[k]] && memcmp(host[rep[k]], host[j], g->n * sizeof(float)) == 0) {
                    group[j] = k;
                    break;
                }
        }
        if (group[j] < 0) {
            rep[groups] = j;
            group[j] = groups++;
        }
    }
    for (int j = 0; j < count; j++) free(host[j]);
    return rc ? -1 : groups;
}

/* Runs a trajectory from its state to the end; where its members part, the trajectories that fork off are pushed
 * onto stack (their own state) to be run after it. */
static int run_branch(Sampling *g, Trajectory *br, Trajectory *stack, int *depth, Error *err) {
    const RunSettings *rs = g->rs;
    const double full_call = dit_flops_forward(&g->e->model->cfg, g->e->L);
    while (br->count > 0 && br->state.step < rs->steps) {
        const int i = br->state.step, count = br->count;
        Member **mem = br->mem;
        const double step_start = clock_seconds(), step_cpu_start = cpu_seconds();
        for (int j = 0; j < count; j++) {
            StepRecord *r = &mem[j]->rec->step[i];
            r->sigma = g->sigmas[i];
            r->timestep = g->timesteps[i];
            for (int b = 0; b < 2; b++) {
                r->computed[b] = 0;
                r->layers_run[b] = -1;
                r->signal[b] = r->accumulator[b] = r->threshold[b] = r->k[b] = NAN;
            }
            mem[j]->step_seconds = mem[j]->step_cpu = 0.0;
        }
        for (int b = 0; b < g->branches; b++) {
            StepInfo st = {.step = i, .num_steps = rs->steps, .branch = (Branch)b, .guidance_on = g->branches == 2,
                           .timestep = g->timesteps[i], .sigma = g->sigmas[i]};
            if (call_members(g, mem, count, &st, br->state.x, err)) return -1;
            for (int j = 0; j < count; j++) /* a strategy that cannot go on fails the run with its reason */
                if (mem[j]->s->failure[0])
                    return error_set(err, "strategy %s: %s", mem[j]->s->spec, mem[j]->s->failure);
            for (int j = 0; j < count; j++) {
                Member *m = mem[j];
                RunRecord *rec = m->rec;
                StepRecord *r = &rec->step[i];
                r->flops += m->flops;
                r->layers_run[b] = m->layers_run;
                r->call_seconds[b] = m->call_seconds;
                rec->model_seconds += m->call_seconds;
                m->step_seconds += m->call_seconds, m->step_cpu += m->call_cpu;
                r->computed[b] = (uint8_t)m->trace.computed;
                r->signal[b] = m->trace.signal, r->accumulator[b] = m->trace.accumulator;
                r->threshold[b] = m->trace.threshold, r->k[b] = m->trace.k;
                rec->calls_total++;
                if (m->trace.computed) rec->calls_computed++;
                else rec->calls_skipped++;
                if (g->stats && m->flops > 0) g->stats->calls_alone++; /* the engine ran (a stack reuse too) */
                if (g->stats) g->stats->flops_alone += m->flops;
            }
        }
        for (int j = 0; j < count; j++) {
            RunRecord *rec = mem[j]->rec;
            StepRecord *r = &rec->step[i];
            r->strategy_bytes = (double)strategy_bytes_held(mem[j]->s);
            if (r->strategy_bytes > rec->strategy_bytes_peak) rec->strategy_bytes_peak = r->strategy_bytes;
            rec->flops_spent += r->flops;
            rec->flops_full += full_call * g->branches;
        }
        /* Guided velocities: members whose velocity is bitwise the same take the same step and stay together. */
        const double update_start = clock_seconds(), update_cpu = cpu_seconds();
        int group[count], rep[count];
        size_t bad[count];
        const int groups = group_by_velocity(g, mem, count, group, rep, bad);
        if (groups < 0) return error_set(err, "out of memory comparing trajectories");
        /* Groups after the first fork off with their own copy of the trajectory, taken before it moves. */
        /* They go onto the stack at once, so that an error leaves nothing the caller cannot release. */
        Trajectory *forks = stack + *depth;
        int n_forks = 0;
        for (int k = 1; k < groups; k++) {
            if (bad[rep[k]]) continue;
            Trajectory *f = &forks[n_forks];
            if (state_alloc(g, &f->state, err)) return -1;
            f->mem = malloc((size_t)count * sizeof *f->mem);
            if (!f->mem) {
                state_release(g, &f->state);
                return error_set(err, "out of memory for a fork");
            }
            (*depth)++;
            state_copy(g, &f->state, &br->state);
            f->count = 0;
            for (int j = 0; j < count; j++)
                if (group[j] == k) f->mem[f->count++] = mem[j];
            g->kind->step(f->state.solver, i, f->state.x, mem[rep[k]]->guided);
            f->state.step = i + 1;
            n_forks++;
            if (g->stats) g->stats->forks++;
        }
        Member *all[count];
        memcpy(all, mem, sizeof all);
        /* Failed groups end here, before the trajectory moves: x stays as it was, the record keeps the last good
         * latent. */
        int kept = 0;
        for (int j = 0; j < count; j++) {
            Member *m = all[j];
            const size_t nb = bad[rep[group[j]]];
            if (nb) {
                m->rec->failed = 1;
                m->rec->failed_step = i;
                snprintf(m->rec->failure, sizeof m->rec->failure, "model output has %zu non-finite values at step %d",
                         nb, i);
                member_finish(g, m, br->state.x);
            } else if (group[j] == 0) {
                mem[kept++] = m;
            }
        }
        if (!bad[rep[0]]) g->kind->step(br->state.solver, i, br->state.x, all[rep[0]]->guided);
        br->state.step = i + 1;
        br->count = bad[rep[0]] ? 0 : kept;
        sync_engine(g->e);
        const double update_seconds = clock_seconds() - update_start, update_cpu_seconds = cpu_seconds() - update_cpu;
        for (int j = 0; j < count; j++) {
            Member *m = all[j];
            RunRecord *rec = m->rec;
            StepRecord *r = &rec->step[i];
            if (g->total_members == 1) { /* a single run: the whole step, as it always was */
                r->wall_seconds = clock_seconds() - step_start;
                r->cpu_seconds = cpu_seconds() - step_cpu_start;
            } else { /* as if it had run alone: its calls and the update */
                r->wall_seconds = m->step_seconds + update_seconds;
                r->cpu_seconds = m->step_cpu + update_cpu_seconds;
                rec->wall_seconds += r->wall_seconds;
                rec->cpu_seconds += r->cpu_seconds;
            }
            const float *x = NULL;
            if (group[j] == 0) x = br->state.x;
            for (int f = 0; f < n_forks && !x; f++)
                for (int q = 0; q < forks[f].count && !x; q++)
                    if (forks[f].mem[q] == m) x = forks[f].state.x;
            if (rec->failed) continue;
            if (rs->record_latents) g->e->download(g->e, rec->latents + (size_t)i * g->n, x, g->n);
        }
        if (rs->progress && g->total_members == 1 && br->count > 0)
            rs->progress(rs->progress_user, i + 1, rs->steps, clock_seconds() - g->run_start);
    }
    for (int j = 0; j < br->count; j++) member_finish(g, br->mem[j], br->state.x);
    return 0;
}

static void sampling_release(Sampling *g) {
    const VecOps *ops = g->ops;
    free(g->host);
    free(g->sigmas);
    free(g->timesteps);
    free(g->plan.pattern);
    free(g->plan.density);
    free(g->dense_pattern);
    free(g->layer_attn[0]);
    free(g->layer_attn[1]);
    free(g->host_tokens[0]);
    free(g->host_tokens[1]);
    for (int b = 0; b < 2; b++) {
        if (g->text[b]) ops->release(ops->ctx, g->text[b]);
        if (g->y[b]) ops->release(ops->ctx, g->y[b]);
    }
    if (g->scratch_tokens) ops->release(ops->ctx, g->scratch_tokens);
}

static int sampling_init(Sampling *g, Engine *e, const RunSettings *rs, RunnerMember *members, int count,
                         RunnerShareStats *stats, Error *err) {
    const DitConfig *cfg = &e->model->cfg;
    memset(g, 0, sizeof *g);
    if (rs->steps < 1) return error_set(err, "steps must be >= 1, got %d", rs->steps);
    if (e->prepare(e, rs->F, rs->H, rs->W, err)) return -1;
    g->e = e, g->rs = rs, g->ops = e->ops, g->stats = stats, g->total_members = count;
    g->kind = rs->solver ? rs->solver : solver_by_name("euler");
    g->n = (size_t)cfg->in_dim * rs->F * rs->H * rs->W;
    g->text_n = (size_t)cfg->text_len * cfg->text_dim;
    g->n_tokens = (size_t)e->L * cfg->dim;
    g->branches = rs->guidance != 1.0f ? 2 : 1;
    const VecOps *ops = g->ops;
    int plans = 0, layer_ends = 0;
    for (int j = 0; j < count; j++) {
        plans |= members[j].strategy->attention_plan != NULL;
        layer_ends |= members[j].strategy->layer_end != NULL;
    }
    g->host = malloc(g->n * sizeof(float));
    g->sigmas = malloc((size_t)(rs->steps + 1) * sizeof(float));
    g->timesteps = malloc((size_t)rs->steps * sizeof(float));
    g->plan = (AttentionPlan){.num_heads = cfg->num_heads,
                              .pattern = calloc((size_t)cfg->num_heads, sizeof(AttnPattern))};
    if (plans) g->plan.density = calloc((size_t)cfg->num_heads, sizeof *g->plan.density);
    for (int b = 0; b < g->branches; b++) g->text[b] = ops->alloc(ops->ctx, g->text_n);
    int ok = g->host && g->sigmas && g->timesteps && g->plan.pattern && (!plans || g->plan.density) && g->text[0] &&
             (g->branches == 1 || g->text[1]);
    if (ok && count > 1) { /* what only a shared call needs */
        g->dense_pattern = calloc((size_t)cfg->num_heads, sizeof(AttnPattern));
        g->layer_attn[0] = calloc((size_t)cfg->num_layers, sizeof(double));
        g->layer_attn[1] = calloc((size_t)cfg->num_layers, sizeof(double));
        for (int b = 0; b < g->branches; b++) g->y[b] = ops->alloc(ops->ctx, g->n);
        ok = g->dense_pattern && g->layer_attn[0] && g->layer_attn[1] && g->y[0] && (g->branches == 1 || g->y[1]);
        if (ok && layer_ends) {
            g->scratch_tokens = ops->alloc(ops->ctx, g->n_tokens);
            g->host_tokens[0] = malloc(g->n_tokens * sizeof(float));
            g->host_tokens[1] = malloc(g->n_tokens * sizeof(float));
            ok = g->scratch_tokens && g->host_tokens[0] && g->host_tokens[1];
        }
    }
    if (!ok) {
        sampling_release(g);
        return error_set(err, "out of memory for a %dx%dx%d run", rs->F, rs->H, rs->W);
    }
    for (int b = 0; b < g->branches; b++) e->upload(e, g->text[b], rs->text[b], g->text_n);
    g->kind->schedule(rs->steps, rs->shift, g->sigmas, g->timesteps);
    return 0;
}

int runner_sample_shared(Engine *e, RunnerMember *members, int count, const RunSettings *rs, RunnerShareStats *stats,
                         Error *err) {
    if (count < 1) return error_set(err, "no settings to run");
    for (int j = 0; j < count; j++)
        if (count > 1 && !members[j].strategy->clone)
            return error_set(err, "strategy %s cannot be copied (no clone hook): it runs alone",
                             members[j].strategy->spec);
    Sampling g;
    if (sampling_init(&g, e, rs, members, count, stats, err)) return -1;
    Member *mem = calloc((size_t)count, sizeof *mem);
    Member **order = calloc((size_t)count, sizeof *order);
    Trajectory *stack = calloc((size_t)count + 1, sizeof *stack);
    int depth = 0, rc = -1;
    if (!mem || !order || !stack) {
        error_set(err, "out of memory for %d settings", count);
        goto done;
    }
    for (int j = 0; j < count; j++) {
        mem[j] = (Member){.s = members[j].strategy, .rec = members[j].rec, .final_x = members[j].final_x};
        order[j] = &mem[j];
        if (member_begin(&g, &mem[j], err)) goto done;
    }
    Trajectory root = {.mem = order, .count = count};
    if (state_alloc(&g, &root.state, err)) goto done;
    runner_initial_noise(g.host, g.n, rs->seed);
    e->upload(e, root.state.x, g.host, g.n);
    if (stats) stats->branches++;
    stack[depth++] = root;
    g.run_start = clock_seconds();
    const double cpu_start = cpu_seconds();
    rc = 0;
    while (depth > 0 && rc == 0) {
        Trajectory br = stack[--depth];
        rc = run_branch(&g, &br, stack, &depth, err);
        state_release(&g, &br.state);
        if (br.mem != order) free(br.mem);
    }
    if (rc == 0 && count == 1) { /* a single run: the sampling loop as a whole */
        members[0].rec->wall_seconds = clock_seconds() - g.run_start;
        members[0].rec->cpu_seconds = cpu_seconds() - cpu_start;
    }
done:
    while (depth > 0) { /* after an error: forks not run */
        Trajectory br = stack[--depth];
        state_release(&g, &br.state);
        if (br.mem != order) free(br.mem);
    }
    for (int j = 0; mem && j < count; j++) member_release(&g, &mem[j]);
    free(mem);
    free(order);
    free(stack);
    sampling_release(&g);
    return rc;
}

int runner_sample(Engine *e, Strategy *s, const RunSettings *rs, RunRecord *rec, float *final_x, Error *err) {
    RunnerMember one = {.strategy = s, .rec = rec, .final_x = final_x};
    return runner_sample_shared(e, &one, 1, rs, NULL, err);
}
