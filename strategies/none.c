/* none — always compute.
 *
 * Every hook is NULL, so the runner computes every model call in full. Runs with this strategy are the baseline
 * that every other run is compared with (DESIGN §4). No parameters; canonical spec "none". */
#include "strategies/strategy.h"

#include <stdio.h>

static const char *const none_params[] = {NULL};

static int none_create(Strategy *s, const StrategyParams *p, const StrategyEnv *env, Error *err) {
    (void)p;
    (void)env;
    (void)err;
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
