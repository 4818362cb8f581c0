/* Sweeps: grid expansion, INI config, plan, resume scan and the run loop. Grammar and folder layout: sweep.h. */
#include "harness/sweep.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <libgen.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "harness/claims.h"
#include "harness/experiment.h"
#include "harness/solvers/solver.h"
#include "harness/text_encoder.h"
#include "metrics/metrics.h"
#include "strategies/strategy.h"

/* ---------------------------------------------------------------------------------------------------------------
 * Spec lists and template expansion */

int spec_list_add(SpecList *l, const char *spec, Error *err) {
    if (strlen(spec) >= SWEEP_SPEC_MAX)
        return error_set(err, "strategy spec longer than %d characters: %.60s...", SWEEP_SPEC_MAX - 1, spec);
    for (int i = 0; i < l->count; i++)
        if (strcmp(l->items[i], spec) == 0) return 0;
    if (l->count >= SWEEP_MAX_SETTINGS)
        return error_set(err, "more than %d strategy settings in one sweep (check the ranges)", SWEEP_MAX_SETTINGS);
    if (l->count == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        void *p = realloc(l->items, (size_t)cap * sizeof l->items[0]);
        if (!p) return error_set(err, "out of memory");
        l->items = p;
        l->cap = cap;
    }
    snprintf(l->items[l->count++], SWEEP_SPEC_MAX, "%s", spec);
    return 0;
}

void spec_list_free(SpecList *l) {
    free(l->items);
    memset(l, 0, sizeof *l);
}

#define MAX_VALUES 1000 /* per parameter */

