/* Strategy specs ("name:key=value,key=value"), parameter getters, and creation through the registry.
 *
 * Spec grammar, strict so that a typo is an error and never a silently different experiment:
 *   spec  = name [ ":" param { "," param } ]      no whitespace anywhere
 *   param = key "=" value                          key and value non-empty; a key appears at most once
 * "easycache" (no parameters) is valid; "easycache:" and a trailing "," are not. Values keep their text here;
 * the getters parse numbers (the whole text, finite, in range) when the strategy asks for them. */
#include "strategies/strategy.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Copies [s, s+len) into dst[cap] as a C string; -1 when it does not fit. */
static int copy_span(char *dst, size_t cap, const char *s, size_t len) {
    if (len >= cap) return -1;
    memcpy(dst, s, len);
    dst[len] = '\0';
    return 0;
}

int strategy_parse_spec(const char *spec, StrategyParams *out, Error *err) {
    memset(out, 0, sizeof *out);
    if (!spec || !spec[0]) return error_set(err, "empty strategy spec");
    for (const char *c = spec; *c; c++) {
        if (isspace((unsigned char)*c))
            return error_set(err, "strategy spec \"%s\": whitespace is not allowed (write name:key=value,key=value)",
                             spec);
    }
    const char *colon = strchr(spec, ':');
    size_t name_len = colon ? (size_t)(colon - spec) : strlen(spec);
    if (name_len == 0) return error_set(err, "strategy spec \"%s\": missing strategy name before ':'", spec);
    if (memchr(spec, ',', name_len) || memchr(spec, '=', name_len))
        return error_set(err, "strategy spec \"%s\": expected name:key=value,... (parameters come after ':')", spec);
    if (copy_span(out->name, sizeof out->name, spec, name_len))
        return error_set(err, "strategy spec \"%s\": name longer than %zu characters", spec, sizeof out->name - 1);
    if (!colon) return 0;

    const char *p = colon + 1;
    if (!*p) return error_set(err, "strategy spec \"%s\": expected key=value after ':'", spec);
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        if (len == 0) return error_set(err, "strategy spec \"%s\": empty parameter (stray ',')", spec);
        if (!eq) return error_set(err, "strategy spec \"%s\": parameter \"%.*s\" is not key=value", spec, (int)len, p);
        size_t key_len = (size_t)(eq - p), val_len = len - key_len - 1;
        if (key_len == 0)
            return error_set(err, "strategy spec \"%s\": parameter \"%.*s\" has no key", spec, (int)len, p);
        if (val_len == 0)
            return error_set(err, "%s: %.*s has no value", out->name, (int)key_len, p);
        if (out->count == STRATEGY_MAX_PARAMS)
            return error_set(err, "%s: more than %d parameters", out->name, STRATEGY_MAX_PARAMS);
        char *key = out->keys[out->count], *val = out->values[out->count];
        if (copy_span(key, sizeof out->keys[0], p, key_len))
            return error_set(err, "%s: parameter name \"%.*s\" longer than %zu characters", out->name, (int)key_len,
                             p, sizeof out->keys[0] - 1);
        if (copy_span(val, sizeof out->values[0], eq + 1, val_len))
            return error_set(err, "%s: value of %s longer than %zu characters", out->name, key,
                             sizeof out->values[0] - 1);
        for (int i = 0; i < out->count; i++) {
            if (strcmp(out->keys[i], key) == 0)
                return error_set(err, "%s: parameter %s given twice (%s=%s and %s=%s)", out->name, key, key,
                                 out->values[i], key, val);
        }
        out->count++;
        if (!end) break;
        p = end + 1;
    }
    return 0;
}

const char *strategy_param_text(const StrategyParams *p, const char *key) {
    for (int i = 0; i < p->count; i++) {
        if (strcmp(p->keys[i], key) == 0) return p->values[i];
    }
    return NULL;
}

void strategy_format_double(double v, char *buf, size_t cap) {
    /* The first precision that round-trips: 0.05 prints as "0.05"; 17 digits always round-trip a double.
     * %g switches to an exponent when the exponent reaches the precision ("1e+01" for 10 at one digit), so in
     * the range people write plainly an exponent form is passed over for the next precision ("10"). */
    double mag = fabs(v);
    int plain_range = mag >= 1e-4 && mag < 1e16;
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        if (strtod(buf, NULL) != v) continue;
        if (plain_range && strchr(buf, 'e') && prec < 17) continue;
        return;
    }
}

/* "must be >= 1", "must be <= 2", "must be in [0, 1]"; the bounds are inclusive. */
static void describe_range(double lo, double hi, char *buf, size_t cap) {
    char a[32], b[32];
    strategy_format_double(lo, a, sizeof a);
    strategy_format_double(hi, b, sizeof b);
    if (isinf(hi)) snprintf(buf, cap, ">= %s", a);
    else if (isinf(lo)) snprintf(buf, cap, "<= %s", b);
    else snprintf(buf, cap, "in [%s, %s]", a, b);
}

