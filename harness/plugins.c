/* Strategy plug-ins (definitions: plugins.h). */
#include "harness/plugins.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "strategies/strategy.h"

int plugin_load(const char *path, Error *err) {
    /* dlopen searches the library path for a bare name; a plug-in is a file the user names. */
    char local[4096];
    if (!strchr(path, '/')) snprintf(local, sizeof local, "./%s", path);
    else snprintf(local, sizeof local, "%s", path);
    void *h = dlopen(local, RTLD_NOW | RTLD_LOCAL);
    if (!h) return error_set(err, "plug-in %s: cannot load: %s", path, dlerror());
    int (*abi)(void) = (int (*)(void))dlsym(h, "cachebench_strategy_abi");
    const StrategyInfo *(*info)(void) = (const StrategyInfo *(*)(void))dlsym(h, "cachebench_strategy_info");
    if (!abi || !info) {
        dlclose(h);
        return error_set(err, "plug-in %s: not a cachebench strategy plug-in (entry point %s missing: put "
                              "CACHEBENCH_STRATEGY_PLUGIN(your_info) in it, see `cachebench new-strategy`)",
                         path, !abi ? "cachebench_strategy_abi" : "cachebench_strategy_info");
    }
    int version = abi();
    if (version != CACHEBENCH_STRATEGY_ABI) {
        dlclose(h);
        return error_set(err, "plug-in %s: built against strategy interface version %d, this cachebench has "
                              "version %d: rebuild it against this cachebench's include/cachebench/strategy.h",
                         path, version, CACHEBENCH_STRATEGY_ABI);
    }
    if (strategy_register(info(), err)) {
        dlclose(h);
        return error_prefix(err, "plug-in %s", path);
    }
    return 0; /* h stays open: the registry points into it */
}

int plugins_load_from_args(const char *cmd, int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) break;
        const char *path = NULL;
        if (strcmp(argv[i], "--plugin") == 0 && i + 1 < argc) path = argv[++i];
        else if (strncmp(argv[i], "--plugin=", 9) == 0) path = argv[i] + 9;
        if (!path) continue;
        Error err = {{0}};
        if (plugin_load(path, &err)) {
            fprintf(stderr, "cachebench %s: %s\n", cmd, err.msg);
            return -1;
        }
    }
    return 0;
}