/* The whole of text[0, len) is a finite number. */
static int parse_number(const char *text, size_t len, double *out) {
    char buf[128];
    if (len == 0 || len >= sizeof buf) return 0;
    memcpy(buf, text, len);
    buf[len] = '\0';
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (errno || *end || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

/* Appends the values of one list item (a value or a range) to vals[*n]. */
static int expand_item(const char *tmpl, const char *key, const char *item, size_t len, char (*vals)[128], int *n,
                       Error *err) {
    if (len == 0) return error_set(err, "strategy template \"%s\": %s has an empty value (stray '|')", tmpl, key);
    const char *dots = NULL;
    for (size_t i = 0; i + 1 < len; i++)
        if (item[i] == '.' && item[i + 1] == '.') {
            dots = item + i;
            break;
        }
    double lo, hi, step = 1.0;
    if (dots && parse_number(item, (size_t)(dots - item), &lo)) {
        const char *h = dots + 2, *end = item + len;
        const char *slash = memchr(h, '/', (size_t)(end - h));
        if (!parse_number(h, (size_t)((slash ? slash : end) - h), &hi) ||
            (slash && !parse_number(slash + 1, (size_t)(end - slash - 1), &step)))
            return error_set(err, "strategy template \"%s\": bad range %s=%.*s (write lo..hi or lo..hi/step)", tmpl,
                             key, (int)len, item);
        if (!(step > 0)) return error_set(err, "strategy template \"%s\": range %s=%.*s: step must be > 0", tmpl, key,
                                          (int)len, item);
        if (hi < lo) return error_set(err, "strategy template \"%s\": range %s=%.*s is empty (hi < lo)", tmpl, key,
                                      (int)len, item);
        double count = floor((hi - lo) / step + 1e-9) + 1;
        if (count + *n > MAX_VALUES)
            return error_set(err, "strategy template \"%s\": %s has more than %d values", tmpl, key, MAX_VALUES);
        for (int i = 0; i < (int)count; i++) {
            /* lo + i*step carries binary noise (0.02 + 4*0.02 = 0.1000000000000000055...): 12 significant digits
             * give back the decimal the user meant, then the shortest text that reads back exactly. */
            char tmp[64];
            snprintf(tmp, sizeof tmp, "%.12g", lo + i * step);
            strategy_format_double(strtod(tmp, NULL), vals[(*n)++], 128);
        }
        return 0;
    }
    if (*n >= MAX_VALUES)
        return error_set(err, "strategy template \"%s\": %s has more than %d values", tmpl, key, MAX_VALUES);
    if (len >= 128) return error_set(err, "strategy template \"%s\": value of %s too long", tmpl, key);
    memcpy(vals[*n], item, len);
    vals[(*n)++][len] = '\0';
    return 0;
}

int sweep_expand_template(const char *tmpl, SpecList *out, Error *err) {
    /* The template is a spec whose values contain '|' and '..': the spec parser checks its shape (name, key=value,
     * no whitespace, no repeated key), then every value is split here. */
    StrategyParams p;
    if (strategy_parse_spec(tmpl, &p, err)) return -1;
    const StrategyInfo *info = strategy_find(p.name);
    if (!info) {
        char names[512];
        strategy_list_names(names, sizeof names);
        return error_set(err, "strategy template \"%s\": unknown strategy '%s' (valid: %s)", tmpl, p.name, names);
    }
    for (int i = 0; i < p.count; i++) {
        int known = 0;
        for (int j = 0; info->param_names[j]; j++) known |= strcmp(info->param_names[j], p.keys[i]) == 0;
        if (!known) {
            char keys[512] = "";
            for (int j = 0; info->param_names[j]; j++)
                snprintf(keys + strlen(keys), sizeof keys - strlen(keys), "%s%s", j ? ", " : "", info->param_names[j]);
            return error_set(err, "strategy template \"%s\": %s has no parameter '%s' (valid: %s)", tmpl, p.name,
                             p.keys[i], keys[0] ? keys : "none");
        }
    }
    char(*vals)[MAX_VALUES][128] = calloc(p.count ? (size_t)p.count : 1, sizeof *vals);
    int nvals[STRATEGY_MAX_PARAMS] = {0};
    if (!vals) return error_set(err, "out of memory");
    int rc = 0;
    double product = 1;
    for (int i = 0; i < p.count && !rc; i++) {
        const char *v = p.values[i];
        for (;;) {
            const char *bar = strchr(v, '|');
            size_t len = bar ? (size_t)(bar - v) : strlen(v);
            if ((rc = expand_item(tmpl, p.keys[i], v, len, vals[i], &nvals[i], err))) break;
            if (!bar) break;
            v = bar + 1;
        }
        product *= nvals[i];
    }
    if (!rc && product > SWEEP_MAX_SETTINGS)
        rc = error_set(err, "strategy template \"%s\" expands to %.0f settings (at most %d)", tmpl, product,
                       SWEEP_MAX_SETTINGS);
    /* Odometer over the value lists, the last key fastest. */
    int idx[STRATEGY_MAX_PARAMS] = {0};
    while (!rc) {
        char spec[SWEEP_SPEC_MAX * 2];
        size_t used = (size_t)snprintf(spec, sizeof spec, "%s", p.name);
        for (int i = 0; i < p.count; i++)
            used += (size_t)snprintf(spec + used, used < sizeof spec ? sizeof spec - used : 0, "%c%s=%s",
                                     i ? ',' : ':', p.keys[i], vals[i][idx[i]]);
        if (used >= SWEEP_SPEC_MAX) {
            rc = error_set(err, "strategy template \"%s\": expanded spec longer than %d characters", tmpl,
                           SWEEP_SPEC_MAX - 1);
            break;
        }
        if ((rc = spec_list_add(out, spec, err))) break;
        int k = p.count - 1;
        while (k >= 0 && ++idx[k] == nvals[k]) idx[k--] = 0;
        if (k < 0) break;
    }
    free(vals);
    return rc;
}

int sweep_parse_seeds(const char *text, uint64_t *seeds, int cap, int *count, Error *err) {
    *count = 0;
    if (!text || !*text) return error_set(err, "empty seed list");
    const char *p = text;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char item[64];
        if (len == 0 || len >= sizeof item)
            return error_set(err, "seed list \"%s\": empty or overlong item (write 0,1,2 or 0..4)", text);
        memcpy(item, p, len);
        item[len] = '\0';
        unsigned long long lo = 0, hi;
        char *end;
        errno = 0;
        char *dots = strstr(item, "..");
        if (dots) *dots = '\0';
        int ok = isdigit((unsigned char)item[0]) && (lo = strtoull(item, &end, 10), !errno && !*end);
        hi = lo;
        if (ok && dots) {
            const char *h = dots + 2;
            ok = isdigit((unsigned char)h[0]) && (hi = strtoull(h, &end, 10), !errno && !*end) && hi >= lo;
        }
        if (!ok || lo > (unsigned long long)INT64_MAX || hi > (unsigned long long)INT64_MAX)
            return error_set(err, "seed list \"%s\": bad item '%.*s' (seeds are integers >= 0; ranges lo..hi)", text,
                             (int)len, p);
        for (unsigned long long s = lo;; s++) {
            for (int i = 0; i < *count; i++)
                if (seeds[i] == s) return error_set(err, "seed list \"%s\": seed %llu given twice", text, s);
            if (*count >= cap) return error_set(err, "seed list \"%s\": more than %d seeds", text, cap);
            seeds[(*count)++] = s;
            if (s == hi) break;
        }
        if (!comma) break;
        p = comma + 1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------------------------
 * Config */

void sweep_config_init(SweepConfig *c) { memset(c, 0, sizeof *c); }

int sweep_config_add_template(SweepConfig *c, const char *tmpl, Error *err) {
    SpecList check = {0};
    int rc = sweep_expand_template(tmpl, &check, err);
    spec_list_free(&check);
    if (rc) return -1;
    if (c->n_templates >= SWEEP_MAX_TEMPLATES) return error_set(err, "more than %d strategy templates", SWEEP_MAX_TEMPLATES);
    if (strlen(tmpl) >= sizeof c->templates[0]) return error_set(err, "strategy template too long: %.60s...", tmpl);
    snprintf(c->templates[c->n_templates++], sizeof c->templates[0], "%s", tmpl);
    return 0;
}

/* INI reading. inih reports no line numbers to the handler, so the file is read twice: first with a handler that
 * accepts everything (a failure is then a syntax error at the returned line), then with the real handler, which
 * stops at its first complaint (the returned line is then the line of that key). */
typedef struct {
    SweepConfig *cfg;
    char dir[1024];             /* the INI file's folder: relative paths in it are relative to it */
    char msg[900];
    int failed;
    char seen[16][16];          /* [sweep] keys given, to reject repeats */
    int n_seen;
    /* strategy sections in order of appearance: the section name and the template built from its keys */
    int n_sections;
    char section[SWEEP_MAX_TEMPLATES][128];
    char tmpl[SWEEP_MAX_TEMPLATES][1024];
    int enabled[SWEEP_MAX_TEMPLATES];
    int has_params[SWEEP_MAX_TEMPLATES];
    int n_strategy_keys;        /* `strategy =` lines in [sweep] */
    char strategy_keys[SWEEP_MAX_TEMPLATES][1024];
} IniState;

static int ini_accept_all(void *user, const char *section, const char *name, const char *value) {
    (void)user, (void)section, (void)name, (void)value;
    return 1;
}

/* Records the first complaint; returning 0 tells inih this line failed. */
static int ini_fail(IniState *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int ini_fail(IniState *st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->msg, sizeof st->msg, fmt, ap);
    va_end(ap);
    st->failed = 1;
    return 0;
}

/* Copies value without whitespace (a spec never holds any; "0.025 | 0.05" is easier to read in a file). */
static void strip_spaces(char *dst, size_t cap, const char *src) {
    size_t n = 0;
    for (; *src && n + 1 < cap; src++)
        if (!isspace((unsigned char)*src)) dst[n++] = *src;
    dst[n] = '\0';
}

static int ini_sweep_key(IniState *st, const char *name, const char *value) {
    SweepConfig *c = st->cfg;
    Error e = {{0}};
    if (strcmp(name, "strategy") == 0) {
        if (st->n_strategy_keys >= SWEEP_MAX_TEMPLATES) return ini_fail(st, "too many strategy lines");
        SpecList check = {0};
        int rc = sweep_expand_template(value, &check, &e);
        spec_list_free(&check);
        if (rc) return ini_fail(st, "%s", e.msg);
        snprintf(st->strategy_keys[st->n_strategy_keys++], sizeof st->strategy_keys[0], "%s", value);
        return 1;
    }
    for (int i = 0; i < st->n_seen; i++)
        if (strcmp(st->seen[i], name) == 0) return ini_fail(st, "[sweep] key '%s' given twice", name);
    if (st->n_seen < 16) snprintf(st->seen[st->n_seen++], sizeof st->seen[0], "%s", name);
    struct { const char *key; char *dst; size_t cap; } text_keys[] = {
        {"model", c->model, sizeof c->model},       {"weights", c->weights, sizeof c->weights},
        {"backend", c->backend, sizeof c->backend}, {"out", c->out, sizeof c->out},
        {"prompts", c->prompts, sizeof c->prompts}, {"contexts", c->contexts, sizeof c->contexts},
        {"text_encoder", c->text_encoder, sizeof c->text_encoder}, {"tokenizer", c->tokenizer, sizeof c->tokenizer},
        {"vae", c->vae, sizeof c->vae},
        {"negative_id", c->negative_id, sizeof c->negative_id},
        {"negative_prompt", c->negative_prompt, sizeof c->negative_prompt},
    };
    for (size_t i = 0; i < sizeof text_keys / sizeof text_keys[0]; i++) {
        if (strcmp(name, text_keys[i].key) != 0) continue;
        if (!*value) return ini_fail(st, "[sweep] key '%s' has no value", name);
        const int is_path = (strcmp(name, "weights") == 0 && strncmp(value, "random", 6) != 0) ||
                            strcmp(name, "out") == 0 || strcmp(name, "prompts") == 0 || strcmp(name, "contexts") == 0;
        int w = is_path && value[0] != '/' && strcmp(st->dir, ".") != 0
                    ? snprintf(text_keys[i].dst, text_keys[i].cap, "%s/%s", st->dir, value)
                    : snprintf(text_keys[i].dst, text_keys[i].cap, "%s", value);
        if (w < 0 || (size_t)w >= text_keys[i].cap) return ini_fail(st, "[sweep] value of '%s' too long", name);
        return 1;
    }
    if (strcmp(name, "steps") == 0) {
        char *end;
        errno = 0;
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end || v < 1 || v > 10000)
            return ini_fail(st, "[sweep] steps must be an integer in [1, 10000], got '%s'", value);
        c->steps = (int)v;
        return 1;
    }
    int *grid = strcmp(name, "frames") == 0 ? &c->frames : strcmp(name, "height") == 0 ? &c->height
              : strcmp(name, "width") == 0 ? &c->width : NULL;
    if (grid) {
        char *end;
        errno = 0;
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end || v < 1 || v > 8192)
            return ini_fail(st, "[sweep] %s must be an integer in [1, 8192], got '%s'", name, value);
        *grid = (int)v;
        return 1;
    }
    if (strcmp(name, "solver") == 0) {
        if (!solver_by_name(value))
            return ini_fail(st, "[sweep] unknown solver '%s' (valid: %s)", value, solver_names());
        snprintf(c->solver, sizeof c->solver, "%s", value);
        return 1;
    }
    if (strcmp(name, "random_context") == 0) {
        if (strcmp(value, "true") && strcmp(value, "false") && strcmp(value, "yes") && strcmp(value, "no"))
            return ini_fail(st, "[sweep] random_context must be true or false, got '%s'", value);
        c->random_context = strcmp(value, "true") == 0 || strcmp(value, "yes") == 0;
        return 1;
    }
    if (strcmp(name, "seeds") == 0) {
        char v[1024];
        strip_spaces(v, sizeof v, value);
        if (sweep_parse_seeds(v, c->seeds, SWEEP_MAX_SEEDS, &c->n_seeds, &e)) return ini_fail(st, "%s", e.msg);
        return 1;
    }
    return ini_fail(st,
                    "unknown key '%s' in [sweep] (valid: strategy, prompts, seeds, steps, solver, model, weights, "
                    "backend, out, contexts, negative_id, negative_prompt, random_context, text_encoder, tokenizer, "
                    "vae, frames, height, width)",
                    name);
}

static int ini_strategy_key(IniState *st, const char *section, const char *name, const char *value) {
    /* "strategy NAME [LABEL]" */
    char strat[64] = "", label[64] = "", extra[8] = "";
    int n = sscanf(section + 8, "%63s %63s %7s", strat, label, extra);
    if (n < 1 || n > 2)
        return ini_fail(st, "bad section [%s] (write [strategy NAME] or [strategy NAME LABEL])", section);
    const StrategyInfo *info = strategy_find(strat);
    if (!info) {
        char names[512];
        strategy_list_names(names, sizeof names);
        return ini_fail(st, "unknown strategy '%s' in section [%s] (valid: %s)", strat, section, names);
    }
    int s = 0;
    while (s < st->n_sections && strcmp(st->section[s], section) != 0) s++;
    if (s == st->n_sections) {
        if (s >= SWEEP_MAX_TEMPLATES) return ini_fail(st, "too many strategy sections");
        snprintf(st->section[s], sizeof st->section[0], "%s", section);
        snprintf(st->tmpl[s], sizeof st->tmpl[0], "%s", strat);
        st->enabled[s] = 1;
        st->n_sections++;
    }
    if (strcmp(name, "enabled") == 0) {
        if (strcmp(value, "yes") && strcmp(value, "no"))
            return ini_fail(st, "[%s] enabled must be yes or no, got '%s'", section, value);
        st->enabled[s] = strcmp(value, "yes") == 0;
        return 1;
    }
    int known = 0;
    for (int j = 0; info->param_names[j]; j++) known |= strcmp(info->param_names[j], name) == 0;
    if (!known) {
        char keys[512] = "enabled";
        for (int j = 0; info->param_names[j]; j++)
            snprintf(keys + strlen(keys), sizeof keys - strlen(keys), ", %s", info->param_names[j]);
        return ini_fail(st, "unknown key '%s' in [%s] (valid: %s)", name, section, keys);
    }
    char v[1024], one[1200];
    strip_spaces(v, sizeof v, value);
    /* Check this key alone, so that a bad value is reported at its own line. */
    snprintf(one, sizeof one, "%s:%s=%s", strat, name, v);
    SpecList check = {0};
    Error e = {{0}};
    int rc = sweep_expand_template(one, &check, &e);
    spec_list_free(&check);
    if (rc) return ini_fail(st, "%s", e.msg);
    char *t = st->tmpl[s];
    char key_eq[64];
    snprintf(key_eq, sizeof key_eq, "%s=", name);
    for (const char *p = strchr(t, ':'); p; p = strchr(p + 1, ','))
        if (strncmp(p + 1, key_eq, strlen(key_eq)) == 0)
            return ini_fail(st, "[%s] key '%s' given twice", section, name);
    size_t used = strlen(t);
    if (snprintf(t + used, sizeof st->tmpl[0] - used, "%c%s=%s", st->has_params[s] ? ',' : ':', name, v) >=
        (int)(sizeof st->tmpl[0] - used))
        return ini_fail(st, "[%s] too long", section);
    st->has_params[s] = 1;
    return 1;
}

static int ini_sweep_handler(void *user, const char *section, const char *name, const char *value) {
    IniState *st = user;
    if (st->failed) return 0;
    if (strcmp(section, "sweep") == 0) return ini_sweep_key(st, name, value);
    if (strncmp(section, "strategy ", 9) == 0) return ini_strategy_key(st, section, name, value);
    if (!section[0]) return ini_fail(st, "key '%s' before any section (start with [sweep])", name);
    return ini_fail(st, "unknown section [%s] (expected [sweep] or [strategy NAME])", section);
}

/* inih reads lines of at most INI_MAX_LINE (200) bytes and silently splits longer ones: this reader stops at such
 * a line so that it is reported as what it is. */
typedef struct {
    FILE *f;
    int line, too_long;
} IniReader;

static char *ini_read_line(char *str, int num, void *stream) {
    IniReader *r = stream;
    if (r->too_long || !fgets(str, num, r->f)) return NULL;
    r->line++;
    if (!strchr(str, '\n') && !feof(r->f)) {
        r->too_long = r->line;
        return NULL;
    }
    return str;
}

/* One pass of inih over the file: 0 with inih's result in *line (0, or the first line the handler or the syntax
 * refused), or -1 with a message (unreadable file, overlong line). */
static int ini_pass(const char *path, ini_handler handler, void *user, int *line, Error *err) {
    IniReader r = {.f = fopen(path, "r")};
    if (!r.f) return error_set(err, "%s: cannot read config file: %s", path, strerror(errno));
    int rc = ini_parse_stream(ini_read_line, &r, handler, user);
    fclose(r.f);
    if (r.too_long) {
        *line = r.too_long;
        return error_set(err, "%s:%d: line too long (at most %d characters)", path, r.too_long, INI_MAX_LINE - 2);
    }
    if (rc < 0) return error_set(err, "%s: out of memory", path);
    *line = rc;
    return 0;
}

int sweep_config_read_ini(SweepConfig *c, const char *path, Error *err) {
    int line = 0;
    if (ini_pass(path, ini_accept_all, NULL, &line, err)) return -1;
    if (line > 0) return error_set(err, "%s:%d: syntax error (expected [section], key = value or a comment)", path, line);
    IniState *st = calloc(1, sizeof *st);
    if (!st) return error_set(err, "out of memory");
    SweepConfig *tmp = malloc(sizeof *tmp);
    if (!tmp) {
        free(st);
        return error_set(err, "out of memory");
    }
    *tmp = *c;
    st->cfg = tmp;
    char copy[1024];
    snprintf(copy, sizeof copy, "%s", path);
    snprintf(st->dir, sizeof st->dir, "%s", dirname(copy));
    int rc = 0;
    if (ini_pass(path, ini_sweep_handler, st, &line, err)) {
        rc = -1;
    } else if (line != 0 || st->failed) {
        rc = error_set(err, "%s:%d: %s", path, line, st->msg[0] ? st->msg : "invalid line");
    } else if (st->n_strategy_keys || st->n_sections) {
        /* The file's strategies replace what c had (a config file describes a whole grid). */
        tmp->n_templates = 0;
        for (int i = 0; i < st->n_strategy_keys && !rc; i++)
            rc = sweep_config_add_template(tmp, st->strategy_keys[i], err);
        for (int i = 0; i < st->n_sections && !rc; i++)
            if (st->enabled[i]) rc = sweep_config_add_template(tmp, st->tmpl[i], err);
        if (rc) error_prefix(err, "%s", path);
    }
    if (!rc) *c = *tmp;
    free(tmp);
    free(st);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------------------
 * Plan */

int sweep_plan_build(SweepPlan *p, const SweepConfig *c, Error *err) {
    memset(p, 0, sizeof *p);
    if (!c->prompts[0]) return error_set(err, "no prompt file (--prompts FILE or prompts = FILE in [sweep])");
    if (!c->out[0]) return error_set(err, "no output folder (--out DIR or out = DIR in [sweep])");
    if (spec_list_add(&p->specs, "none", err)) goto fail;
    for (int i = 0; i < c->n_templates; i++)
        if (sweep_expand_template(c->templates[i], &p->specs, err)) goto fail;
    if (prompt_set_read(c->prompts, &p->prompts, err)) goto fail;
    if (p->prompts.count == 0) {
        error_set(err, "%s: no prompts", c->prompts);
        goto fail;
    }
    p->n_seeds = c->n_seeds ? c->n_seeds : 1;
    if (c->n_seeds) memcpy(p->seeds, c->seeds, (size_t)c->n_seeds * sizeof c->seeds[0]);
    else p->seeds[0] = 0;
    return 0;
fail:
    sweep_plan_free(p);
    return -1;
}

void sweep_plan_free(SweepPlan *p) {
    spec_list_free(&p->specs);
    prompt_set_free(&p->prompts);
    memset(p, 0, sizeof *p);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Folder helpers */

int sweep_make_dirs(const char *path, Error *err) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return error_set(err, "path too long: %s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0777) && errno != EEXIST) return error_set(err, "%s: cannot create output folder: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0777) && errno != EEXIST) return error_set(err, "%s: cannot create output folder: %s", buf, strerror(errno));
    return 0;
}

/* Removes *.tmp files in dir (left by a process killed while writing); a missing dir is fine. */
static int remove_stale_tmp(const char *dir, int *removed, Error *err) {
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? 0 : error_set(err, "%s: cannot list: %s", dir, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".tmp") != 0) continue;
        char path[4096 + 256];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) && errno != ENOENT) {
            rc = error_set(err, "%s: cannot remove stale temporary file: %s", path, strerror(errno));
            break;
        }
        (*removed)++;
    }
    closedir(d);
    return rc;
}

