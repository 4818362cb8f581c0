/* magcache — reuse the block-stack residual while the error accumulated from a precalibrated curve of residual
 * magnitude ratios stays below a threshold, for at most K consecutive calls (MagCache: Ma et al., NeurIPS 2025,
 * "MagCache: Fast Video Generation with Magnitude-Aware Cache", arXiv:2506.09045).
 *
 * Per branch b (cond and uncond independent), at model call c = 2·step + b of a run of S steps:
 *     c < int(2·S·retention)           compute (retention: 0.2 → steps 0..9 of 50, both branches)
 *     otherwise:  γ = ratio_b[step]^p
 *                 acc_ratio_b *= γ;  acc_steps_b += 1;  acc_err_b += |1 - acc_ratio_b|
 *                 reuse iff acc_err_b < thresh and acc_steps_b <= K:  tokens += r_b
 *                 else acc_err_b = 0, acc_steps_b = 0, acc_ratio_b = 1 and compute (this call's γ is dropped)
 *     computed:   r_b = blocks_out - blocks_in
 * The schedule depends only on (table, thresh, K, retention, steps, p), never on the run's data.
 *
 * Parameters (spec "magcache:thresh=0.12,max_skip=2,retention=0.2,ratio_power=1,ratios=FILE"):
 *     thresh       δ >= 0                              default 0.12 (the official argparse default)
 *     max_skip     K >= 0 consecutive reused calls     default 2 (official argparse; the official README runs
 *                                                      Wan2.1-1.3B with K=4, 14B with thresh 0.24, K=6)
 *     retention    fraction in [0, 1] of the 2·S calls computed first     default 0.2
 *     warmup       steps computed first (the common name): retention calls = 2·warmup; excludes retention
 *     ratio_power  p in (0, 4]                         default 1: the released script; 0.5 is the square root the
 *                                                      paper used (its FLOPs only match the sqrt schedule)
 *     ratios       a table file (strategies/magcache.h), or builtin:wan2.1-t2v-1.3b / builtin:wan2.1-t2v-14b
 *     table_steps  the table's step count, checked; the canonical spec carries it when the table was resampled
 * Table: ratios= when given; else magcache_ratios.txt beside the weights (`cachebench calibrate --for magcache`);
 * else the official Wan2.1 T2V table of the model name (1.3B or 14B, 50 steps, UniPC, shift 5); else an error.
 * A table of another step count is resampled per branch with the official nearest_interp.
 *
 * Published script: MagCache4Wan2.1/magcache_generate.py (Zehong-Ma/MagCache df81cb1) `magcache_forward`, which this
 * follows: retention on the call counter, the per-branch accumulators, `<` against thresh and `<=` against K, the
 * reset that drops the current γ, one residual per branch. Differences:
 *   - A call that would reuse while its branch holds no residual (possible only with retention 0, or when guidance
 *     switches on mid-run) computes and resets, where the script would fail on residual_cache None.
 *   - The script keeps one call counter and resets after 2·S calls; here the call index is 2·step + branch (the
 *     same with guidance on; with guidance off only the cond entries are used) and a new run (step going back)
 *     resets the branch.
 * Trace: signal = γ of the call (NAN during retention: no γ is read), accumulator = acc_err after the call (0 after a
 * reset), threshold = thresh, k = NAN.
 * Memory: one token tensor per branch, as the official code (the block-stack input is held in the residual buffer
 * until blocks_end turns it into out - in). */
#include "strategies/magcache.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "strategies/strategy.h"

#define MAG_TABLE_STEPS 50

/* Official tables, MagCache4Wan2.1/magcache_generate.py df81cb1 generate() (T2V), de-interleaved: step 0 is the
 * script's padding 1.0. Calibrated with UniPC, shift 5, 50 steps, sdpa. */
