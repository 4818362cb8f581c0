/* teacache — reuse the block-stack residual while the accumulated, rescaled change of the timestep modulation
 * stays below a threshold (TeaCache, Liu et al. 2024, "Timestep Embedding Tells: It's Time to Cache for Video
 * Diffusion Model").
 *
 * Per branch b (cond and uncond are independent: own m_prev, own accumulator, own residual), at step t:
 *     m_t      = e  (variant e: the time embedding, [dim])   or   e0 (variant e0: the time projection, [6][dim])
 *     signal   = mean|m_t - m_prev| / mean|m_prev|
 *     A_b     += poly_c(signal),  poly_c(s) = c0 s^4 + c1 s^3 + c2 s^2 + c3 s + c4   (Horner, in double)
 *     compute when A_b >= δ (then A_b = 0), else reuse:  tokens += r_b,
 *     r_b      = blocks_out - blocks_in  of the branch's last computed block stack
 *     m_prev   = m_t on every call, computed or not
 * Warm-up (t < warmup) and cutoff (t >= num_steps - cutoff): compute with A_b = 0 and no signal measured.
 * A branch's first call (no m_prev yet) computes.
 *
 * Parameters (spec "teacache:thresh=0.08,variant=e,warmup=1,cutoff=1"):
 *     thresh   δ >= 0                                  default 0.08
 *     variant  e | e0                                  default e
 *     warmup   steps computed first, >= 0              default 1 for e, 5 for e0
 *     cutoff   final steps always computed, >= 0       default 1 for e, 0 for e0 (so e0 may reuse the last step)
 *     coeffs   coefficient file (strategies/teacache.h) optional
 * Coefficients: coeffs=FILE when given; else the official values built in for "wan2.1-t2v-1.3b" and
 * "wan2.1-t2v-14b"; else the file teacache_coeffs_<variant>.txt in the directory of the weights, written by
 * `cachebench calibrate`. The canonical spec names the file when coefficients came from one.
 *
 * Published script: TeaCache4Wan2.1/teacache_generate.py (ali-vilab/TeaCache), which this follows step for step:
 * the same two signals (`e` / `e0` with use_ret_steps), the same warm-up and cutoff (ret_steps = 1 or 5 steps,
 * cutoff_steps = last step or none), m_prev updated on every call, residual reuse per branch, and the accumulator
 * compared with `<` for reuse. Its warm-up and cutoff count model calls (2 per step with CFG); ours count steps.
 *
 * Notes. δ = 0 computes every step only while poly_c(signal) >= 0; a fitted polynomial can be negative for small
 * signals (the official e0 Wan2.1-1.3B one: c4 = -0.05), and then the accumulator goes negative and even δ = 0
 * reuses — as in the official script. When mean|m_prev| = 0 the signal is undefined: that call computes, signal
 * NAN. Trace: signal (NAN in warm-up/cutoff and first calls), accumulator A_b after the step (0 on a computed
 * step: the value that crossed δ is the previous step's accumulator plus poly_c(signal)), threshold δ, k NAN. */
#include "strategies/teacache.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "strategies/strategy.h"

typedef struct {
    float *m_prev;      /* [m_n] modulation input of the previous call */
    size_t m_n;
    float *tokens_in;   /* [t_n] block-stack input of the current computed call (blocks_begin -> blocks_end) */
    float *residual;    /* [t_n] blocks_out - blocks_in of the last computed call */
    size_t t_n;
    int have_m, have_residual;
    double acc;
} TeaBranch;

typedef struct {
    double thresh;
    int use_e0;
    int warmup, cutoff;
    double c[5];
    TeaBranch br[BRANCH_COUNT];
} TeaState;

static const double wan13b_e[5] = {2.39676752e+03, -1.31110545e+03, 2.01331979e+02, -8.29855975e+00, 1.37887774e-01};
static const double wan13b_e0[5] = {-5.21862437e+04, 9.23041404e+03, -5.28275948e+02, 1.36987616e+01,
                                    -4.99875664e-02};
static const double wan14b_e[5] = {-5784.54975374, 5449.50911966, -1811.16591783, 256.27178429, -13.02252404};
static const double wan14b_e0[5] = {-3.03318725e+05, 4.90537029e+04, -2.65530556e+03, 5.87365115e+01,
                                    -3.15583525e-01};

static double poly4(const double c[5], double s) {
    double v = c[0];
    for (int i = 1; i < 5; i++) v = v * s + c[i];
    return v;
}