/* Tells the command's signal handler that a run file is being written (SweepOptions.writing): it then defers. */
static void writing_begin(const SweepOptions *o) {
    if (o->writing) *o->writing = 1;
}
static void writing_end(const SweepOptions *o) {
    if (o->writing) *o->writing = 0;
}

/* ---------------------------------------------------------------------------------------------------------------
 * The run loop */

typedef struct {
    char run_id[512];
    char path[4096 + 600];
    int finished;       /* 1: a valid record exists (before or after this session); 2: skipped (baseline failed) */
    int failed;         /* for finished baselines: the record says failed */
} PlannedRun;

/* Why a finished run is stale (provenance rule: sweep.h), or NULL when it is current. */
static const char *stale_reason(const RunRecord *r, const char *strategy, char *buf, size_t cap) {
    const StrategyInfo *info = strategy_find(strategy);
    const char *now = info ? strategy_source_sha256(info) : "";
    if (r->strategy_source_sha256[0] && now[0]) {
        if (strcmp(r->strategy_source_sha256, now) == 0) return NULL;
        snprintf(buf, cap, "%s source changed (sha256 %.12s, now %.12s)", strategy, r->strategy_source_sha256, now);
        return buf;
    }
    if (strcmp(r->version, experiment_version()) == 0) return NULL;
    snprintf(buf, cap, "made by cachebench %s (now %s), strategy source not recorded", r->version,
             experiment_version());
    return buf;
}

