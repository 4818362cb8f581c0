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

int strategy_count(void) { return (int)(sizeof registry / sizeof registry[0]); }

const StrategyInfo *strategy_at(int i) { return i >= 0 && i < strategy_count() ? registry[i] : NULL; }

const StrategyInfo *strategy_find(const char *name) {
    for (int i = 0; i < strategy_count(); i++) {
        if (strcmp(registry[i]->name, name) == 0) return registry[i];
    }
    return NULL;
}

void strategy_list_names(char *buf, size_t cap) {
    if (!cap) return;
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < strategy_count(); i++) {
        int w = snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", registry[i]->name);
        if (w < 0 || (size_t)w >= cap - used) return; /* truncated; still a valid string */
        used += (size_t)w;
    }
}
