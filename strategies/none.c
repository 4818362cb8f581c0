/* none — always compute.
 *
 * Every hook is NULL, so the runner computes every model call in full. Runs with this strategy are the baseline
 * that every other run is compared with (DESIGN §4). No parameters; canonical spec "none". */
#include "strategies/strategy.h"

#include <stdio.h>

static const char *const none_params[] = {NULL};

/* No state: the copy strategy_clone made of the struct is the whole clone. */
static int none_clone(Strategy *dst, const Strategy *src, Error *err) {
    (void)dst, (void)src, (void)err;
    return 0;
}

static int none_create(Strategy *s, const StrategyParams *p, const StrategyEnv *env, Error *err) {
    (void)p;
    (void)env;
    (void)err;
    s->clone = none_clone;
    snprintf(s->spec, sizeof s->spec, "none");
    return 0;
}

STRATEGY_REGISTER(strategy_none_info, 0) = {
    .name = "none",
    .summary = "always compute (the full-inference baseline)",
    .params_help = "(no parameters)",
    .param_names = none_params,
    .create = none_create,
};