/* <out>/plan.tsv: what this sweep was asked for, one line per planned run, so that the report can tell finished from
 * planned and leave out settings of earlier plans (results/summary.h). Written atomically. */
static int write_plan(const char *out, const SweepPlan *plan, const PlannedRun *runs, long total, Error *err) {
    char path[2100], tmp[2200];
    snprintf(path, sizeof path, "%s/plan.tsv", out);
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) return error_set(err, "%s: cannot write: %s", tmp, strerror(errno));
    const int n_specs = plan->specs.count;
    fputs("spec\tprompt_id\tseed\trun_id\n", f);
    for (long i = 0; i < total; i++) {
        int sp = (int)(i % n_specs), seed_i = (int)(i / n_specs % plan->n_seeds);
        int p = (int)(i / n_specs / plan->n_seeds);
        fprintf(f, "%s\t%s\t%llu\t%s\n", plan->specs.items[sp], plan->prompts.items[p].id,
                (unsigned long long)plan->seeds[seed_i], runs[i].run_id);
    }
    int bad = ferror(f);
    if (fclose(f) || bad || rename(tmp, path)) {
        unlink(tmp);
        return error_set(err, "%s: cannot write", path);
    }
    return 0;
}

/* Makes every spec canonical by creating the strategy exactly as experiment_run will (same environment). */
static int canonicalize_specs(ExperimentContext *ctx, int steps, const int grid[3], SpecList *specs, Error *err) {
    const DitConfig *cfg = &ctx->model.cfg;
    if (ctx->engine->prepare(ctx->engine, grid[0], grid[1], grid[2], err)) return -1;
    StrategyEnv env = {.num_steps = steps, .num_layers = cfg->num_layers, .num_heads = cfg->num_heads,
                       .dim = cfg->dim, .model_numel = (size_t)cfg->in_dim * grid[0] * grid[1] * grid[2],
                       .tokens_numel = (size_t)ctx->engine->L * cfg->dim, .ops = ctx->engine->ops,
                       .model_name = cfg->name, .weights_path = ctx->model.file ? ctx->model.weights_path : NULL};
    SpecList out = {0};
    for (int i = 0; i < specs->count; i++) {
        Strategy s;
        if (strategy_create(&s, specs->items[i], &env, err)) {
            spec_list_free(&out);
            return error_prefix(err, "strategy %s", specs->items[i]);
        }
        int rc = spec_list_add(&out, s.spec, err);
        strategy_destroy(&s);
        if (rc) {
            spec_list_free(&out);
            return -1;
        }
    }
    spec_list_free(specs);
    *specs = out;
    return 0;
}