/* Makes *buf hold n floats; a buffer of another size is replaced. Returns 0, or -1 when allocation failed. */
static int ensure(const VecOps *ops, float **buf, size_t *have_n, size_t n) {
    if (*buf && *have_n == n) return 0;
    if (*buf) ops->release(ops->ctx, *buf);
    *buf = ops->alloc(ops->ctx, n);
    *have_n = *buf ? n : 0;
    return *buf ? 0 : -1;
}

/* Holds tokens_in and residual at n floats each; -1 when either could not be allocated (the branch then keeps
 * computing, which is always correct). */
static int tea_token_buffers(const VecOps *ops, TeaBranch *b, size_t n) {
    if (b->t_n != n) {
        if (b->tokens_in) ops->release(ops->ctx, b->tokens_in);
        if (b->residual) ops->release(ops->ctx, b->residual);
        b->tokens_in = b->residual = NULL;
        b->have_residual = 0;
        b->t_n = n;
    }
    if (!b->tokens_in) b->tokens_in = ops->alloc(ops->ctx, n);
    if (!b->residual) b->residual = ops->alloc(ops->ctx, n);
    return b->tokens_in && b->residual ? 0 : -1;
}

/* Per branch: the previous modulation input, and the stack input and residual once allocated. */
static size_t tea_bytes_held(const Strategy *s) {
    const TeaState *T = s->state;
    size_t bytes = 0;
    for (int i = 0; i < BRANCH_COUNT; i++) {
        const TeaBranch *b = &T->br[i];
        bytes += (b->m_prev ? b->m_n : 0) * sizeof(float);
        bytes += ((b->tokens_in ? b->t_n : 0) + (b->residual ? b->t_n : 0)) * sizeof(float);
    }
    return bytes;
}

static int tea_blocks_begin(Strategy *s, const StepInfo *st, const BlockInputs *in, BranchTrace *trace) {
    TeaState *T = s->state;
    TeaBranch *b = &T->br[st->branch];
    const VecOps *ops = s->ops;
    const float *m = T->use_e0 ? in->e0 : in->e;
    size_t m_n = T->use_e0 ? 6 * in->dim : in->dim;
    int forced = st->step < T->warmup || st->step >= st->num_steps - T->cutoff;

    if (b->m_n != m_n) b->have_m = 0; /* another model: nothing to compare with */
    if (b->t_n != in->n_tokens) b->have_residual = 0;
    double signal = NAN;
    int compute = 1;
    if (!forced && b->have_m) {
        double den = ops->mean_abs(ops->ctx, b->m_prev, m_n);
        if (den > 0.0) {
            signal = ops->mean_abs_diff(ops->ctx, m, b->m_prev, m_n) / den;
            b->acc += poly4(T->c, signal);
            compute = !(b->acc < T->thresh) || !b->have_residual;
        }
    }
    if (compute) b->acc = 0.0;
    if (ensure(ops, &b->m_prev, &b->m_n, m_n) == 0) {
        ops->copy(ops->ctx, b->m_prev, m, m_n);
        b->have_m = 1;
    } else {
        b->have_m = 0;
    }
    if (compute && tea_token_buffers(ops, b, in->n_tokens) == 0) {
        /* The residual needs this call's input, and the runner updates the tokens in place. */
        ops->copy(ops->ctx, b->tokens_in, in->tokens, in->n_tokens);
    }
    trace->computed = compute;
    trace->signal = (float)signal;
    trace->accumulator = (float)b->acc;
    trace->threshold = (float)T->thresh;
    trace->k = NAN;
    return compute ? STRATEGY_COMPUTE : STRATEGY_REUSE;
}

static void tea_blocks_reuse(Strategy *s, const StepInfo *st, float *tokens, size_t n) {
    TeaState *T = s->state;
    s->ops->add(s->ops->ctx, tokens, tokens, T->br[st->branch].residual, n);
}

static void tea_blocks_end(Strategy *s, const StepInfo *st, const float *tokens_out, size_t n) {
    TeaState *T = s->state;
    TeaBranch *b = &T->br[st->branch];
    const VecOps *ops = s->ops;
    if (!b->tokens_in || !b->residual || b->t_n != n) return; /* no buffers: this branch keeps computing */
    ops->sub(ops->ctx, b->residual, tokens_out, b->tokens_in, n);
    b->have_residual = 1;
}

static void tea_destroy(Strategy *s) {
    TeaState *T = s->state;
    if (!T) return;
    for (int i = 0; i < BRANCH_COUNT; i++) {
        float *bufs[3] = {T->br[i].m_prev, T->br[i].tokens_in, T->br[i].residual};
        for (int j = 0; j < 3; j++) {
            if (bufs[j]) s->ops->release(s->ops->ctx, bufs[j]);
        }
    }
    free(T);
    s->state = NULL;
}

