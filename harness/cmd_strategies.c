/* cachebench strategies: every registered strategy with its parameters, ranges and defaults. */
#include <stdio.h>
#include <string.h>

#include "harness/cli.h"
#include "strategies/strategy.h"

int cmd_strategies(int argc, char **argv) {
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("Usage: cachebench strategies\nLists every strategy with its parameters, ranges and defaults "
               "(spec: name[:key=value,...]).\n");
        return 0;
    }
    if (argc > 1) return cli_usage_error("strategies", "unexpected argument '%s'", argv[1]);
    for (int i = 0; i < strategy_count(); i++) {
        const StrategyInfo *s = strategy_at(i);
        printf("%s\n  %s\n", s->name, s->summary);
        const char *help = s->params_help ? s->params_help : "(parameters not documented)";
        for (const char *line = help; *line;) {
            const char *end = strchr(line, '\n');
            int len = end ? (int)(end - line) : (int)strlen(line);
            printf("    %.*s\n", len, line);
            line += len + (end != NULL);
        }
        if (i + 1 < strategy_count()) printf("\n");
    }
    return 0;
}