/* A finished file must be this sweep's run: one folder holds one model, weights, step count, solver and backend. */
static int check_identity(const RunRecord *r, const ExperimentContext *ctx, const char *backend, int steps,
                          const int grid[3],
                          const char *solver, const char *spec, const Prompt *prompt, uint64_t seed, const char *path, Error *err) {
    const char *what = NULL;
    const char *conditioning = ctx->contexts ? "contexts" : ctx->model.cfg.vocab_size > 0 ? "vocabulary"
                                                                                        : "random-stand-in";
    char have[1200] = "", want[1200] = "";
    if (strcmp(r->model, ctx->model.cfg.name)) what = "model", snprintf(have, sizeof have, "%s", r->model),
                                               snprintf(want, sizeof want, "%s", ctx->model.cfg.name);
    else if (strcmp(r->weights_sha256, ctx->model.weights_sha256) ||
             (strcmp(r->weights_sha256, "none") == 0 && strcmp(r->weights_path, ctx->model.weights_path)))
        what = "weights", snprintf(have, sizeof have, "%s (sha256 %.12s)", r->weights_path, r->weights_sha256),
        snprintf(want, sizeof want, "%s (sha256 %.12s)", ctx->model.weights_path, ctx->model.weights_sha256);
    else if (r->steps != steps) what = "steps", snprintf(have, sizeof have, "%d", r->steps),
                                snprintf(want, sizeof want, "%d", steps);
    else if (strcmp(r->solver, solver)) what = "solver", snprintf(have, sizeof have, "%s", r->solver),
                                        snprintf(want, sizeof want, "%s", solver);
    else if (r->grid[0] && memcmp(r->grid, grid, sizeof r->grid)) /* 0: records from before the grid attributes */
        what = "grid", snprintf(have, sizeof have, "%dx%dx%d", r->grid[0], r->grid[1], r->grid[2]),
        snprintf(want, sizeof want, "%dx%dx%d", grid[0], grid[1], grid[2]);
    else if (strcmp(r->backend, backend)) what = "backend", snprintf(have, sizeof have, "%s", r->backend),
                                          snprintf(want, sizeof want, "%s", backend);
    else if (strcmp(r->strategy_spec, spec)) what = "strategy", snprintf(have, sizeof have, "%s", r->strategy_spec),
                                             snprintf(want, sizeof want, "%s", spec);
    else if (strcmp(r->prompt, prompt->text)) what = "prompt", snprintf(have, sizeof have, "\"%s\"", r->prompt),
                                              snprintf(want, sizeof want, "\"%s\"", prompt->text);
    else if (r->seed != seed) what = "seed", snprintf(have, sizeof have, "%llu", (unsigned long long)r->seed),
                              snprintf(want, sizeof want, "%llu", (unsigned long long)seed);
    else if (r->conditioning[0] && strcmp(r->conditioning, conditioning))
        what = "conditioning", snprintf(have, sizeof have, "%s", r->conditioning),
        snprintf(want, sizeof want, "%s", conditioning);
    else if (ctx->contexts && strcmp(r->contexts_sha256, ctx->contexts->sha256))
        what = "contexts", snprintf(have, sizeof have, "%s (sha256 %.12s)", r->contexts_path, r->contexts_sha256),
        snprintf(want, sizeof want, "%s (sha256 %.12s)", ctx->contexts->file.path, ctx->contexts->sha256);
    else if (strcmp(r->vae_sha256, ctx->vae ? ctx->vae_sha256 : "")) /* pixels and latents never share a sweep */
        what = "VAE", snprintf(have, sizeof have, "%s", r->vae_path[0] ? r->vae_path : "none (latent video)"),
        snprintf(want, sizeof want, "%s", ctx->vae ? ctx->vae->weights_path : "none (latent video)");
    if (!what) return 0;
    return error_set(err,
                     "%s: made with %s %s, this sweep has %s %s. A sweep folder holds runs of one model, weights, "
                     "step count, solver, grid, backend, text conditioning and VAE: use another --out folder, or "
                     "remove the file",
                     path, what, have, what, want);
}

typedef struct {
    double sum;
    int n;
} Mean;

/* Remaining time: each remaining run costs the mean time of its setting so far, or of the baseline when its
 * setting has not run yet (an upper bound: a cached run is faster than full inference). */
static void update_eta(SweepStatus *st, const PlannedRun *runs, long total, int n_specs, const Mean *mean) {
    double eta = 0;
    int upper = 0;
    for (long i = 0; i < total; i++) {
        if (runs[i].finished) continue;
        int s = (int)(i % n_specs);
        if (mean[s].n) eta += mean[s].sum / mean[s].n;
        else if (mean[0].n) eta += mean[0].sum / mean[0].n, upper = 1;
        else {
            st->eta_seconds = -1;
            st->eta_upper_bound = 0;
            return;
        }
    }
    st->eta_seconds = eta;
    st->eta_upper_bound = upper;
}

static void note(const SweepCallbacks *cb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(const SweepCallbacks *cb, const char *fmt, ...) {
    if (!cb->note) return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cb->note(cb->user, msg);
}

/* Metrics of rec against the baseline video, in memory, before the record is written. */
static int attach_metrics(RunRecord *rec, const RunRecord *base, const char *base_file, LpipsNet *lpips, Error *err) {
    if (rec->failed) return 0; /* a blank video says nothing; the summary shows NA for failed runs */
    if (rec->frames != base->frames || rec->height != base->height || rec->width != base->width)
        return error_set(err, "video %dx%dx%d differs from the baseline's %dx%dx%d", rec->frames, rec->height,
                         rec->width, base->frames, base->height, base->width);
    if (metrics_compare_videos(base->video, rec->video, rec->frames, rec->height, rec->width, lpips, &rec->metrics,
                               err))
        return -1;
    snprintf(rec->metrics.baseline, sizeof rec->metrics.baseline, "%s", base_file);
    return 0;
}

/* Every prompt id's context and the negative one, before the sweep touches its folder or loads weights. */
static int check_conditioning(const SweepConfig *c, SweepPlan *plan, const char *model, const char *weights,
                              const char *negative_id, int dry_run, Error *err) {
    if ((c->contexts[0] != 0) + (c->random_context != 0) + (c->text_encoder[0] != 0) > 1)
        return error_set(err, "contexts, text_encoder and random_context exclude each other");
    const char **ids = malloc((size_t)plan->prompts.count * sizeof *ids);
    if (!ids) return error_set(err, "out of memory");
    for (int i = 0; i < plan->prompts.count; i++) ids[i] = plan->prompts.items[i].id;
    int rc = 0;
    if (c->text_encoder[0]) { /* encoded before the DiT is loaded: the two are never in memory together */
        const char **texts = malloc((size_t)plan->prompts.count * sizeof *texts);
        if (!texts) rc = error_set(err, "out of memory");
        for (int i = 0; texts && i < plan->prompts.count; i++) texts[i] = plan->prompts.items[i].text;
        TextEncodeJob job = {.encoder = c->text_encoder, .tokenizer = c->tokenizer[0] ? c->tokenizer : NULL,
                             .ids = ids, .texts = texts, .n = plan->prompts.count, .negative = c->negative_prompt,
                             .progress = "cachebench sweep", .backend = c->backend[0] ? c->backend : "cpu"};
        if (rc == 0) rc = dry_run ? text_contexts_cache_path(&job, c->out, plan->contexts, sizeof plan->contexts, err)
                                  : text_contexts_cached(&job, c->out, plan->contexts, sizeof plan->contexts, err);
        if (rc) error_prefix(err, "text_encoder %s", c->text_encoder);
        if (rc == 0 && dry_run && access(plan->contexts, R_OK) != 0) plan->contexts[0] = 0; /* encoded when run */
        free(texts);
        if (rc || !plan->contexts[0]) {
            free(ids);
            return rc;
        }
    } else {
        snprintf(plan->contexts, sizeof plan->contexts, "%s", c->contexts);
    }
    rc = experiment_check_conditioning(model, weights, plan->contexts, negative_id, c->random_context, ids,
                                       plan->prompts.count, err);
    free(ids);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------------------
 * Workers (harness/claims.h) */

/* What every worker of one folder must agree on: the identity of the runs and the plan, one group per (prompt,
 * seed) named by its baseline's run id. malloc'd. */
static char *worker_plan_text(const ExperimentContext *ctx, const char *backend, int steps, const int grid[3],
                              const char *solver, const PlannedRun *runs, long total, int n_specs, Error *err) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return error_set(err, "out of memory"), NULL;
    fprintf(f, "# cachebench sweep plan: every worker of this folder computes exactly this\n");
    fprintf(f, "model\t%s\nweights_sha256\t%s\n", ctx->model.cfg.name, ctx->model.weights_sha256);
    if (strcmp(ctx->model.weights_sha256, "none") == 0) fprintf(f, "weights\t%s\n", ctx->model.weights_path);
    fprintf(f, "backend\t%s\nsteps\t%d\nsolver\t%s\ngrid\t%dx%dx%d\n", backend, steps, solver, grid[0], grid[1],
            grid[2]);
    fprintf(f, "contexts_sha256\t%s\nvae_sha256\t%s\n", ctx->contexts ? ctx->contexts->sha256 : "none",
            ctx->vae ? ctx->vae_sha256 : "none");
    for (long i = 0; i < total; i++)
        fprintf(f, "run\t%s\t%d\t%s\n", runs[i - i % n_specs].run_id, (int)(i % n_specs), runs[i].run_id);
    if (fclose(f)) {
        free(text);
        return error_set(err, "out of memory"), NULL;
    }
    return text;
}

/* After claiming a group: its runs another worker finished since the start (a claim taken over, or a group
 * finished between the scan and the claim) are finished. */
static void adopt_finished_runs(PlannedRun *runs, long g, int n_specs, SweepStatus *st) {
    for (int s = 0; s < n_specs; s++) {
        PlannedRun *r = &runs[g + s];
        if (r->finished || access(r->path, F_OK) != 0) continue;
        RunRecord h = {0};
        Error e = {{0}};
        if (record_read_header(r->path, &h, &e) == 0 && (h.failed || h.metrics.frames)) {
            r->finished = 1;
            r->failed = h.failed;
            st->by_others++;
        }
        record_free(&h);
    }
}

static void sleep_seconds(double s) {
    struct timespec t = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&t, NULL);
}

