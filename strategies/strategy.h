/* The strategy interface (DESIGN §4), version 2. A strategy is one file in strategies/ that defines its StrategyInfo
 * with STRATEGY_REGISTER (below): nothing else to edit. The runner calls its hooks around every model call; every
 * hook may be NULL, and the runner knows nothing else about any strategy.
 *
 * Order of calls for one model call (one step, one branch), as made by harness/runner.c:
 *   model_begin(x)            -> STRATEGY_REUSE: model_reuse(x, y) and nothing else runs
 *                             -> STRATEGY_COMPUTE:
 *      embed (patch, time, text)
 *      blocks_begin(e, e0, tokens) -> STRATEGY_REUSE: blocks_reuse(tokens)   (tokens += cached residual)
 *                                  -> STRATEGY_COMPUTE: layer = 0; while layer < num_layers:
 *                                         attention_plan(layer)   (heads dense or sparse, SVG)
 *                                         module_plan(layer)      (each module computed or supplied, H2)
 *                                         block(layer)
 *                                         layer = layer_end(layer, tokens)   (continue, jump or stop, H1)
 *                                     blocks_end(tokens)          (after the last layer run, whatever the path)
 *      head -> y
 *   model_end(x, y)           (only after a computed model call, also when only the block stack was reused)
 * After both calls of a step: bytes_held() (H4), recorded per step with the run's peak.
 * Within a step the cond call comes first, then the uncond call (when guidance is on).
 *
 * Interface v2 (strategies-2.md §8):
 *   H1 layer_end returns the next layer to run: layer + 1 continues, a larger one jumps over the layers between,
 *      num_layers stops the stack (the head still runs). It may rewrite tokens in place (add a cached residual, or
 *      replace them with an approximation). Returning a layer <= the current one or > num_layers is an error that
 *      fails the run. A strategy that stops or jumps because it reused its cache sets trace->computed = 0.
 *   H2 module_plan receives a plan with every module COMPUTE and no output buffer. Setting out[m] under COMPUTE
 *      makes the engine copy the module's pre-gate output there (readable from layer_end on); SUPPLY makes the
 *      engine skip the module and take its output from out[m]. The engine applies this step's gates and residual
 *      adds either way (models/backend.h ModulePlan).
 *   H4 FLOPs count only what ran: embed and head of every computed call, each layer run less its supplied modules
 *      and its skipped attention. bytes_held reports what the strategy holds (caches, factors, tables).
 * A hook that cannot go on writes why into s->failure: the runner then fails the run with that message.
 * clone copies a strategy with its whole state (a shared-computation sweep forks a trajectory with it):
 *   dst arrives as a copy of *src (info, ops, spec and hooks) with state NULL; clone allocates dst->state as an
 *   independent copy, backend buffers included. A strategy without clone is run unshared.
 *
 * The runner fills a BranchTrace with defaults (computed = 1, the rest NAN) before each call; a strategy writes
 * its signal, accumulator (after the step), threshold and k into it from any hook of the call. */
#ifndef CACHEBENCH_STRATEGY_H
#define CACHEBENCH_STRATEGY_H

#include <stddef.h>

#include "core/error.h"
#include "models/backend.h"

/* The version of this interface as plug-ins see it (include/cachebench/strategy.h, the installed copy of these
 * types: tests/test_plugin.c keeps the two in step). Any change of a type below changes it. */
#define CACHEBENCH_STRATEGY_ABI 2

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

typedef struct {
    int computed;       /* 1 computed, 0 reused (model output or block stack) */
    float signal;       /* TeaCache rel-L1 / EasyCache increment; NAN when none */
    float accumulator;  /* after this step */
    float threshold;
    float k;            /* a second per-call quantity: EasyCache's transformation rate k, DiCache's gamma; NAN when none */
} BranchTrace;

/* What blocks_begin sees: the stage outputs of embed (backend memory). */
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
    const char *weights_path; /* may be NULL; strategies may look for data beside it (TeaCache coefficients) */
} StrategyEnv;

typedef struct Strategy Strategy;
struct Strategy {
    const struct StrategyInfo *info;
    void *state;
    const VecOps *ops;
    char spec[256];         /* canonical spec with every parameter, e.g. "easycache:thresh=0.05,warmup=10" */
    /* A hook that cannot go on (a cache it could not allocate) writes why here: the runner fails the run with this
     * message after the model call. Empty otherwise. */
    char failure[256];

    int (*model_begin)(Strategy *s, const StepInfo *st, const float *x, size_t n, BranchTrace *trace);
    void (*model_reuse)(Strategy *s, const StepInfo *st, const float *x, float *y, size_t n);
    void (*model_end)(Strategy *s, const StepInfo *st, const float *x, const float *y, size_t n);

