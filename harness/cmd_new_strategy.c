/* cachebench new-strategy NAME: writes NAME.c, a commented, working strategy plug-in to start from.
 * examples/mycache.c is this template written for NAME = mycache (tests/test_plugin.c keeps them equal). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "harness/cli.h"
#include "strategies/strategy.h"

/* @NAME@ is replaced with the strategy's name. */
static const char TEMPLATE[] =
    "/* @NAME@: a caching strategy plug-in for cachebench, written by `cachebench new-strategy @NAME@`.\n"
    " *\n"
    " * Build and try it (PREFIX: where `make install PREFIX=...` put cachebench; in a cachebench checkout use -Iinclude):\n"
    " *     cc -O2 -shared -fPIC -I$PREFIX/include @NAME@.c -o @NAME@.so\n"
    " *     cachebench sweep --plugin ./@NAME@.so --prompts prompts.txt --steps 20 --out sweep \\\n"
    " *         --strategy '@NAME@:thresh=0.05|0.1|0.2' --strategy 'easycache:thresh=0.05|0.1|0.2'\n"
    " *     cachebench compare sweep --strategy @NAME@ --against easycache\n"
    " *\n"
    " * The idea as written (replace it with yours): reuse the model's last transformation while the model input has\n"
    " * changed little. Per branch (cond / uncond):\n"
    " *     change_t = mean|x_t - x_{t-1}| / mean|x_{t-1}|         (relative L1 change of the input since the last call)\n"
    " *     acc     += change_t;  reuse while acc < thresh, else compute and reset acc to 0\n"
    " *     reuse:   y_t = x_t + Δ,   Δ = y_c - x_c of the branch's last computed call c\n"
    " * The first `warmup` steps and the last step always compute. Parameters: thresh (default 0.1), warmup (default 2).\n"
    " *\n"
    " * Rules of the interface (include/cachebench/strategy.h has the details):\n"
    " *   - Buffers (x, y) live in backend memory, the GPU under --backend cuda: read and write them only through the\n"
    " *     VecOps table s->ops, never by dereferencing them.\n"
    " *   - Computing is always correct, only slower: when in doubt (no cached Δ yet, a failed allocation), compute.\n"
    " *   - create() writes the canonical spec with every parameter into s->spec, so that a run records exactly what ran.\n"
    " *   - The trace (signal, accumulator, threshold, k) is recorded per step and plotted; NAN where it has no meaning. */\n"
    "#include <cachebench/strategy.h>\n"
    "\n"
    "#include <math.h>\n"
    "#include <stdio.h>\n"
    "#include <stdlib.h>\n"
    "\n"
    "typedef struct {\n"
    "    float *prev_x;      /* [n] the branch's last input; NULL until the first call */\n"
    "    float *delta;       /* [n] y - x of the last computed call; NULL until the first model_end */\n"
    "    size_t n;\n"
    "    double acc;\n"
    "} Branch@NAME@;\n"
    "\n"
    "typedef struct {\n"
    "    double thresh;\n"
    "    int warmup;\n"
    "    Branch@NAME@ br[BRANCH_COUNT];\n"
    "} State@NAME@;\n"
    "\n"
    "static int @NAME@_model_begin(Strategy *s, const StepInfo *st, const float *x, size_t n, BranchTrace *trace) {\n"
    "    State@NAME@ *S = s->state;\n"
    "    Branch@NAME@ *b = &S->br[st->branch];\n"
    "    const VecOps *ops = s->ops;\n"
    "    if (b->n != n) { /* first call, or the geometry changed: start this branch afresh */\n"
    "        ops->release(ops->ctx, b->prev_x);\n"
    "        ops->release(ops->ctx, b->delta);\n"
    "        b->prev_x = ops->alloc(ops->ctx, n);\n"
    "        b->delta = NULL;\n"
    "        b->n = n;\n"
    "        b->acc = 0;\n"
    "        if (b->prev_x) ops->copy(ops->ctx, b->prev_x, x, n);\n"
    "        trace->computed = 1;\n"
    "        return STRATEGY_COMPUTE;\n"
    "    }\n"
    "    double ref = b->prev_x ? ops->mean_abs(ops->ctx, b->prev_x, n) : 0;\n"
    "    double change = ref > 0 ? ops->mean_abs_diff(ops->ctx, x, b->prev_x, n) / ref : INFINITY;\n"
    "    if (b->prev_x) ops->copy(ops->ctx, b->prev_x, x, n);\n"
    "    int must = st->step < S->warmup || st->step == st->num_steps - 1 || !b->delta;\n"
    "    b->acc += change;\n"
    "    int compute = must || b->acc >= S->thresh;\n"
    "    if (compute) b->acc = 0;\n"
    "    trace->computed = compute;\n"
    "    trace->signal = (float)change;\n"
    "    trace->accumulator = (float)b->acc;\n"
    "    trace->threshold = (float)S->thresh;\n"
    "    trace->k = NAN;\n"
    "    return compute ? STRATEGY_COMPUTE : STRATEGY_REUSE;\n"
    "}\n"
    "\n"
    "static void @NAME@_model_reuse(Strategy *s, const StepInfo *st, const float *x, float *y, size_t n) {\n"
    "    State@NAME@ *S = s->state;\n"
    "    s->ops->add(s->ops->ctx, y, x, S->br[st->branch].delta, n);\n"
    "}\n"
    "\n"
    "static void @NAME@_model_end(Strategy *s, const StepInfo *st, const float *x, const float *y, size_t n) {\n"
    "    State@NAME@ *S = s->state;\n"
    "    Branch@NAME@ *b = &S->br[st->branch];\n"
    "    if (!b->delta) b->delta = s->ops->alloc(s->ops->ctx, n);\n"
    "    if (b->delta) s->ops->sub(s->ops->ctx, b->delta, y, x, n);\n"
    "}\n"
    "\n"
    "static void @NAME@_destroy(Strategy *s) {\n"
    "    State@NAME@ *S = s->state;\n"
    "    if (!S) return;\n"
    "    for (int i = 0; i < BRANCH_COUNT; i++) {\n"
    "        s->ops->release(s->ops->ctx, S->br[i].prev_x);\n"
    "        s->ops->release(s->ops->ctx, S->br[i].delta);\n"
    "    }\n"
    "    free(S);\n"
    "    s->state = NULL;\n"
    "}\n"
    "\n"
    "/* A copy with its whole state (a sweep that shares computation between settings forks trajectories with it). */\n"
    "static int @NAME@_clone(Strategy *dst, const Strategy *src, Error *err) {\n"
    "    const State@NAME@ *S = src->state;\n"
    "    const VecOps *ops = src->ops;\n"
    "    State@NAME@ *D = malloc(sizeof *D);\n"
    "    if (!D) return error_set(err, \"@NAME@: out of memory\");\n"
    "    *D = *S;\n"
    "    dst->state = D;\n"
    "    int ok = 1;\n"
    "    for (int i = 0; i < BRANCH_COUNT; i++) {\n"
    "        float **bufs[2] = {&D->br[i].prev_x, &D->br[i].delta};\n"
    "        for (int j = 0; j < 2; j++) {\n"
    "            const float *from = *bufs[j];\n"
    "            *bufs[j] = from ? ops->alloc(ops->ctx, D->br[i].n) : NULL;\n"
    "            if (from && *bufs[j]) ops->copy(ops->ctx, *bufs[j], from, D->br[i].n);\n"
    "            ok &= !from || *bufs[j] != NULL;\n"
    "        }\n"
    "    }\n"
    "    if (!ok) {\n"
    "        @NAME@_destroy(dst);\n"
    "        return error_set(err, \"@NAME@: out of memory for a copy of the cache\");\n"
    "    }\n"
    "    return 0;\n"
    "}\n"
    "\n"
    "static int @NAME@_create(Strategy *s, const StrategyParams *p, const StrategyEnv *env, Error *err) {\n"
    "    (void)env; /* env: num_steps, model sizes, the weights' path (for data files beside them) */\n"
    "    State@NAME@ *S = calloc(1, sizeof *S);\n"
    "    if (!S) return error_set(err, \"@NAME@: out of memory\");\n"
    "    s->state = S;\n"
    "    s->destroy = @NAME@_destroy; /* set first: a failed create is cleaned up through it */\n"
    "    if (strategy_param_double(p, \"thresh\", 0.1, 0.0, 1e6, &S->thresh, err) ||\n"
    "        strategy_param_int(p, \"warmup\", 2, 0, 100000, &S->warmup, err))\n"
    "        return -1;\n"
    "    s->model_begin = @NAME@_model_begin;\n"
    "    s->model_reuse = @NAME@_model_reuse;\n"
    "    s->model_end = @NAME@_model_end;\n"
    "    s->clone = @NAME@_clone;\n"
    "    char t[32];\n"
    "    strategy_format_double(S->thresh, t, sizeof t);\n"
    "    snprintf(s->spec, sizeof s->spec, \"@NAME@:thresh=%s,warmup=%d\", t, S->warmup);\n"
    "    return 0;\n"
    "}\n"
    "\n"
    "static const char *const @NAME@_params[] = {\"thresh\", \"warmup\", NULL};\n"
    "\n"
    "static const StrategyInfo @NAME@_info = {\n"
    "    .name = \"@NAME@\",\n"
    "    .summary = \"reuse the last transformation while the input changes little (plug-in)\",\n"
    "    .params_help = \"thresh  accumulated relative input change that forces a compute, >= 0 (default 0.1)\\n\"\n"
    "                   \"warmup  leading steps always computed, >= 0 (default 2)\",\n"
    "    .param_names = @NAME@_params,\n"
    "    .create = @NAME@_create,\n"
    "};\n"
    "\n"
    "CACHEBENCH_STRATEGY_PLUGIN(@NAME@_info)\n";

