/* libFuzzer target: strategy specs (strategies/strategy.c: strategy_parse_spec, then strategy_create through the
 * registry) on arbitrary text, with a valid environment. A spec that creates a strategy is then driven for a short
 * synthetic trajectory exactly as harness/runner.c calls the hooks, so out-of-range parameters that parse
 * (warmup=2147483647, thresh=1e308, ...) are exercised, not just parsed.
 *
 * Files: the environment's weights live in a private temporary folder holding a valid TeaCache coefficient file for
 * both variants, so the file-beside-weights lookup (model tiny) reads a real file, and the canonical spec, which
 * names that file, is created a second time. Specs whose coeffs value has a '/' in it are skipped: coeffs=/dev/stdin
 * or coeffs=../../dev/zero would block or never end, which is the file system's behaviour, not the parser's. Plain
 * names resolve in the working folder (the repository root under `make fuzz`), where they do not exist. */
#include "fuzz/fuzz_common.h"

#include <string.h>

#include "models/backend.h"
#include "strategies/strategy.h"

enum { STEPS = 6, N = 16, DIM = 4 };

static char weights_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    /* Not removed at exit: libFuzzer leaves through _exit in many paths. It is two tiny files in /tmp. */
    static char dir[] = "/tmp/cachebench-fuzz-spec-XXXXXX";
    if (!mkdtemp(dir)) abort();
    static const char *const files[] = {"teacache_coeffs_e.txt", "teacache_coeffs_e0.txt"};
    for (int i = 0; i < 2; i++) {
        char path[128];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        FILE *f = fopen(path, "w");
        if (!f) abort();
        fputs("# fuzz seed coefficients\n1 -2 3 -4 0.5\n", f);
        fclose(f);
    }
    snprintf(weights_path, sizeof weights_path, "%s/w.safetensors", dir);
    return 0;
}

/* The runner's call sequence for one model call (harness/runner.c model_call), on synthetic tensors. */
static void model_call(Strategy *s, const StepInfo *st, const float *x, float *y, float *tokens, const float *e,
                       const float *e0) {
    BranchTrace trace = {.computed = 1};
    if (s->model_begin && s->model_begin(s, st, x, N, &trace) == STRATEGY_REUSE) {
        s->model_reuse(s, st, x, y, N);
        return;
    }
    for (int i = 0; i < N; i++) tokens[i] = x[i] * 0.5f + 0.1f * (float)st->step;
    BlockInputs in = {.e = e, .e0 = e0, .dim = DIM, .tokens = tokens, .n_tokens = N};
    if (s->blocks_begin && s->blocks_begin(s, st, &in, &trace) == STRATEGY_REUSE) {
        s->blocks_reuse(s, st, tokens, N);
    } else {
        AttnPattern pattern[2] = {ATTN_DENSE, ATTN_DENSE};
        AttentionPlan plan = {.num_heads = 2, .pattern = pattern};
        for (int layer = 0; layer < 2; layer++) {
            if (s->attention_plan) s->attention_plan(s, st, layer, &plan);
            for (int i = 0; i < N; i++) tokens[i] = tokens[i] * 0.9f + 0.01f * (float)layer;
        }
        if (s->blocks_end) s->blocks_end(s, st, tokens, N);
    }
    memcpy(y, tokens, sizeof(float) * N);
    if (s->model_end) s->model_end(s, st, x, y, N);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *spec = fuzz_string(data, size);
    const char *coeffs = strstr(spec, "coeffs=");
    if (coeffs && strchr(coeffs, '/')) {
        free(spec);
        return 0;
    }
    /* The first byte picks the model: one with built-in TeaCache coefficients, or the tiny one (file lookup). */
    const char *model = size && (data[0] & 1) ? "wan2.1-t2v-1.3b" : "tiny";
    StrategyEnv env = {.num_steps = STEPS, .num_layers = 2, .num_heads = 2, .dim = DIM, .model_numel = N,
                       .tokens_numel = N, .ops = cpu_vec_ops(), .model_name = model, .weights_path = weights_path};
    StrategyParams params;
    Error err = {{0}};
    if (strategy_parse_spec(spec, &params, &err) == 0 && params.name[0] == '\0') abort(); /* parsed: has a name */
    Strategy s;
    if (strategy_create(&s, spec, &env, &err) == 0) {
        /* The canonical spec must parse back and create the same strategy. */
        Strategy again;
        char canonical[sizeof s.spec];
        memcpy(canonical, s.spec, sizeof canonical);
        if (strategy_create(&again, canonical, &env, &err) != 0) {
            fprintf(stderr, "canonical spec \"%s\" (from \"%s\") does not create: %s\n", canonical, spec, err.msg);
            abort();
        }
        if (strcmp(again.spec, canonical) != 0) {
            fprintf(stderr, "canonical spec \"%s\" is not stable: \"%s\"\n", canonical, again.spec);
            abort();
        }
        strategy_destroy(&again);

        float x[N], y[N], tokens[N], e[DIM], e0[6 * DIM];
        for (int t = 0; t < STEPS; t++) {
            for (int b = 0; b < 2; b++) {
                for (int i = 0; i < N; i++) x[i] = 1.0f - 0.1f * (float)t + 0.01f * (float)(i + b);
                for (int i = 0; i < DIM; i++) e[i] = 0.3f + 0.05f * (float)(t * i);
                for (int i = 0; i < 6 * DIM; i++) e0[i] = 0.2f - 0.03f * (float)(t + i);
                StepInfo st = {.step = t, .num_steps = STEPS, .branch = (Branch)b, .guidance_on = 1,
                               .timestep = 1000.0f * (1.0f - (float)t / STEPS), .sigma = 1.0f - (float)t / STEPS};
                model_call(&s, &st, x, y, tokens, e, e0);
            }
        }
        strategy_destroy(&s);
    } else if (!err.msg[0]) {
        fprintf(stderr, "strategy_create failed without a message for \"%s\"\n", spec);
        abort();
    }
    free(spec);
    return 0;
}