static int tea_clone(Strategy *dst, const Strategy *src, Error *err) {
    const TeaState *S = src->state;
    TeaState *D = malloc(sizeof *D);
    if (!D) return error_set(err, "teacache: out of memory");
    *D = *S;
    dst->state = D;
    int failed = 0;
    for (int i = 0; i < BRANCH_COUNT; i++) {
        const TeaBranch *b = &S->br[i];
        D->br[i].m_prev = strategy_copy_buffer(src->ops, b->m_prev, b->m_n, &failed);
        D->br[i].tokens_in = strategy_copy_buffer(src->ops, b->tokens_in, b->t_n, &failed);
        D->br[i].residual = strategy_copy_buffer(src->ops, b->residual, b->t_n, &failed);
    }
    if (failed) {
        tea_destroy(dst);
        return error_set(err, "teacache: out of memory for a copy of the cache");
    }
    return 0;
}

int teacache_read_coeffs(const char *path, double coeffs[5], Error *err) {
    FILE *f = fopen(path, "r");
    if (!f) return error_set(err, "%s: cannot open TeaCache coefficients: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    int count = 0, lineno = 0, rc = 0;
    while (rc == 0 && getline(&line, &cap, f) >= 0) {
        lineno++;
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '#') continue;
        char *save = NULL;
        for (char *tok = strtok_r(p, " \t\r\n", &save); tok; tok = strtok_r(NULL, " \t\r\n", &save)) {
            char *end;
            errno = 0;
            double v = strtod(tok, &end);
            if (end == tok || *end || errno == ERANGE || !isfinite(v)) {
                rc = error_set(err, "%s:%d: \"%s\" is not a finite number", path, lineno, tok);
                break;
            }
            if (count == 5) {
                rc = error_set(err, "%s:%d: more than 5 coefficients", path, lineno);
                break;
            }
            coeffs[count++] = v;
        }
    }
    if (rc == 0 && ferror(f)) rc = error_set(err, "%s: read error", path);
    if (rc == 0 && count != 5)
        rc = error_set(err, "%s: expected 5 coefficients (highest degree first), found %d", path, count);
    free(line);
    fclose(f);
    return rc;
}

int teacache_write_coeffs(const char *path, const double c[5], const char *comment, Error *err) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) return error_set(err, "%s: path too long", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return error_set(err, "%s: cannot create: %s", tmp, strerror(errno));
    for (const char *p = comment; p && *p;) {
        const char *nl = strchr(p, '\n');
        int len = nl ? (int)(nl - p) : (int)strlen(p);
        fprintf(f, "# %.*s\n", len, p);
        p = nl ? nl + 1 : p + len;
    }
    fprintf(f, "# TeaCache polynomial, highest degree first: c0 s^4 + c1 s^3 + c2 s^2 + c3 s + c4\n");
    for (int i = 0; i < 5; i++) {
        char num[32];
        strategy_format_double(c[i], num, sizeof num);
        fprintf(f, "%s%s", num, i < 4 ? " " : "\n");
    }
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        remove(tmp);
        return error_set(err, "%s: write failed", tmp);
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return error_set(err, "%s: cannot rename %s into place: %s", path, tmp, strerror(e));
    }
    return 0;
}

/* Fills c from coeffs=FILE, the built-in Wan2.1 values, or the file beside the weights; *from_file gets the path
 * that was read ("" for built-in values). */
