/* The strategy table (DESIGN §4). A new strategy adds its StrategyInfo to the extern line and one table row. */
#include "strategies/strategy.h"

#include <stdio.h>
#include <string.h>

extern const StrategyInfo strategy_none_info, strategy_static_info, strategy_teacache_info, strategy_easycache_info;
extern const StrategyInfo strategy_svg_info, strategy_easycache_svg_info, strategy_teacache_svg_info;

static const StrategyInfo *const registry[] = {
    &strategy_none_info,      /* strategies/none.c: always compute (the baseline) */
    &strategy_static_info,    /* strategies/static.c: fixed interval */
    &strategy_teacache_info,  /* strategies/teacache.c: block-stack residual, modulation-input signal */
    &strategy_easycache_info, /* strategies/easycache.c: model output, transformation-rate signal */
    &strategy_svg_info,           /* strategies/svg.c: Sparse VideoGen block-sparse attention */
    &strategy_easycache_svg_info, /* strategies/step_svg.c: easycache steps, svg attention */
    &strategy_teacache_svg_info,  /* strategies/step_svg.c: teacache block stacks, svg attention */
};

/* Plug-ins registered at run time (strategy_register): the one piece of process state of the registry, written
 * only while the CLI loads its --plugin files, before any strategy is created. */
static const StrategyInfo *runtime[STRATEGY_MAX_RUNTIME];
static int runtime_count;

static int builtin_count(void) { return (int)(sizeof registry / sizeof registry[0]); }

int strategy_count(void) { return builtin_count() + runtime_count; }

const StrategyInfo *strategy_at(int i) {
    if (i < 0 || i >= strategy_count()) return NULL;
    return i < builtin_count() ? registry[i] : runtime[i - builtin_count()];
}

const StrategyInfo *strategy_find(const char *name) {
    for (int i = 0; i < strategy_count(); i++) {
        if (strcmp(strategy_at(i)->name, name) == 0) return strategy_at(i);
    }
    return NULL;
}

int strategy_register(const StrategyInfo *info, Error *err) {
    if (!info || !info->name || !info->create || !info->param_names)
        return error_set(err, "strategy has no name, create function or parameter list");
    size_t n = strlen(info->name);
    if (n == 0 || n >= 64 || strspn(info->name, "abcdefghijklmnopqrstuvwxyz0123456789_+-") != n)
        return error_set(err, "strategy name \"%.64s\" must be 1-63 characters of a-z, 0-9, '_', '+', '-'",
                         info->name);
    if (strategy_find(info->name)) return error_set(err, "a strategy named \"%s\" exists already", info->name);
    if (runtime_count == STRATEGY_MAX_RUNTIME)
        return error_set(err, "at most %d plug-in strategies at a time", STRATEGY_MAX_RUNTIME);
    runtime[runtime_count++] = info;
    return 0;
}

void strategy_list_names(char *buf, size_t cap) {
    if (!cap) return;
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < strategy_count(); i++) {
        int w = snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", strategy_at(i)->name);
        if (w < 0 || (size_t)w >= cap - used) return; /* truncated; still a valid string */
        used += (size_t)w;
    }
}
