/* cachebench strategy plug-in interface, version 2 (installed by `make install` as
 * $PREFIX/include/cachebench/strategy.h). README "Test your own caching idea" walks through it.
 *
 * A plug-in is a shared object built outside the cachebench tree:
 *     cc -shared -fPIC -I$PREFIX/include mine.c -o mine.so
 *     cachebench sweep --plugin ./mine.so --strategy 'mine:thresh=0.1|0.2' ...
 * It defines one StrategyInfo and names it with CACHEBENCH_STRATEGY_PLUGIN(info) (the entry points). cachebench
 * refuses a plug-in built against another interface version, one without the entry points, and one whose name is
 * taken. The helper functions declared at the end are provided by the cachebench executable that loads the plug-in.
 *
 * This header is self-contained (it needs only the C standard headers). It declares the same types as the tree's
 * strategies/strategy.h, core/error.h and models/backend.h; tests/test_plugin.c checks that every size and field
 * offset agree, so a change of the interface that forgets this header fails the test suite. A change of any type
 * here is a change of CACHEBENCH_STRATEGY_ABI.
 *
 * The hooks (every one may be NULL), in the order the runner calls them for one model call (one step, one branch):
 *   model_begin(x)            -> STRATEGY_REUSE: model_reuse(x, y) and nothing else runs
 *                             -> STRATEGY_COMPUTE:
 *      embed (patch, time, text)
 *      blocks_begin(e, e0, tokens) -> STRATEGY_REUSE: blocks_reuse(tokens)   (tokens += cached residual)
 *                                  -> STRATEGY_COMPUTE: layer = 0; while layer < num_layers:
 *                                         attention_plan(layer), module_plan(layer), block(layer),
 *                                         layer = layer_end(layer, tokens)   (layer + 1, a jump, or num_layers)
 *                                     blocks_end(tokens)
 *      head -> y
 *   model_end(x, y)           (only after a computed model call, also when only the block stack was reused)
 * After both calls of a step: bytes_held(), recorded per step. clone copies a strategy with its state (sweeps that
 * share computation fork with it; without it your strategy runs unshared). strategies/strategy.h in the cachebench
 * tree documents each hook in full.
 * Within a step the cond call comes first, then the uncond call (when guidance is on). Buffers live in backend
 * memory (the GPU under --backend cuda): touch them only through the VecOps table (s->ops). */
#ifndef CACHEBENCH_PUBLIC_STRATEGY_H
#define CACHEBENCH_PUBLIC_STRATEGY_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CACHEBENCH_STRATEGY_ABI 2