static int tea_coeffs(const StrategyParams *p, const StrategyEnv *env, int use_e0, double c[5], char *from_file,
                      size_t cap, Error *err) {
    const char *variant = use_e0 ? "e0" : "e";
    const char *model = env->model_name ? env->model_name : "(unnamed)";
    const char *given = strategy_param_text(p, "coeffs");
    from_file[0] = '\0';
    if (!given) {
        const double *builtin = NULL;
        if (strcmp(model, "wan2.1-t2v-1.3b") == 0) builtin = use_e0 ? wan13b_e0 : wan13b_e;
        if (strcmp(model, "wan2.1-t2v-14b") == 0) builtin = use_e0 ? wan14b_e0 : wan14b_e;
        if (builtin) {
            memcpy(c, builtin, 5 * sizeof *c);
            return 0;
        }
        if (!env->weights_path)
            return error_set(err,
                             "teacache: no built-in coefficients for model %s and no weights directory to look in: "
                             "run `cachebench calibrate` and pass coeffs=FILE",
                             model);
        const char *slash = strrchr(env->weights_path, '/');
        int dir_len = slash ? (int)(slash - env->weights_path) : 1;
        const char *dir = slash ? env->weights_path : ".";
        if (slash == env->weights_path) dir_len = 1; /* weights in "/" */
        if (snprintf(from_file, cap, "%.*s/teacache_coeffs_%s.txt", dir_len, dir, variant) >= (int)cap)
            return error_set(err, "teacache: weights path too long: %s", env->weights_path);
    } else if (snprintf(from_file, cap, "%s", given) >= (int)cap) {
        return error_set(err, "teacache: coeffs path too long: %s", given);
    }
    if (access(from_file, F_OK) != 0 && errno == ENOENT)
        return error_set(err,
                         "teacache: coefficient file %s not found: run `cachebench calibrate` to fit the "
                         "variant-%s coefficients of model %s%s",
                         from_file, variant, model, given ? "" : " (or pass coeffs=FILE)");
    if (teacache_read_coeffs(from_file, c, err)) return error_prefix(err, "teacache");
    return 0;
}

static const char *const tea_params[] = {"thresh", "variant", "warmup", "cutoff", "coeffs", "defaults", NULL};

static int tea_create(Strategy *s, const StrategyParams *p, const StrategyEnv *env, Error *err) {
    const char *variant = strategy_param_text(p, "variant");
    if (variant && strcmp(variant, "e") != 0 && strcmp(variant, "e0") != 0)
        return error_set(err, "teacache: variant must be e or e0, got %s", variant);
    int use_e0 = variant && strcmp(variant, "e0") == 0;
    double thresh;
    int warmup, cutoff;
    /* defaults=official: TeaCache4Wan2.1's script defaults to a threshold of 0.2. */
    int official;
    if (strategy_param_defaults(p, &official, err)) return -1;
    if (strategy_param_double(p, "thresh", official ? 0.2 : 0.08, 0.0, INFINITY, &thresh, err)) return -1;
    if (strategy_param_int(p, "warmup", use_e0 ? 5 : 1, 0, INT_MAX, &warmup, err)) return -1;
    if (strategy_param_int(p, "cutoff", use_e0 ? 0 : 1, 0, INT_MAX, &cutoff, err)) return -1;
    double c[5];
    char file[1024];
    if (tea_coeffs(p, env, use_e0, c, file, sizeof file, err)) return -1;

    char th[32];
    strategy_format_double(thresh, th, sizeof th);
    int w = snprintf(s->spec, sizeof s->spec, "teacache:thresh=%s,variant=%s,warmup=%d,cutoff=%d%s%s", th,
                     use_e0 ? "e0" : "e", warmup, cutoff, file[0] ? ",coeffs=" : "", file);
    if (w >= (int)sizeof s->spec)
        return error_set(err, "teacache: canonical spec longer than %zu characters (shorten the coeffs path)",
                         sizeof s->spec - 1);

    TeaState *T = calloc(1, sizeof *T);
    if (!T) return error_set(err, "teacache: out of memory");
    T->thresh = thresh;
    T->use_e0 = use_e0;
    T->warmup = warmup;
    T->cutoff = cutoff;
    memcpy(T->c, c, sizeof T->c);
    s->state = T;
    s->destroy = tea_destroy;
    s->bytes_held = tea_bytes_held;
    s->clone = tea_clone;
    s->blocks_begin = tea_blocks_begin;
    s->blocks_reuse = tea_blocks_reuse;
    s->blocks_end = tea_blocks_end;
    return 0;
}

STRATEGY_REGISTER(strategy_teacache_info, 20) = {
    .name = "teacache",
    .summary = "reuse the block-stack residual while the rescaled change of the timestep modulation stays below δ",
    .params_help = "thresh    delta >= 0: reuse while the accumulated rescaled signal stays below it (default 0.08;\n"
                   "          the official TeaCache4Wan2.1 script defaults to 0.2)\n"
                   "variant   e | e0: signal from the time embedding e or the modulation input e0 (default e)\n"
                   "warmup    steps computed first, >= 0 (default 1 for e, 5 for e0)\n"
                   "cutoff    last steps always computed, >= 0 (default 1 for e, 0 for e0)\n"
                   "coeffs    rescaling polynomial file (default: built in for Wan2.1, else\n"
                   "          teacache_coeffs_<variant>.txt beside the weights, from `cachebench calibrate`)\n"
                   "defaults  ours | official: official selects the official script's defaults (thresh 0.2)",
    .param_names = tea_params,
    .create = tea_create,
};