static void new_strategy_usage(FILE *out) {
    fprintf(out,
            "Usage: cachebench new-strategy NAME [--out FILE]\n"
            "Writes FILE (default NAME.c), a commented strategy plug-in that builds and runs as it is: the\n"
            "interface, its rules, and a small working idea to replace with yours. NAME: a letter, then letters,\n"
            "digits or '_' (lower case), not the name of a built-in strategy. An existing FILE is never overwritten.\n"
            "Build it with: cc -O2 -shared -fPIC -I$PREFIX/include NAME.c -o NAME.so   (PREFIX: make install's)\n"
            "and load it with --plugin ./NAME.so in run, sweep and check.\n"
            "  --out FILE           where to write (default NAME.c)\n"
            "  --help               this text\n"
            "Exit status: 0 written, 1 error (file exists, cannot write), 2 bad usage.\n");
}

int cmd_new_strategy(int argc, char **argv) {
    enum { OPT_OUT = 1000, OPT_HELP };
    static const struct option options[] = {
        {"out", required_argument, 0, OPT_OUT}, {"help", no_argument, 0, OPT_HELP}, {0, 0, 0, 0}};
    const char *out = NULL;
    int opt;
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case OPT_OUT: out = optarg; break;
        case OPT_HELP: new_strategy_usage(stdout); return 0;
        default: return cli_usage_error("new-strategy", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 1) return cli_usage_error("new-strategy", "expected one strategy name");
    const char *name = argv[optind];
    size_t len = strlen(name);
    if (len == 0 || len > 40 || name[0] < 'a' || name[0] > 'z' ||
        strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_") != len)
        return cli_usage_error("new-strategy",
                               "invalid name '%s': a lower-case letter, then lower-case letters, digits or '_' (at "
                               "most 40; it becomes part of C identifiers)",
                               name);
    if (strategy_find(name))
        return cli_usage_error("new-strategy", "'%s' is the name of a built-in strategy; choose another", name);
    char path[4096];
    if (out) snprintf(path, sizeof path, "%s", out);
    else snprintf(path, sizeof path, "%s.c", name);
    /* O_EXCL: never overwrite someone's strategy. */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) {
        fprintf(stderr, "cachebench new-strategy: %s: %s\n", path,
                errno == EEXIST ? "exists already (not overwritten)" : strerror(errno));
        return 1;
    }
    FILE *f = fdopen(fd, "w");
    for (const char *p = TEMPLATE; f && *p;) {
        const char *at = strstr(p, "@NAME@");
        size_t n = at ? (size_t)(at - p) : strlen(p);
        fwrite(p, 1, n, f);
        if (!at) break;
        fputs(name, f);
        p = at + 6;
    }
    int bad = !f || ferror(f);
    if (f ? fclose(f) : close(fd)) bad = 1;
    if (bad) {
        unlink(path);
        fprintf(stderr, "cachebench new-strategy: %s: write error\n", path);
        return 1;
    }
    printf("wrote %s: build it with  cc -O2 -shared -fPIC -I$PREFIX/include %s -o %s.so\n", path, path, name);
    return 0;
}
