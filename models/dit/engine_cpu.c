#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/dit/engine.h"

typedef struct {
    DitState state;
    int prepared;
} CpuEngine;

static CpuEngine *impl(Engine *e) { return e->impl; }

static int cpu_prepare(Engine *e, int F, int H, int W, Error *err) {
    CpuEngine *c = impl(e);
    if (c->prepared) dit_state_free(&c->state);
    c->prepared = 0;
    if (dit_state_init(&c->state, &e->model->cfg, F, H, W, err)) return -1;
    c->prepared = 1;
    e->L = c->state.L;
    return 0;
}

static void cpu_copy(Engine *e, float *dst, const float *src, size_t n) {
    (void)e;
    memcpy(dst, src, n * sizeof(float));
}

static void cpu_embed(Engine *e, const float *x, float t, const float *text) {
    dit_embed(e->model, &impl(e)->state, x, t, text);
}
static void cpu_block(Engine *e, int layer, AttentionPlan *plan, const ModulePlan *modules) {
    dit_block(e->model, &impl(e)->state, layer, plan, modules);
}
static void cpu_head(Engine *e, float *out) { dit_head(e->model, &impl(e)->state, out); }

/* "cpu: <model name> (<threads> threads)" from /proc/cpuinfo, for run records. */
static void describe_cpu(char *buf, size_t cap) {
    char model[96] = "unknown processor";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "model name", 10) == 0) {
                char *colon = strchr(line, ':');
                if (colon) {
                    snprintf(model, sizeof model, "%s", colon + 2);
                    model[strcspn(model, "\n")] = '\0';
                }
                break;
            }
        }
        fclose(f);
    }
    const int threads = omp_get_max_threads();
    snprintf(buf, cap, "cpu: %s (%d thread%s)", model, threads, threads == 1 ? "" : "s");
}

static float *cpu_tokens(Engine *e) { return impl(e)->state.tokens; }
static const float *cpu_time_embedding(Engine *e) { return impl(e)->state.e; }
static const float *cpu_time_projection(Engine *e) { return impl(e)->state.e0; }

static void cpu_destroy(Engine *e) {
    if (!e) return;
    CpuEngine *c = impl(e);
    if (c && c->prepared) dit_state_free(&c->state);
    free(c);
    free(e);
}

int engine_create_cpu(Engine **out, const DitModel *model, Error *err) {
    Engine *e = calloc(1, sizeof *e);
    CpuEngine *c = calloc(1, sizeof *c);
    if (!e || !c) {
        free(e);
        free(c);
        return error_set(err, "out of memory");
    }
    e->backend = "cpu";
    describe_cpu(e->device, sizeof e->device);
    e->ops = cpu_vec_ops();
    e->model = model;
    e->impl = c;
    e->prepare = cpu_prepare;
    e->upload = cpu_copy;
    e->download = cpu_copy;
    e->embed = cpu_embed;
    e->block = cpu_block;
    e->head = cpu_head;
    e->synchronize = NULL;
    e->tokens = cpu_tokens;
    e->time_embedding = cpu_time_embedding;
    e->time_projection = cpu_time_projection;
    e->destroy = cpu_destroy;
    *out = e;
    return 0;
}

#ifndef CACHEBENCH_CUDA
int engine_create(Engine **out, const char *backend, const DitModel *model, Error *err) {
    if (strcmp(backend, "cpu") == 0) return engine_create_cpu(out, model, err);
    if (strcmp(backend, "cuda") == 0)
        return error_set(err, "this build has no CUDA backend (nvcc was not found at build time, or CUDA=0)");
    return error_set(err, "unknown backend '%s' (valid: cpu, cuda)", backend);
}
#endif
