/* Strategy plug-ins: shared objects built against include/cachebench/strategy.h, loaded with --plugin FILE
 * (README "Test your own caching idea"). */
#ifndef CACHEBENCH_PLUGINS_H
#define CACHEBENCH_PLUGINS_H

#include "core/error.h"

/* Loads one plug-in and registers its strategy (strategies/strategy.h: strategy_register). Refused with a message
 * naming the file: a file dlopen cannot load, one without the entry points cachebench_strategy_abi and
 * cachebench_strategy_info (CACHEBENCH_STRATEGY_PLUGIN), one built against another interface version, a name that
 * is taken. The object stays loaded for the rest of the process. */
int plugin_load(const char *path, Error *err);

/* Loads every "--plugin FILE" / "--plugin=FILE" of argv, before the command parses its other flags (a sweep config
 * may name a plug-in's strategy). On failure prints "cachebench <cmd>: <message>" and returns -1. */
int plugins_load_from_args(const char *cmd, int argc, char **argv);

#endif