/* Appends this session's line to <out>/sharing.tsv (README "Shared computation"): best effort, the runs are what
 * matters. */
static void log_sharing(const char *out, const SweepOptions *opt, const SweepStatus *st) {
    char path[2100];
    snprintf(path, sizeof path, "%s/sharing.tsv", out);
    int fresh = access(path, F_OK) != 0;
    FILE *f = fopen(path, "a");
    if (!f) return;
    if (fresh)
        fputs("end_time\tsharing\tshare_max\twall_seconds\truns\ttrees\tforks\treplays\tcalls_alone\tcalls_run\t"
              "calls_saved\tflops_alone\tflops_run\n", f);
    char when[32];
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    fprintf(f, "%s\t%s\t%d\t%.3f\t%ld\t%ld\t%ld\t%ld\t%ld\t%ld\t%ld\t%.6g\t%.6g\n", when, opt->no_share ? "off" : "on",
            opt->no_share ? 0 : opt->share_max > 0 ? opt->share_max : SWEEP_SHARE_MAX_DEFAULT, st->wall_seconds,
            st->done - st->skipped, st->trees, st->forks, st->replays, st->calls_alone, st->calls_run,
            st->calls_alone - st->calls_run, st->flops_alone, st->flops_run);
    fclose(f);
}

/* ---------------------------------------------------------------------------------------------------------------
 * One (prompt, seed) group: its runs made one after another (--no-share) or as fork trees (harness/runner.h) */

typedef struct {
    const SweepOptions *opt;
    const SweepCallbacks *cb;
    SweepStatus *st;
    PlannedRun *runs;
    long total, g;              /* g: the group's first run */
    int n_specs;
    Mean *mean;
    Claims *claims;             /* NULL unless a worker */
    LpipsNet *lpips;
    RunRecord *base;            /* the group's baseline once known (*have_base) */
    int *have_base;
    int *estimate_shown;
    char base_file[600];
} RunLoop;

/* Finishes run s of the group with rec (consumed: freed, or kept as the baseline): metrics against the baseline,
 * the file, the status and the callbacks. seconds: what the run took. Returns 0, 2 when the claim was lost (not
 * written), -1 on errors. */
static int finish_run(RunLoop *L, int s, RunRecord *rec, double seconds, Error *err) {
    PlannedRun *r = &L->runs[L->g + s];
    SweepStatus *st = L->st;
    if (s > 0 && *L->have_base && L->base->failed) { /* its baseline failed: left out, as when run alone */
        record_free(rec);
        if (!r->finished) r->finished = 2, st->done++, st->skipped++;
        return 0;
    }
    const double t0 = clock_seconds();
    if (attach_metrics(rec, s == 0 ? rec : L->base, L->base_file, L->lpips, err)) {
        error_prefix(err, "%s: metrics", r->run_id);
        record_free(rec);
        return -1;
    }
    if (L->claims && !claims_still_ours(L->claims, L->runs[L->g].run_id)) {
        /* Silent for longer than the stale time (a paused machine): another worker runs this group now. */
        note(L->cb, "lost the claim of %s to another worker (no heartbeat for %.0fs?): %s not written",
             L->runs[L->g].run_id, L->claims->stale_after, r->run_id);
        record_free(rec);
        return 2;
    }
    writing_begin(L->opt);
    int wrc = record_write(r->path, rec, err);
    writing_end(L->opt);
    if (wrc) {
        record_free(rec);
        return -1;
    }
    seconds += clock_seconds() - t0;
    if (L->claims && claims_log_run(L->claims, r->run_id, rec->failed ? "failed" : "complete", seconds, err)) {
        record_free(rec);
        return -1;
    }
    r->finished = 1;
    st->done++;
    st->failed += rec->failed;
    L->mean[s].sum += seconds;
    L->mean[s].n++;
    update_eta(st, L->runs, L->total, L->n_specs, L->mean);
    if (L->cb->run_done) L->cb->run_done(L->cb->user, st, r->run_id, rec, seconds);
    if (!*L->estimate_shown && st->eta_seconds >= 0) {
        *L->estimate_shown = 1;
        if (L->cb->estimate) L->cb->estimate(L->cb->user, st);
    }
    if (s == 0) {
        if (*L->have_base) record_free(L->base);
        *L->base = *rec; /* the baseline stays in memory for the runs of its prompt and seed */
        memset(rec, 0, sizeof *rec);
        *L->have_base = 1;
        if (L->base->failed)
            note(L->cb, "baseline %s failed at step %d (%s): the %d other runs of prompt %s seed %llu are left out",
                 r->run_id, L->base->failed_step, L->base->failure, L->n_specs - 1, L->base->prompt_id,
                 (unsigned long long)L->base->seed);
    } else {
        record_free(rec);
    }
    return 0;
}

/* Whether run s of the group is still to be made (a failed baseline leaves the others out). */
static int to_run(RunLoop *L, int s) {
    PlannedRun *r = &L->runs[L->g + s];
    if (s > 0 && *L->have_base && L->base->failed) {
        if (!r->finished) r->finished = 2, L->st->done++, L->st->skipped++;
        return 0;
    }
    return !r->finished;
}

static void add_stats(SweepStatus *st, const RunnerShareStats *s) {
    st->calls_alone += s->calls_alone;
    st->calls_run += s->calls_run;
    st->replays += s->replays;
    st->forks += s->forks;
    st->flops_alone += s->flops_alone;
    st->flops_run += s->flops_run;
    st->trees += s->branches;
}

/* Every run of the group alone, in plan order. Returns 0, 1 when stopped, 2 when the claim was lost, -1. */
static int run_group_alone(RunLoop *L, ExperimentContext *ctx, const SweepPlan *plan, const ExperimentSpec *group,
                           Error *err) {
    for (int s = 0; s < L->n_specs; s++) {
        if (!to_run(L, s)) continue;
        PlannedRun *r = &L->runs[L->g + s];
        int step_progress = L->cb->run_start ? L->cb->run_start(L->cb->user, L->st, r->run_id) : 0;
        const double t0 = clock_seconds();
        ExperimentSpec spec = *group;
        spec.strategy_spec = plan->specs.items[s];
        spec.show_progress = step_progress;
        RunRecord rec;
        StrategyEnv env;
        Strategy strategy;
        RunnerShareStats stats = {0};
        if (experiment_strategy_env(ctx, &spec, &env, err) || strategy_create(&strategy, spec.strategy_spec, &env, err))
            return error_prefix(err, "%s", r->run_id);
        int erc = experiment_run_shared(ctx, &spec, &strategy, 1, &rec, &stats, err);
        strategy_destroy(&strategy);
        if (erc) return error_prefix(err, "%s", r->run_id);
        add_stats(L->st, &stats);
        int frc = finish_run(L, s, &rec, clock_seconds() - t0, err);
        if (frc) return frc;
        if (L->opt->stop && *L->opt->stop) return 1;
    }
    return 0;
}