int strategy_param_double(const StrategyParams *p, const char *key, double def, double lo, double hi, double *out,
                          Error *err) {
    const char *text = strategy_param_text(p, key);
    if (!text) {
        *out = def;
        return 0;
    }
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end || errno == ERANGE || !isfinite(v))
        return error_set(err, "%s: %s must be a finite number, got %s", p->name, key, text);
    if (v < lo || v > hi) {
        char range[80];
        describe_range(lo, hi, range, sizeof range);
        return error_set(err, "%s: %s must be %s, got %s", p->name, key, range, text);
    }
    *out = v;
    return 0;
}

int strategy_param_int(const StrategyParams *p, const char *key, int def, int lo, int hi, int *out, Error *err) {
    const char *text = strategy_param_text(p, key);
    if (!text) {
        *out = def;
        return 0;
    }
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (end == text || *end) return error_set(err, "%s: %s must be an integer, got %s", p->name, key, text);
    if (errno == ERANGE || v < lo || v > hi) {
        char range[80];
        if (hi == INT_MAX) snprintf(range, sizeof range, ">= %d", lo);
        else if (lo == INT_MIN) snprintf(range, sizeof range, "<= %d", hi);
        else snprintf(range, sizeof range, "in [%d, %d]", lo, hi);
        return error_set(err, "%s: %s must be %s, got %s", p->name, key, range, text);
    }
    *out = (int)v;
    return 0;
}

/* "a, b, c" from a NULL-terminated list. */
static void join_names(const char *const *names, char *buf, size_t cap) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; names[i]; i++) {
        int w = snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", names[i]);
        if (w < 0 || (size_t)w >= cap - used) return; /* truncated: enough for a message */
        used += (size_t)w;
    }
}

int strategy_create(Strategy *s, const char *spec, const StrategyEnv *env, Error *err) {
    memset(s, 0, sizeof *s);
    StrategyParams p;
    if (strategy_parse_spec(spec, &p, err)) return -1;
    const StrategyInfo *info = strategy_find(p.name);
    if (!info) {
        char names[256];
        strategy_list_names(names, sizeof names);
        return error_set(err, "unknown strategy \"%s\" (valid: %s)", p.name, names);
    }
    for (int i = 0; i < p.count; i++) {
        int known = 0;
        for (int j = 0; info->param_names[j]; j++) known |= strcmp(info->param_names[j], p.keys[i]) == 0;
        if (known) continue;
        if (!info->param_names[0])
            return error_set(err, "%s: unknown parameter \"%s\" (%s takes no parameters)", p.name, p.keys[i],
                             p.name);
        char keys[256];
        join_names(info->param_names, keys, sizeof keys);
        return error_set(err, "%s: unknown parameter \"%s\" (valid: %s)", p.name, p.keys[i], keys);
    }
    if (!env || !env->ops || env->num_steps < 1)
        return error_set(err, "%s: strategy environment needs VecOps and num_steps >= 1", p.name);

    s->info = info;
    s->ops = env->ops;
    if (info->create(s, &p, env, err)) {
        /* A create that failed half-way may have set destroy and allocated state: release it here, so that a
         * failed strategy_create leaves nothing to free. */
        strategy_destroy(s);
        return -1;
    }
    if (!s->spec[0]) snprintf(s->spec, sizeof s->spec, "%s", info->name);
    return 0;
}

void strategy_destroy(Strategy *s) {
    if (!s) return;
    if (s->destroy) s->destroy(s);
    memset(s, 0, sizeof *s);
}

int strategy_clone(Strategy *dst, const Strategy *src, Error *err) {
    memset(dst, 0, sizeof *dst);
    if (!src->clone) return error_set(err, "strategy \"%s\" cannot be copied (it has no clone hook)", src->spec);
    *dst = *src;
    dst->state = NULL;
    if (src->clone(dst, src, err)) {
        memset(dst, 0, sizeof *dst);
        return -1;
    }
    return 0;
}

float *strategy_copy_buffer(const VecOps *ops, const float *src, size_t n, int *failed) {
    if (!src) return NULL;
    float *dst = ops->alloc(ops->ctx, n);
    if (!dst) {
        *failed = 1;
        return NULL;
    }
    ops->copy(ops->ctx, dst, src, n);
    return dst;
}

size_t strategy_bytes_held(const Strategy *s) { return s->bytes_held ? s->bytes_held(s) : 0; }

int strategy_param_defaults(const StrategyParams *p, int *official, Error *err) {
    const char *v = strategy_param_text(p, "defaults");
    *official = v && strcmp(v, "official") == 0;
    if (v && !*official && strcmp(v, "ours") != 0)
        return error_set(err, "%s: defaults must be ours or official, got %s", p->name, v);
    return 0;
}