static const double wan13b_ratio[2][MAG_TABLE_STEPS] = {
    {1, 1.0124, 1.00166, 0.99791, 0.99682, 0.99634, 0.99567, 0.99416, 0.99578, 0.9957, 0.99511, 0.99535, 0.99552,
     0.99541, 0.9954, 0.99489, 0.99518, 0.99484, 0.99481, 0.99415, 0.99419, 0.99396, 0.99388, 0.99349, 0.99309,
     0.9927, 0.99228, 0.99171, 0.99137, 0.99068, 0.99005, 0.98944, 0.98849, 0.98758, 0.98644, 0.98504, 0.9836,
     0.98202, 0.97977, 0.97717, 0.9741, 0.97003, 0.96538, 0.9593, 0.95086, 0.94013, 0.92402, 0.90241, 0.86821,
     0.81838},
    {1, 1.02213, 1.0041, 1.00061, 0.99762, 0.99685, 0.99586, 0.99422, 0.99575, 0.99563, 0.99506, 0.99531, 0.99549,
     0.99539, 0.99536, 0.99485, 0.99514, 0.99478, 0.99479, 0.99413, 0.99416, 0.99393, 0.99386, 0.99349, 0.99304,
     0.9927, 0.99226, 0.9917, 0.99135, 0.99063, 0.99003, 0.98942, 0.98849, 0.98757, 0.98643, 0.98503, 0.98359,
     0.98201, 0.97978, 0.97718, 0.97411, 0.97002, 0.96541, 0.95933, 0.95089, 0.94019, 0.92414, 0.9026, 0.86868,
     0.81939}};
static const double wan14b_ratio[2][MAG_TABLE_STEPS] = {
    {1, 1.02504, 1.00025, 0.9985, 0.99779, 0.9966, 0.99482, 0.99467, 0.99664, 0.99434, 0.99533, 0.99468, 0.99438,
     0.99516, 0.99384, 0.99404, 0.99517, 0.99409, 0.99428, 0.99347, 0.99418, 0.99271, 0.99313, 0.99215, 0.99218,
     0.99216, 0.99163, 0.99138, 0.98982, 0.98996, 0.9887, 0.98772, 0.98767, 0.98573, 0.98501, 0.9838, 0.98177,
     0.98037, 0.97678, 0.97546, 0.97184, 0.96711, 0.96349, 0.95629, 0.94926, 0.93964, 0.92511, 0.90693, 0.8796,
     0.86111},
    {1, 1.03017, 1.00251, 0.99962, 0.99771, 0.99658, 0.99476, 0.99451, 0.99656, 0.99431, 0.99545, 0.99465, 0.99434,
     0.99517, 0.9938, 0.99401, 0.99516, 0.99408, 0.99426, 0.99343, 0.99416, 0.99269, 0.99311, 0.99215, 0.99215,
     0.99217, 0.99161, 0.99135, 0.9898, 0.98995, 0.98866, 0.9877, 0.98765, 0.9857, 0.98498, 0.98376, 0.98173,
     0.98035, 0.97677, 0.97543, 0.97183, 0.96708, 0.96345, 0.95625, 0.94929, 0.93961, 0.92504, 0.90678, 0.87945,
     0.86189}};

static const struct {
    const char *model;
    const double (*ratio)[MAG_TABLE_STEPS];
} builtin_tables[] = {{"wan2.1-t2v-1.3b", wan13b_ratio}, {"wan2.1-t2v-14b", wan14b_ratio}};

/* ---------------------------------------------------------------- tables */

void magcache_nearest_interp(const double *src, int n, double *dst, int target) {
    if (target == 1) {
        dst[0] = src[n - 1];
        return;
    }
    double scale = (double)(n - 1) / (double)(target - 1);
    for (int i = 0; i < target; i++) {
        /* rint rounds half to even in the default rounding mode, as np.round */
        long j = (long)rint((double)i * scale);
        dst[i] = src[j < 0 ? 0 : j >= n ? n - 1 : j];
    }
}

void magcache_table_free(MagTable *t) {
    for (int b = 0; b < 2; b++) {
        free(t->ratio[b]);
        free(t->std[b]);
        free(t->cos_dis[b]);
    }
    memset(t, 0, sizeof *t);
}

int magcache_table_alloc(MagTable *t, int steps, Error *err) {
    memset(t, 0, sizeof *t);
    t->steps = steps;
    for (int b = 0; b < 2; b++) {
        t->ratio[b] = malloc((size_t)steps * sizeof(double));
        t->std[b] = malloc((size_t)steps * sizeof(double));
        t->cos_dis[b] = malloc((size_t)steps * sizeof(double));
        if (!t->ratio[b] || !t->std[b] || !t->cos_dis[b]) {
            magcache_table_free(t);
            return error_set(err, "out of memory for a %d-step MagCache table", steps);
        }
        for (int i = 0; i < steps; i++) t->ratio[b][i] = t->std[b][i] = t->cos_dis[b][i] = NAN;
        t->ratio[b][0] = 1.0;
    }
    return 0;
}