/* The group's runs as fork trees of at most share_max settings each (the baseline in the first); a strategy
 * without a clone hook runs alone. Records are written in plan order once their tree is done. */
static int run_group_shared(RunLoop *L, ExperimentContext *ctx, const SweepPlan *plan, const ExperimentSpec *group,
                            Error *err) {
    const int cap = L->opt->share_max > 0 ? L->opt->share_max : SWEEP_SHARE_MAX_DEFAULT;
    int *todo = malloc((size_t)L->n_specs * sizeof *todo);
    Strategy *strategies = calloc((size_t)cap, sizeof *strategies);
    RunRecord *recs = calloc((size_t)cap, sizeof *recs);
    int n_todo = 0, rc = 0;
    if (!todo || !strategies || !recs) {
        rc = error_set(err, "out of memory");
        goto out;
    }
    for (int s = 0; s < L->n_specs; s++)
        if (to_run(L, s)) todo[n_todo++] = s;
    for (int at = 0; at < n_todo && rc == 0;) {
        /* The next tree: up to cap settings in plan order; one without clone runs alone. */
        int members[cap], count = 0;
        StrategyEnv env;
        ExperimentSpec spec = *group;
        spec.strategy_spec = plan->specs.items[todo[at]];
        if (experiment_strategy_env(ctx, &spec, &env, err)) {
            rc = -1;
            break;
        }
        while (at < n_todo && count < cap) {
            const int s = todo[at];
            if (strategy_create(&strategies[count], plan->specs.items[s], &env, err)) {
                rc = error_prefix(err, "strategy %s", plan->specs.items[s]);
                break;
            }
            if (!strategies[count].clone && count > 0) { /* alone, in a tree of its own */
                strategy_destroy(&strategies[count]);
                break;
            }
            members[count++] = s;
            at++;
            if (!strategies[count - 1].clone) break;
        }
        if (rc) {
            for (int j = 0; j < count; j++) strategy_destroy(&strategies[j]);
            break;
        }
        for (int j = 0; j < count; j++)
            if (L->cb->run_start) L->cb->run_start(L->cb->user, L->st, L->runs[L->g + members[j]].run_id);
        RunnerShareStats stats = {0};
        const double t0 = clock_seconds();
        int erc = experiment_run_shared(ctx, &spec, strategies, count, recs, &stats, err);
        const double seconds = clock_seconds() - t0;
        for (int j = 0; j < count; j++) strategy_destroy(&strategies[j]);
        if (erc) {
            rc = error_prefix(err, "%s", L->runs[L->g + members[0]].run_id);
            break;
        }
        add_stats(L->st, &stats);
        for (int j = 0; j < count; j++) {
            int frc = rc ? 0 : finish_run(L, members[j], &recs[j], seconds / count, err);
            if (rc) record_free(&recs[j]);
            if (frc) rc = frc;
        }
        if (rc == 0 && L->opt->stop && *L->opt->stop) rc = 1;
    }
out:
    free(todo);
    free(strategies);
    free(recs);
    return rc;
}