typedef struct {
    char msg[1024];
} Error;
/* Formats the message into err (if non-NULL) and returns -1, so a create can `return error_set(err, ...)`. */
int error_set(Error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Vector operations on backend memory. Reductions return host doubles (accumulated in double). */
typedef struct {
    void *ctx;
    float *(*alloc)(void *ctx, size_t n);            /* n floats, zero-filled; NULL on failure */
    void (*release)(void *ctx, float *p);
    double (*mean_abs)(void *ctx, const float *a, size_t n);
    double (*mean_abs_diff)(void *ctx, const float *a, const float *b, size_t n);
    void (*sub)(void *ctx, float *out, const float *a, const float *b, size_t n); /* out = a - b */
    void (*add)(void *ctx, float *out, const float *a, const float *b, size_t n); /* out = a + b */
    void (*copy)(void *ctx, float *dst, const float *src, size_t n);
    size_t (*guide)(void *ctx, float *out, const float *vc, const float *vu, float g, size_t n);
    void (*axpby)(void *ctx, float *out, float a, const float *x, float b, const float *y, size_t n);
} VecOps;

/* Per-layer attention plan (attention-level strategies such as Sparse VideoGen fill it). */
typedef enum { ATTN_DENSE = 0, ATTN_SPATIAL = 1, ATTN_TEMPORAL = 2 } AttnPattern;

typedef struct {
    int num_heads;
    AttnPattern *pattern;   /* [num_heads]; NULL = all dense */
    int band_tokens;        /* half-width of the sparse band, in tokens; <= 0: the backend derives it from sparsity */
    double flops_dense;     /* filled by the backend */
    double flops_done;      /* filled by the backend */
    double sparsity;        /* target fraction of masked (query, key) pairs, used when band_tokens <= 0 */
    int block;              /* 128: Sparse VideoGen's band rounding and 128x128 blocks; 0: the exact band */
    int profile_rows;       /* > 0: classify every non-dense head now from this many query rows */
    unsigned long long profile_seed; /* seed of those rows */
    int frames, tokens_per_frame; /* filled by the backend for a sparse layer */
    int sink_tokens;
    float *density;
} AttentionPlan;

/* Per-layer module plan: each module's pre-gate output computed (copied to out[m] when non-NULL) or supplied by
 * you from out[m]; the engine applies this step's gates and residual adds either way. */
typedef enum { MODULE_SELF_ATTN = 0, MODULE_CROSS_ATTN = 1, MODULE_FFN = 2, MODULE_COUNT = 3 } BlockModule;
typedef enum { MODULE_COMPUTE = 0, MODULE_SUPPLY = 1 } ModuleMode;

typedef struct {
    ModuleMode mode[MODULE_COUNT];
    float *out[MODULE_COUNT];
} ModulePlan;

typedef enum { BRANCH_COND = 0, BRANCH_UNCOND = 1, BRANCH_COUNT = 2 } Branch;
typedef enum { STRATEGY_REUSE = 0, STRATEGY_COMPUTE = 1 } StrategyDecision;

typedef struct {
    int step;           /* 0-based sampling step */
    int num_steps;
    Branch branch;
    int guidance_on;    /* 0 when only the cond branch runs (guidance 1) */
    float timestep;     /* model timestep, sigma * 1000 */
    float sigma;
} StepInfo;

/* Filled with defaults (computed = 1, the rest NAN) before each call; write your signal, accumulator (after the
 * step), threshold and k (NAN when none) from any hook of the call: they are recorded per step and plotted. */
typedef struct {
    int computed;
    float signal;
    float accumulator;
    float threshold;
    float k;
} BranchTrace;

typedef struct {
    const float *e;     /* [dim] time embedding */
    const float *e0;    /* [6][dim] time projection (modulation input of every block) */
    size_t dim;
    const float *tokens;/* [L][dim] block-stack input */
    size_t n_tokens;    /* L * dim */
} BlockInputs;

typedef struct {
    int num_steps;
    int num_layers, num_heads, dim;
    size_t model_numel;     /* floats in one model input/output */
    size_t tokens_numel;    /* floats in the block-stack state */
    const VecOps *ops;
    const char *model_name; /* config name, e.g. "tiny" */
    const char *weights_path; /* may be NULL */
} StrategyEnv;

typedef struct Strategy Strategy;
struct Strategy {
    const struct StrategyInfo *info;
    void *state;            /* yours: allocate in create, free in destroy */
    const VecOps *ops;
    char spec[256];         /* write the canonical spec with every parameter, e.g. "mine:thresh=0.1,warmup=2" */
    char failure[256];      /* a hook that cannot go on writes why: the runner fails the run with it */

    int (*model_begin)(Strategy *s, const StepInfo *st, const float *x, size_t n, BranchTrace *trace);
    void (*model_reuse)(Strategy *s, const StepInfo *st, const float *x, float *y, size_t n);
    void (*model_end)(Strategy *s, const StepInfo *st, const float *x, const float *y, size_t n);

    int (*blocks_begin)(Strategy *s, const StepInfo *st, const BlockInputs *in, BranchTrace *trace);
    void (*blocks_reuse)(Strategy *s, const StepInfo *st, float *tokens, size_t n);
    void (*blocks_end)(Strategy *s, const StepInfo *st, const float *tokens_out, size_t n);

    void (*attention_plan)(Strategy *s, const StepInfo *st, int layer, AttentionPlan *plan);

    void (*module_plan)(Strategy *s, const StepInfo *st, int layer, ModulePlan *plan);
    int (*layer_end)(Strategy *s, const StepInfo *st, int layer, float *tokens, size_t n, BranchTrace *trace);
    size_t (*bytes_held)(const Strategy *s);
    int (*clone)(Strategy *dst, const Strategy *src, Error *err); /* dst = *src with state NULL: copy the state */

    void (*destroy)(Strategy *s);
};

#define STRATEGY_MAX_PARAMS 16
typedef struct {
    char name[64];
    int count;
    char keys[STRATEGY_MAX_PARAMS][32];
    char values[STRATEGY_MAX_PARAMS][128];
} StrategyParams;

typedef struct StrategyInfo {
    const char *name;                    /* lower-case letters, digits, '_', '+', '-'; not a built-in's name */
    const char *summary;                 /* one line for --help */
    const char *params_help;             /* one line per parameter: name, range, default (`cachebench strategies`);
                                          * may be NULL */
    const char *const *param_names;      /* NULL-terminated list of accepted keys (checked before create) */
    int (*create)(Strategy *s, const StrategyParams *p, const StrategyEnv *env, Error *err);
} StrategyInfo;

/* Provided by cachebench. Getters return def when the key is absent; -1 with a message when the value does not
 * parse or is out of range. */
int strategy_param_double(const StrategyParams *p, const char *key, double def, double lo, double hi, double *out,
                          Error *err);
int strategy_param_int(const StrategyParams *p, const char *key, int def, int lo, int hi, int *out, Error *err);
const char *strategy_param_text(const StrategyParams *p, const char *key);
/* The shortest decimal text that reads back as exactly v, for canonical specs. */
void strategy_format_double(double v, char *buf, size_t cap);

/* The entry points cachebench looks for: put `CACHEBENCH_STRATEGY_PLUGIN(my_info)` once in the plug-in. */
#define CACHEBENCH_STRATEGY_PLUGIN(info)                                                                               \
    int cachebench_strategy_abi(void) { return CACHEBENCH_STRATEGY_ABI; }                                              \
    const StrategyInfo *cachebench_strategy_info(void) { return &(info); }

#ifdef __cplusplus
}
#endif

#endif