/* Appends one row to the growing columns of t (capacity *cap rows). */
static int table_push(MagTable *t, int *cap, const double v[7]) {
    if (t->steps == *cap) {
        int nc = *cap ? 2 * *cap : 64;
        for (int b = 0; b < 2; b++) {
            double **cols[3] = {&t->ratio[b], &t->std[b], &t->cos_dis[b]};
            for (int k = 0; k < 3; k++) {
                double *p = realloc(*cols[k], (size_t)nc * sizeof(double));
                if (!p) return -1;
                *cols[k] = p;
            }
        }
        *cap = nc;
    }
    for (int b = 0; b < 2; b++) {
        t->ratio[b][t->steps] = v[1 + b];
        t->std[b][t->steps] = v[3 + b];
        t->cos_dis[b][t->steps] = v[5 + b];
    }
    t->steps++;
    return 0;
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t len = strlen(s);
    while (len && (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' ' || s[len - 1] == '\t')) s[--len] = 0;
    return s;
}

/* One data row: 7 numbers, step == expected, ratios finite and > 0, statistics numbers or nan. */
static int parse_row(const char *path, int lineno, char *line, int expected, double v[7], Error *err) {
    static const char *const names[7] = {"step", "ratio_cond", "ratio_uncond", "std_cond", "std_uncond",
                                         "cos_dis_cond", "cos_dis_uncond"};
    int count = 0;
    char *save = NULL;
    for (char *tok = strtok_r(line, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
        if (count == 7) return error_set(err, "%s:%d: more than 7 columns (step, 2 ratios, 2 std, 2 cos_dis)", path,
                                          lineno);
        char *end;
        errno = 0;
        double x = strtod(tok, &end);
        if (end == tok || *end || errno == ERANGE)
            return error_set(err, "%s:%d: %s \"%s\" is not a number", path, lineno, names[count], tok);
        v[count++] = x;
    }
    if (count != 7)
        return error_set(err, "%s:%d: expected 7 columns (step ratio_cond ratio_uncond std_cond std_uncond "
                              "cos_dis_cond cos_dis_uncond), found %d",
                         path, lineno, count);
    if (v[0] != (double)expected)
        return error_set(err, "%s:%d: step %g where step %d was expected (rows go 0, 1, 2, ... without gaps)", path,
                         lineno, v[0], expected);
    for (int k = 1; k <= 2; k++)
        if (!isfinite(v[k]) || !(v[k] > 0))
            return error_set(err, "%s:%d: %s must be a finite number > 0, got %g", path, lineno, names[k], v[k]);
    for (int k = 3; k < 7; k++)
        if (isinf(v[k])) return error_set(err, "%s:%d: %s is infinite", path, lineno, names[k]);
    return 0;
}

int magcache_read_table(const char *path, MagTable *t, Error *err) {
    memset(t, 0, sizeof *t);
    FILE *f = fopen(path, "r");
    if (!f) return error_set(err, "%s: cannot open MagCache ratio table: %s", path, strerror(errno));
    char *buf = NULL;
    size_t bufcap = 0;
    int lineno = 0, rc = 0, seen_format = 0, declared_steps = -1, cap = 0;
    while (rc == 0 && getline(&buf, &bufcap, f) >= 0) {
        lineno++;
        char *line = trim(buf);
        if (!*line || *line == '#') continue;
        if (!seen_format) {
            if (strcmp(line, MAGCACHE_FORMAT_LINE) != 0)
                rc = error_set(err, "%s:%d: not a MagCache ratio table (expected \"%s\" first; write one with "
                                    "`cachebench calibrate --for magcache`)",
                               path, lineno, MAGCACHE_FORMAT_LINE);
            seen_format = 1;
            continue;
        }
        if (isalpha((unsigned char)*line)) {
            if (t->steps > 0) {
                rc = error_set(err, "%s:%d: metadata after the first row", path, lineno);
                break;
            }
            if (strncmp(line, "steps", 5) == 0 && (line[5] == ' ' || line[5] == '\t')) {
                char *end;
                long n = strtol(line + 6, &end, 10);
                if (*trim(end) || n < 1 || n > 1000000) rc = error_set(err, "%s:%d: bad steps \"%s\"", path, lineno,
                                                                       trim(line + 6));
                declared_steps = (int)n;
            }
            continue;
        }
        double v[7];
        if (parse_row(path, lineno, line, t->steps, v, err)) rc = -1;
        else if (table_push(t, &cap, v)) rc = error_set(err, "%s: out of memory", path);
    }
    if (rc == 0 && ferror(f)) rc = error_set(err, "%s: read error", path);
    if (rc == 0 && !seen_format) rc = error_set(err, "%s: empty file, not a MagCache ratio table", path);
    if (rc == 0 && t->steps == 0) rc = error_set(err, "%s: no rows (a table needs one row per step)", path);
    if (rc == 0 && declared_steps >= 0 && declared_steps != t->steps)
        rc = error_set(err, "%s: says steps %d but holds %d rows (truncated?)", path, declared_steps, t->steps);
    free(buf);
    fclose(f);
    if (rc) magcache_table_free(t);
    return rc;
}

/* "%.5f" of a statistic; "nan" when not measured. */
static void put5(FILE *f, double v) {
    if (isnan(v)) fputs(" nan", f);
    else fprintf(f, " %.5f", v);
}

int magcache_write_table(const char *path, const MagTable *t, const MagTableMeta *m, Error *err) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) return error_set(err, "%s: path too long", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return error_set(err, "%s: cannot create: %s", tmp, strerror(errno));
    fprintf(f, "# MagCache magnitude-ratio table, written by `cachebench calibrate --for magcache` from one\n"
               "# unmodified run: per step and branch, with r = block-stack output - input and r' that of the\n"
               "# previous step, ratio = mean_tok |r|/|r'|, std = its std over tokens, cos_dis = mean_tok\n"
               "# 1 - cos(r, r'), rounded to 5 decimals as MagCache's magcache_calibration. Format:\n"
               "# strategies/magcache.h.\n");
    fprintf(f, "%s\n", MAGCACHE_FORMAT_LINE);
    if (m && m->model) fprintf(f, "model %s\n", m->model);
    if (m && m->weights) fprintf(f, "weights %s\n", m->weights);
    if (m && m->weights_sha256) fprintf(f, "weights_sha256 %s\n", m->weights_sha256);
    if (m && m->solver) fprintf(f, "solver %s\n", m->solver);
    if (m) {
        char num[32];
        strategy_format_double(m->shift, num, sizeof num);
        fprintf(f, "shift %s\n", num);
        strategy_format_double(m->guidance, num, sizeof num);
        fprintf(f, "guidance %s\n", num);
        fprintf(f, "size %dx%dx%d\n", m->frames, m->height, m->width);
    }
    if (m && m->prompts_path) fprintf(f, "prompts %s\n", m->prompts_path);
    if (m && m->prompt_id) fprintf(f, "prompt %s\n", m->prompt_id);
    if (m) fprintf(f, "seed %llu\n", (unsigned long long)m->seed);
    fprintf(f, "steps %d\n", t->steps);
    fprintf(f, "# step ratio_cond ratio_uncond std_cond std_uncond cos_dis_cond cos_dis_uncond\n");
    for (int i = 0; i < t->steps; i++) {
        fprintf(f, "%d", i);
        for (int b = 0; b < 2; b++) fprintf(f, " %.5f", t->ratio[b][i]);
        for (int b = 0; b < 2; b++) put5(f, t->std[b][i]);
        for (int b = 0; b < 2; b++) put5(f, t->cos_dis[b][i]);
        fputc('\n', f);
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

/* ---------------------------------------------------------------- the strategy */

typedef struct {
    float *residual;    /* [t_n]: the block-stack input during a computed call, out - in after it */
    size_t t_n;
    int have_residual;
    int last_step;      /* step of the branch's previous call; -1 before the first */
    double acc_ratio, acc_err;
    int acc_steps;
} MagBranch;

typedef struct {
    double thresh;
    int max_skip;
    int retain_calls;   /* calls 2·step + branch below it always compute */
    int steps;
    double *gamma[2];   /* [steps] ratio^p per branch, resampled to the run's steps */
    MagBranch br[BRANCH_COUNT];
} MagState;

static void mag_reset(MagBranch *b) {
    b->acc_ratio = 1.0;
    b->acc_err = 0.0;
    b->acc_steps = 0;
}

static int mag_blocks_begin(Strategy *s, const StepInfo *st, const BlockInputs *in, BranchTrace *trace) {
    MagState *M = s->state;
    MagBranch *b = &M->br[st->branch];
    const VecOps *ops = s->ops;
    if (st->step <= b->last_step) { /* a new run: the script's reset after 2·S calls */
        mag_reset(b);
        b->have_residual = 0;
    }
    b->last_step = st->step;
    if (b->t_n != in->n_tokens) b->have_residual = 0;

    int call = 2 * st->step + (int)st->branch;
    double gamma = NAN;
    int compute = 1;
    if (call >= M->retain_calls && st->step < M->steps) {
        gamma = M->gamma[st->branch][st->step];
        b->acc_ratio *= gamma;
        b->acc_steps += 1;
        b->acc_err += fabs(1.0 - b->acc_ratio);
        compute = !(b->acc_err < M->thresh && b->acc_steps <= M->max_skip && b->have_residual);
        if (compute) mag_reset(b);
    }
    if (compute) {
        b->have_residual = 0;
        if (b->t_n != in->n_tokens && b->residual) {
            ops->release(ops->ctx, b->residual);
            b->residual = NULL;
        }
        if (!b->residual) {
            b->residual = ops->alloc(ops->ctx, in->n_tokens);
            b->t_n = b->residual ? in->n_tokens : 0;
        }
        /* The runner updates the tokens in place: keep the input until blocks_end. */
        if (b->residual) ops->copy(ops->ctx, b->residual, in->tokens, in->n_tokens);
    }
    trace->computed = compute;
    trace->signal = (float)gamma;
    trace->accumulator = (float)b->acc_err;
    trace->threshold = (float)M->thresh;
    trace->k = NAN;
    return compute ? STRATEGY_COMPUTE : STRATEGY_REUSE;
}

static void mag_blocks_reuse(Strategy *s, const StepInfo *st, float *tokens, size_t n) {
    MagState *M = s->state;
    s->ops->add(s->ops->ctx, tokens, tokens, M->br[st->branch].residual, n);
}

static void mag_blocks_end(Strategy *s, const StepInfo *st, const float *tokens_out, size_t n) {
    MagState *M = s->state;
    MagBranch *b = &M->br[st->branch];
    if (!b->residual || b->t_n != n) return; /* no buffer: this branch keeps computing */
    /* residual holds the input: out - in in place (VecOps ops are elementwise, out may alias an operand) */
    s->ops->sub(s->ops->ctx, b->residual, tokens_out, b->residual, n);
    b->have_residual = 1;
}

static void mag_destroy(Strategy *s) {
    MagState *M = s->state;
    if (!M) return;
    for (int i = 0; i < BRANCH_COUNT; i++) {
        if (M->br[i].residual) s->ops->release(s->ops->ctx, M->br[i].residual);
        free(M->gamma[i]);
    }
    free(M);
    s->state = NULL;
}

static size_t mag_bytes_held(const Strategy *s) {
    const MagState *M = s->state;
    size_t bytes = sizeof *M + 2 * (size_t)M->steps * sizeof(double);
    for (int i = 0; i < BRANCH_COUNT; i++)
        if (M->br[i].residual) bytes += M->br[i].t_n * sizeof(float);
    return bytes;
}

static int mag_clone(Strategy *dst, const Strategy *src, Error *err) {
    const MagState *S = src->state;
    MagState *D = calloc(1, sizeof *D);
    if (!D) return error_set(err, "magcache: out of memory");
    *D = *S;
    for (int i = 0; i < BRANCH_COUNT; i++) D->gamma[i] = NULL, D->br[i].residual = NULL;
    dst->state = D;
    int failed = 0;
    for (int i = 0; i < BRANCH_COUNT; i++) {
        D->gamma[i] = malloc((size_t)S->steps * sizeof(double));
        if (!D->gamma[i]) goto oom;
        memcpy(D->gamma[i], S->gamma[i], (size_t)S->steps * sizeof(double));
        D->br[i].residual = strategy_copy_buffer(src->ops, S->br[i].residual, S->br[i].t_n, &failed);
        if (failed) goto oom;
    }
    return 0;
oom:
    mag_destroy(dst);
    return error_set(err, "magcache: out of memory copying the state");
}

/* Loads the ratio table into t from ratios=, the file beside the weights, or the built-in table of the model; src
 * receives what the canonical spec names ("builtin:NAME" or the path). */
static int mag_table(const StrategyParams *p, const StrategyEnv *env, MagTable *t, char *src, size_t cap,
                     Error *err) {
    const char *model = env->model_name ? env->model_name : "(unnamed)";
    const char *given = strategy_param_text(p, "ratios");
    const char *builtin = NULL;
    if (given && strncmp(given, "builtin:", 8) == 0) {
        builtin = given + 8;
    } else if (given) {
        if (snprintf(src, cap, "%s", given) >= (int)cap) return error_set(err, "magcache: ratios path too long");
    } else {
        src[0] = '\0';
        if (env->weights_path) {
            const char *slash = strrchr(env->weights_path, '/');
            int dir_len = !slash ? 1 : slash == env->weights_path ? 1 : (int)(slash - env->weights_path);
            const char *dir = slash ? env->weights_path : ".";
            if (snprintf(src, cap, "%.*s/magcache_ratios.txt", dir_len, dir) >= (int)cap)
                return error_set(err, "magcache: weights path too long: %s", env->weights_path);
            if (access(src, F_OK) != 0) src[0] = '\0';
        }
        if (!src[0]) builtin = model;
    }
    if (builtin) {
        for (size_t i = 0; i < sizeof builtin_tables / sizeof builtin_tables[0]; i++) {
            if (strcmp(builtin, builtin_tables[i].model) != 0) continue;
            if (magcache_table_alloc(t, MAG_TABLE_STEPS, err)) return error_prefix(err, "magcache");
            for (int b = 0; b < 2; b++)
                memcpy(t->ratio[b], builtin_tables[i].ratio[b], MAG_TABLE_STEPS * sizeof(double));
            snprintf(src, cap, "builtin:%s", builtin);
            return 0;
        }
        if (given)
            return error_set(err, "magcache: no built-in ratio table \"%s\" (built in: wan2.1-t2v-1.3b, "
                                  "wan2.1-t2v-14b)",
                             builtin);
        return error_set(err,
                         "magcache: no ratio table for model %s: run `cachebench calibrate --for magcache` (it writes "
                         "magcache_ratios.txt beside the weights, where magcache looks) or pass ratios=FILE",
                         model);
    }
    if (magcache_read_table(src, t, err)) return error_prefix(err, "magcache");
    return 0;
}

static const char *const mag_params[] = {"thresh", "max_skip", "retention", "warmup", "ratio_power", "ratios",
                                         "table_steps", NULL};

static int mag_create(Strategy *s, const StrategyParams *p, const StrategyEnv *env, Error *err) {
    double thresh, retention, power;
    int max_skip, warmup, table_steps;
    if (strategy_param_double(p, "thresh", 0.12, 0.0, INFINITY, &thresh, err)) return -1;
    if (strategy_param_int(p, "max_skip", 2, 0, INT_MAX, &max_skip, err)) return -1;
    if (strategy_param_double(p, "retention", 0.2, 0.0, 1.0, &retention, err)) return -1;
    if (strategy_param_int(p, "warmup", 0, 0, INT_MAX / 2, &warmup, err)) return -1;
    if (strategy_param_double(p, "ratio_power", 1.0, 0.0, 4.0, &power, err)) return -1;
    if (strategy_param_int(p, "table_steps", 0, 1, 1000000, &table_steps, err)) return -1;
    int use_warmup = strategy_param_text(p, "warmup") != NULL;
    if (use_warmup && strategy_param_text(p, "retention"))
        return error_set(err, "magcache: give warmup (steps) or retention (fraction of calls), not both");
    if (!(power > 0)) return error_set(err, "magcache: ratio_power must be in (0, 4], got 0");
    MagTable t;
    char src[200];
    if (mag_table(p, env, &t, src, sizeof src, err)) return -1;
    if (strategy_param_text(p, "table_steps") && table_steps != t.steps) {
        int have = t.steps;
        magcache_table_free(&t);
        return error_set(err, "magcache: table_steps=%d but ratio table %s has %d steps", table_steps, src, have);
    }
    table_steps = t.steps;

    MagState *M = calloc(1, sizeof *M);
    if (!M) {
        magcache_table_free(&t);
        return error_set(err, "magcache: out of memory");
    }
    s->state = M;
    s->destroy = mag_destroy;
    M->thresh = thresh;
    M->max_skip = max_skip;
    M->steps = env->num_steps;
    /* The script's int(num_steps * retention_ratio), num_steps counting both branches' calls. */
    M->retain_calls = use_warmup ? 2 * warmup : (int)((double)(2 * env->num_steps) * retention);
    for (int b = 0; b < BRANCH_COUNT; b++) {
        M->br[b].last_step = -1;
        mag_reset(&M->br[b]);
        M->gamma[b] = malloc((size_t)M->steps * sizeof(double));
        if (!M->gamma[b]) {
            magcache_table_free(&t);
            return error_set(err, "magcache: out of memory");
        }
        magcache_nearest_interp(t.ratio[b], t.steps, M->gamma[b], M->steps);
        for (int i = 0; i < M->steps; i++) {
            double r = M->gamma[b][i];
            M->gamma[b][i] = power == 1.0 ? r : power == 0.5 ? sqrt(r) : pow(r, power);
        }
    }
    magcache_table_free(&t);

    char th[32], ret[32], pw[32], keep[48];
    strategy_format_double(thresh, th, sizeof th);
    strategy_format_double(power, pw, sizeof pw);
    if (use_warmup) snprintf(keep, sizeof keep, "warmup=%d", warmup);
    else strategy_format_double(retention, ret, sizeof ret), snprintf(keep, sizeof keep, "retention=%s", ret);
    char resampled[32] = "";
    if (table_steps != env->num_steps) snprintf(resampled, sizeof resampled, ",table_steps=%d", table_steps);
    int w = snprintf(s->spec, sizeof s->spec, "magcache:thresh=%s,max_skip=%d,%s,ratio_power=%s,ratios=%s%s", th,
                     max_skip, keep, pw, src, resampled);
    if (w >= (int)sizeof s->spec)
        return error_set(err, "magcache: canonical spec longer than %zu characters (shorten the ratios path)",
                         sizeof s->spec - 1);
    s->blocks_begin = mag_blocks_begin;
    s->blocks_reuse = mag_blocks_reuse;
    s->blocks_end = mag_blocks_end;
    s->bytes_held = mag_bytes_held;
    s->clone = mag_clone;
    return 0;
}

STRATEGY_REGISTER(strategy_magcache_info, 70) = {
    .name = "magcache",
    .summary = "reuse the block-stack residual while the error from calibrated magnitude ratios stays below δ",
    .params_help =
        "thresh       delta >= 0: reuse while the accumulated error sum |1 - prod gamma| stays below it\n"
        "             (default 0.12)\n"
        "max_skip     K >= 0: at most K consecutive reused calls per branch (default 2, the official script's; its\n"
        "             README runs Wan2.1-1.3B with K=4, Wan2.1-14B with thresh=0.24,max_skip=6)\n"
        "retention    in [0, 1]: the first int(2*steps*retention) model calls compute (default 0.2 = the first 20%\n"
        "             of steps: 10 of 50, 6 of 30)\n"
        "warmup       steps computed first, >= 0: the same as retention=warmup/steps (give one of the two)\n"
        "ratio_power  p in (0, 4]: gamma = ratio^p (default 1, the released script; 0.5 = the paper's square root)\n"
        "ratios       ratio table file (`cachebench calibrate --for magcache`) or builtin:wan2.1-t2v-1.3b |\n"
        "             builtin:wan2.1-t2v-14b (default: magcache_ratios.txt beside the weights, else the built-in\n"
        "             table of the model); resampled to the run's steps with the official nearest_interp\n"
        "table_steps  the table's step count, checked (the canonical spec carries it when the table was resampled)",
    .param_names = mag_params,
    .create = mag_create,
};