int sweep_run(const SweepConfig *c, SweepPlan *plan, const SweepOptions *opt, const SweepCallbacks *cb,
              SweepStatus *final, Error *err) {
    SweepStatus st = {.eta_seconds = -1};
    ExperimentContext ctx;
    int ctx_open = 0, lock_fd = -1, rc = -1;
    PlannedRun *runs = NULL;
    Mean *mean = NULL;
    LpipsNet *lpips = NULL;
    RunRecord base = {0}, rec = {0};
    int have_base = 0;
    double loop_start = -1.0;
    Claims claims;
    int claims_open_ = 0;
    char *plan_text = NULL;
    const char *model = c->model[0] ? c->model : NULL, *backend = c->backend[0] ? c->backend : "cpu";
    char runs_dir[2048], weights[4096];

    if (c->weights[0]) snprintf(weights, sizeof weights, "%s", c->weights);
    else if (!model || strcmp(model, "tiny") == 0) experiment_default_weights(weights, sizeof weights);
    else return error_set(err, "model %s needs weights (--weights FILE or weights = FILE, or random)", model);
    const char *negative_id = c->negative_id[0] ? c->negative_id : NULL;
    if (check_conditioning(c, plan, model, weights, negative_id, opt->dry_run, err)) return -1;

    if (!opt->dry_run && opt->worker) { /* no lock and no *.tmp clean-up: other workers write now */
        snprintf(runs_dir, sizeof runs_dir, "%s/runs", c->out);
        if (sweep_make_dirs(runs_dir, err)) return -1;
        if (claims_open(&claims, c->out, opt->stale_after > 0 ? opt->stale_after : 600, err)) return -1;
        claims_open_ = 1;
    } else if (!opt->dry_run) {
        snprintf(runs_dir, sizeof runs_dir, "%s/runs", c->out);
        if (sweep_make_dirs(runs_dir, err)) return -1;
        char lock_path[2048];
        snprintf(lock_path, sizeof lock_path, "%s/.lock", c->out);
        lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
        if (lock_fd < 0) return error_set(err, "%s: cannot open: %s", lock_path, strerror(errno));
        if (flock(lock_fd, LOCK_EX | LOCK_NB)) {
            close(lock_fd);
            return error_set(err, "%s: another sweep is running in this folder (it holds %s)", c->out, lock_path);
        }
        /* Only now, with the folder to ourselves, are *.tmp files certainly stale. */
        int removed = 0;
        char plots_dir[2048];
        snprintf(plots_dir, sizeof plots_dir, "%s/plots", c->out);
        if (remove_stale_tmp(runs_dir, &removed, err) || remove_stale_tmp(c->out, &removed, err) ||
            remove_stale_tmp(plots_dir, &removed, err))
            goto done;
        if (removed) note(cb, "removed %d stale temporary file%s left by an interrupted sweep", removed,
                          removed == 1 ? "" : "s");
    } else {
        snprintf(runs_dir, sizeof runs_dir, "%s/runs", c->out);
    }

    if (experiment_open(&ctx, model, weights, backend, err)) goto done;
    ctx_open = 1;
    if (plan->contexts[0] && experiment_use_contexts(&ctx, plan->contexts, err)) goto done;
    if (c->vae[0] && experiment_use_vae(&ctx, c->vae, err)) goto done;
    const int steps = c->steps > 0 ? c->steps : ctx.model.cfg.default_steps;
    const SolverKind *solver = experiment_solver(&ctx.model.cfg, c->solver[0] ? solver_by_name(c->solver) : NULL);
    if (!solver) {
        error_set(err, "unknown solver '%s' (valid: %s)", c->solver, solver_names());
        goto done;
    }
    plan->solver = solver->name;
    const int grid[3] = {c->frames ? c->frames : ctx.model.cfg.frames, c->height ? c->height : ctx.model.cfg.height,
                         c->width ? c->width : ctx.model.cfg.width};
    memcpy(plan->grid, grid, sizeof grid);
    if (canonicalize_specs(&ctx, steps, grid, &plan->specs, err)) goto done;

    const int n_specs = plan->specs.count;
    const long total = sweep_plan_runs(plan);
    st.total = total;
    runs = calloc((size_t)total, sizeof *runs);
    mean = calloc((size_t)n_specs, sizeof *mean);
    if (!runs || !mean) {
        error_set(err, "out of memory");
        goto done;
    }
    /* Run order: prompt, then seed, then setting (baseline first), so each baseline is computed once, kept in
     * memory for the runs that follow it, and a partial sweep holds complete comparisons. */
    for (long i = 0; i < total; i++) {
        int s = (int)(i % n_specs), seed_i = (int)(i / n_specs % plan->n_seeds);
        int p = (int)(i / n_specs / plan->n_seeds);
        PlannedRun *r = &runs[i];
        experiment_run_id(plan->specs.items[s], plan->prompts.items[p].id, plan->seeds[seed_i], r->run_id,
                          sizeof r->run_id);
        snprintf(r->path, sizeof r->path, "%s/%s.h5", runs_dir, r->run_id);
        for (long j = i - s; j < i; j++)
            if (strcmp(runs[j].run_id, r->run_id) == 0) {
                error_set(err, "settings %s and %s give the same run file name %s", plan->specs.items[j % n_specs],
                          plan->specs.items[s], r->run_id);
                goto done;
            }
        if (access(r->path, F_OK) != 0) continue;
        Error rerr = {{0}};
        if (record_read_header(r->path, &rec, &rerr)) { /* the video is read later only for a baseline */
            note(cb, "%s: not a complete run record (%s): it will be run again", r->path, rerr.msg);
            continue;
        }
        int ok = 1;
        if (check_identity(&rec, &ctx, backend, steps, grid, solver->name, plan->specs.items[s],
                           &plan->prompts.items[p], plan->seeds[seed_i], r->path, err)) {
            record_free(&rec);
            goto done;
        }
        if (!rec.failed && rec.metrics.frames == 0) {
            note(cb, "%s: has no metrics (not written by a sweep): it will be run again", r->path);
            ok = 0;
        }
        char why[256];
        const char *stale = ok ? stale_reason(&rec, rec.strategy, why, sizeof why) : NULL;
        if (stale) {
            st.stale++;
            if (st.stale <= 20) note(cb, "%s: stale: %s", r->path, stale);
        } else if (ok && strcmp(rec.version, experiment_version())) {
            st.other_build++;
        }
        if (ok && opt->rerun &&
            (strcmp(opt->rerun, "all") == 0 || (strcmp(opt->rerun, "stale") == 0 && stale) ||
             strcmp(opt->rerun, rec.strategy) == 0))
            ok = 0; /* run again: the new record replaces this one when written */
        if (ok) {
            r->finished = 1;
            r->failed = rec.failed;
            st.finished_before++;
            mean[s].sum += rec.wall_seconds;
            mean[s].n++;
        }
        record_free(&rec);
    }
    if (st.stale > 20) note(cb, "... and %ld more stale runs", st.stale - 20);
    if (st.stale && !(opt->rerun && (strcmp(opt->rerun, "stale") == 0 || strcmp(opt->rerun, "all") == 0)))
        note(cb, "%ld finished run%s stale and kept; --rerun stale redoes them", st.stale,
             st.stale == 1 ? " is" : "s are");
    if (st.other_build)
        note(cb, "%ld finished run%s made by another build with the same strategy source", st.other_build,
             st.other_build == 1 ? " was" : "s were");
    if (claims_open_) {
        if (!(plan_text = worker_plan_text(&ctx, backend, steps, grid, solver->name, runs, total, n_specs, err)) ||
            claims_check_plan(&claims, plan_text, err))
            goto done;
    }
    update_eta(&st, runs, total, n_specs, mean);
    if (cb->plan) cb->plan(cb->user, plan, &st);
    if (opt->dry_run) {
        rc = 0;
        goto done;
    }
    if (write_plan(c->out, plan, runs, total, err)) goto done;
    if (lpips_available() && lpips_create(&lpips, err)) goto done;

    int estimate_shown = st.eta_seconds >= 0;
    loop_start = clock_seconds();
    for (int waiting = 1; waiting;) { /* one pass, or in a worker as many as it takes other workers to finish */
    waiting = 0;
    for (long g = 0; g < total; g += n_specs) {
        const int p = (int)(g / n_specs / plan->n_seeds), seed_i = (int)(g / n_specs % plan->n_seeds);
        const Prompt *prompt = &plan->prompts.items[p];
        if (opt->shards > 0 && (g / n_specs) % opt->shards != opt->shard) continue;
        int todo = 0;
        for (int s = 0; s < n_specs; s++) todo += !runs[g + s].finished;
        if (!todo) continue;
        if (claims_open_) {
            ClaimInfo prev;
            int got = claims_try(&claims, runs[g].run_id, &prev, err);
            if (got < 0) goto done;
            if (got == 0) {
                waiting = 1;
                continue;
            }
            if (prev.pid) {
                st.taken_over++;
                note(cb, "took over %s (prompt %s seed %llu) from %s pid %ld, silent for %llds", runs[g].run_id,
                     prompt->id, (unsigned long long)plan->seeds[seed_i], prev.host, prev.pid,
                     (long long)time(NULL) - prev.heartbeat);
            }
            if (claims_hold(&claims, runs[g].run_id, err)) goto done;
            adopt_finished_runs(runs, g, n_specs, &st);
        }
        if (have_base) record_free(&base), have_base = 0;
        RunLoop loop = {.opt = opt, .cb = cb, .st = &st, .runs = runs, .total = total, .n_specs = n_specs,
                        .mean = mean, .claims = claims_open_ ? &claims : NULL, .lpips = lpips, .base = &base,
                        .have_base = &have_base, .estimate_shown = &estimate_shown, .g = g};
        snprintf(loop.base_file, sizeof loop.base_file, "%s.h5", runs[g].run_id);
        if (runs[g].finished == 1) {
            /* The baseline was finished before this session: read it back for the metrics. */
            if (record_read(runs[g].path, &base, err)) goto done;
            have_base = 1;
            if (base.failed)
                note(cb, "baseline %s failed at step %d: the other runs of prompt %s seed %llu are left out",
                     runs[g].run_id, base.failed_step, prompt->id, (unsigned long long)plan->seeds[seed_i]);
        }
        ExperimentSpec spec = {.prompt_id = prompt->id, .prompt = prompt->text,
                               .negative_prompt = c->negative_prompt, .negative_id = negative_id,
                               .random_context = c->random_context, .seed = plan->seeds[seed_i], .steps = steps,
                               .solver = solver, .F = grid[0], .H = grid[1], .W = grid[2]};
        int grc = opt->no_share ? run_group_alone(&loop, &ctx, plan, &spec, err)
                                : run_group_shared(&loop, &ctx, plan, &spec, err);
        if (grc < 0) goto done;
        if (grc == 2) waiting = 1; /* lost the claim: the group is another worker's now */
        if (grc == 1) {
            rc = 1;
            goto done;
        }
        if (claims_open_) claims_release(&claims, runs[g].run_id);
    }
    if (waiting) { /* groups that live workers hold: finished by them, or taken over once they go silent */
        double poll = claims.stale_after / 4;
        sleep_seconds(poll < 5 ? poll : 5);
        for (long i = 0; i < total; i += n_specs) adopt_finished_runs(runs, i, n_specs, &st);
    }
    }
    rc = 0;
done:
    if (loop_start >= 0) {
        st.wall_seconds = clock_seconds() - loop_start;
        if (st.calls_alone > 0) log_sharing(c->out, opt, &st);
    }
    if (claims_open_) claims_close(&claims);
    free(plan_text);
    if (final) *final = st;
    if (have_base) record_free(&base);
    record_free(&rec);
    if (lpips) lpips_destroy(lpips);
    if (ctx_open) experiment_close(&ctx);
    free(runs);
    free(mean);
    if (lock_fd >= 0) close(lock_fd);
    return rc;
}