    int (*blocks_begin)(Strategy *s, const StepInfo *st, const BlockInputs *in, BranchTrace *trace);
    void (*blocks_reuse)(Strategy *s, const StepInfo *st, float *tokens, size_t n);
    void (*blocks_end)(Strategy *s, const StepInfo *st, const float *tokens_out, size_t n);

    void (*attention_plan)(Strategy *s, const StepInfo *st, int layer, AttentionPlan *plan);

    /* Interface v2 (see the top of this file). */
    void (*module_plan)(Strategy *s, const StepInfo *st, int layer, ModulePlan *plan);
    int (*layer_end)(Strategy *s, const StepInfo *st, int layer, float *tokens, size_t n, BranchTrace *trace);
    size_t (*bytes_held)(const Strategy *s);
    int (*clone)(Strategy *dst, const Strategy *src, Error *err);

    void (*destroy)(Strategy *s);   /* frees state; NULL when there is none */
};

/* Parsed "name:key=value,key=value". Values keep their text; numbers are parsed by the getters. */
#define STRATEGY_MAX_PARAMS 16
typedef struct {
    char name[64];
    int count;
    char keys[STRATEGY_MAX_PARAMS][32];
    char values[STRATEGY_MAX_PARAMS][128];
} StrategyParams;

typedef struct StrategyInfo {
    const char *name;
    const char *summary;                 /* one line for --help */
    const char *params_help;             /* one line per parameter: name, range, default (`cachebench strategies`);
                                          * where a default departs from the official code, say so */
    const char *const *param_names;      /* NULL-terminated list of accepted keys */
    int (*create)(Strategy *s, const StrategyParams *p, const StrategyEnv *env, Error *err);
} StrategyInfo;

/* Parses the spec, checks the name and every key against the registry (the error lists the valid ones),
 * and calls the strategy's create. On success *s is ready and must be released with strategy_destroy. */
int strategy_create(Strategy *s, const char *spec, const StrategyEnv *env, Error *err);
void strategy_destroy(Strategy *s);
/* An independent copy of src with its whole state, through its clone hook; an error when it has none. On success
 * dst must be released with strategy_destroy. */
int strategy_clone(Strategy *dst, const Strategy *src, Error *err);
/* For clone hooks: a new backend buffer holding a copy of src's n floats; NULL when src is NULL (nothing to copy) or,
 * with *failed set to 1, when it could not be allocated. */
float *strategy_copy_buffer(const VecOps *ops, const float *src, size_t n, int *failed);
/* Bytes the strategy holds now (its bytes_held hook; 0 without one). */
size_t strategy_bytes_held(const Strategy *s);

int strategy_parse_spec(const char *spec, StrategyParams *out, Error *err);
/* Getters: return def when the key is absent; -1 with a message when the value does not parse or is out of range. */
int strategy_param_double(const StrategyParams *p, const char *key, double def, double lo, double hi, double *out,
                          Error *err);
int strategy_param_int(const StrategyParams *p, const char *key, int def, int lo, int hi, int *out, Error *err);
/* The "defaults" parameter: ours (absent) or official (the official script's defaults, where they differ: the
 * strategy says which). The canonical spec does not carry it: it carries the values it selected. */
int strategy_param_defaults(const StrategyParams *p, int *official, Error *err);
/* NULL when absent. */
const char *strategy_param_text(const StrategyParams *p, const char *key);
/* For creates writing s->spec: the shortest decimal text that reads back as exactly v ("0.05", not
 * "0.050000000000000003"), so a canonical spec parses back to the same parameters. */
void strategy_format_double(double v, char *buf, size_t cap);

/* Registers a strategy: write, at the start of a line of a file in strategies/,
 *     STRATEGY_REGISTER(strategy_foo_info, ORDER) = { .name = "foo", ... };
 * The build collects these lines (strategies/strategies.mk) into the table of strategies/registry.c, sorted by
 * ORDER: the strategy's rank in listings, reports and plots (none 0, static 10, teacache 20, ...; leave gaps). */
#define STRATEGY_REGISTER(info, order) const StrategyInfo info

/* Registry (strategies/registry.c). */
const StrategyInfo *strategy_find(const char *name);
int strategy_count(void);
const StrategyInfo *strategy_at(int i);
/* sha256 (hex) of the source file that registers info, taken at build time: what a record stores so that results of
 * changed strategy code can be told apart. "" for an unregistered info. */
const char *strategy_source_sha256(const StrategyInfo *info);
/* Writes "none, static, ..." into buf. */
void strategy_list_names(char *buf, size_t cap);
/* Adds a strategy at run time (a plug-in, harness/plugins.h), after the built-in ones, for the rest of the process.
 * Refused: a name that is taken or not made of [a-z0-9_+-], more than STRATEGY_MAX_RUNTIME strategies. */
#define STRATEGY_MAX_RUNTIME 8
int strategy_register(const StrategyInfo *info, Error *err);

#endif
