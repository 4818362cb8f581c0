/* Golden baselines: collect, write, read, compare (definitions: baseline.h). */
#include "results/baseline.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "results/record.h"

static const char MAGIC[] = "# cachebench baseline 1";

void baseline_free(Baseline *b) {
    for (int i = 0; i < b->n_runs; i++) free(b->runs[i].decisions);
    free(b->settings);
    free(b->runs);
    memset(b, 0, sizeof *b);
}

static char *decision_string(const RunRecord *r) {
    if (r->failed) return strdup("failed");
    char *d = malloc((size_t)2 * r->steps + 2);
    if (!d) return NULL;
    for (int br = 0; br < 2; br++)
        for (int i = 0; i < r->steps; i++) d[br * (r->steps + 1) + i] = r->step[i].computed[br] ? 'C' : 'R';
    d[r->steps] = '/';
    d[2 * r->steps + 1] = '\0';
    return d;
}

/* Values as the file holds them (%.6f), so a sweep checked against its own baseline compares equal numbers. */
static double as_written(double v) {
    if (!isfinite(v)) return v;
    char buf[64];
    snprintf(buf, sizeof buf, "%.6f", v);
    return strtod(buf, NULL);
}

static void set_values(BaselineEntry *e, double speedup, double psnr, double ssim, double lpips) {
    e->speedup_flops = as_written(speedup), e->psnr = as_written(psnr), e->ssim = as_written(ssim);
    e->lpips = as_written(lpips);
}

int baseline_from_summary(const Summary *s, Baseline *b, Error *err) {
    memset(b, 0, sizeof *b);
    snprintf(b->model, sizeof b->model, "%s", s->model);
    snprintf(b->weights_sha256, sizeof b->weights_sha256, "%s", s->weights_sha256);
    b->steps = s->steps, b->frames = s->frames, b->height = s->height, b->width = s->width;
    SummaryGroup *g = NULL;
    int ng = 0;
    if (summary_groups(s, &g, &ng, err)) return -1;
    b->settings = calloc((size_t)(ng ? ng : 1), sizeof *b->settings);
    b->runs = calloc((size_t)(s->count ? s->count : 1), sizeof *b->runs);
    if (!b->settings || !b->runs) {
        free(g);
        baseline_free(b);
        return error_set(err, "out of memory");
    }
    for (int i = 0; i < ng; i++) {
        BaselineEntry *e = &b->settings[b->n_settings++];
        snprintf(e->spec, sizeof e->spec, "%s", g[i].spec);
        e->runs = g[i].used;
        set_values(e, g[i].speedup_flops, g[i].psnr, g[i].ssim, g[i].lpips);
    }
    free(g);
    for (int i = 0; i < s->count; i++) {
        const SummaryRow *row = &s->rows[i];
        RunRecord r;
        if (record_read_header(row->file, &r, err)) {
            baseline_free(b);
            return -1;
        }
        BaselineEntry *e = &b->runs[b->n_runs++];
        snprintf(e->spec, sizeof e->spec, "%s", row->spec);
        snprintf(e->prompt_id, sizeof e->prompt_id, "%s", row->prompt_id);
        e->seed = row->seed;
        e->runs = 1;
        e->decisions = decision_string(&r);
        record_free(&r);
        if (!e->decisions) {
            baseline_free(b);
            return error_set(err, "out of memory");
        }
        set_values(e, row->speedup_flops, row->psnr, row->ssim, row->lpips);
    }
    return 0;
}

static void num(char *buf, size_t cap, double v) {
    if (isnan(v)) snprintf(buf, cap, "NA");
    else if (isinf(v)) snprintf(buf, cap, v > 0 ? "inf" : "-inf");
    else snprintf(buf, cap, "%.6f", v);
}

/* JSON: the same content, numbers as numbers, NA as null and inf as the string "inf". */
static cJSON *json_num(double v) {
    if (isnan(v)) return cJSON_CreateNull();
    if (isinf(v)) return cJSON_CreateString(v > 0 ? "inf" : "-inf");
    return cJSON_CreateNumber(as_written(v));
}

static void json_values(cJSON *o, const BaselineEntry *e) {
    cJSON_AddItemToObject(o, "speedup_flops", json_num(e->speedup_flops));
    cJSON_AddItemToObject(o, "psnr", json_num(e->psnr));
    cJSON_AddItemToObject(o, "ssim", json_num(e->ssim));
    cJSON_AddItemToObject(o, "lpips", json_num(e->lpips));
}

static int write_json(const Baseline *b, FILE *f) {
    cJSON *root = cJSON_CreateObject(), *settings = cJSON_CreateArray(), *runs = cJSON_CreateArray();
    if (!root || !settings || !runs) {
        cJSON_Delete(root), cJSON_Delete(settings), cJSON_Delete(runs);
        return -1;
    }
    cJSON_AddStringToObject(root, "format", MAGIC + 2);
    cJSON_AddStringToObject(root, "model", b->model);
    cJSON_AddStringToObject(root, "weights_sha256", b->weights_sha256);
    cJSON_AddNumberToObject(root, "steps", b->steps);
    const int video[3] = {b->frames, b->height, b->width};
    cJSON_AddItemToObject(root, "video", cJSON_CreateIntArray(video, 3));
    for (int i = 0; i < b->n_settings; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "spec", b->settings[i].spec);
        cJSON_AddNumberToObject(o, "runs", b->settings[i].runs);
        json_values(o, &b->settings[i]);
        cJSON_AddItemToArray(settings, o);
    }
    for (int i = 0; i < b->n_runs; i++) {
        const BaselineEntry *e = &b->runs[i];
        cJSON *o = cJSON_CreateObject();
        char seed[32];
        snprintf(seed, sizeof seed, "%llu", (unsigned long long)e->seed); /* a uint64 is not a JSON double */
        cJSON_AddStringToObject(o, "spec", e->spec);
        cJSON_AddStringToObject(o, "prompt_id", e->prompt_id);
        cJSON_AddStringToObject(o, "seed", seed);
        cJSON_AddStringToObject(o, "decisions", e->decisions);
        json_values(o, e);
        cJSON_AddItemToArray(runs, o);
    }
    cJSON_AddItemToObject(root, "settings", settings);
    cJSON_AddItemToObject(root, "runs", runs);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return -1;
    fputs(text, f);
    fputc('\n', f);
    cJSON_free(text);
    return 0;
}

static int is_json_path(const char *path) {
    size_t n = strlen(path);
    return n >= 5 && strcmp(path + n - 5, ".json") == 0;
}

int baseline_write(const Baseline *b, const char *path, Error *err) {
    char tmp[PATH_MAX + 32];
    FILE *f = summary_open_tmp(path, tmp, sizeof tmp, err);
    if (!f) return -1;
    if (is_json_path(path)) {
        if (write_json(b, f)) {
            fclose(f);
            unlink(tmp);
            return error_set(err, "%s: out of memory", path);
        }
        return summary_close_tmp(f, tmp, path, err);
    }
    fprintf(f, "%s\n", MAGIC);
    fprintf(f, "model\t%s\nweights_sha256\t%s\nsteps\t%d\nvideo\t%dx%dx%d\n", b->model, b->weights_sha256, b->steps,
            b->frames, b->height, b->width);
    for (int i = 0; i < b->n_settings; i++) {
        const BaselineEntry *e = &b->settings[i];
        char sp[32], p[32], s[32], l[32];
        num(sp, sizeof sp, e->speedup_flops), num(p, sizeof p, e->psnr), num(s, sizeof s, e->ssim),
            num(l, sizeof l, e->lpips);
        fprintf(f, "setting\t%s\t%d\t%s\t%s\t%s\t%s\n", e->spec, e->runs, sp, p, s, l);
    }
    for (int i = 0; i < b->n_runs; i++) {
        const BaselineEntry *e = &b->runs[i];
        char sp[32], p[32], s[32], l[32];
        num(sp, sizeof sp, e->speedup_flops), num(p, sizeof p, e->psnr), num(s, sizeof s, e->ssim),
            num(l, sizeof l, e->lpips);
        fprintf(f, "run\t%s\t%s\t%llu\t%s\t%s\t%s\t%s\t%s\n", e->spec, e->prompt_id, (unsigned long long)e->seed,
                e->decisions, sp, p, s, l);
    }
    return summary_close_tmp(f, tmp, path, err);
}

static int parse_num(const char *t, double *out) {
    if (strcmp(t, "NA") == 0) {
        *out = NAN;
        return 0;
    }
    char *end;
    errno = 0;
    *out = strtod(t, &end);
    return end == t || *end || errno ? -1 : 0;
}

static int append(BaselineEntry **arr, int *n, BaselineEntry *e) {
    if (*n % 64 == 0) {
        BaselineEntry *p = realloc(*arr, (size_t)(*n + 64) * sizeof *p);
        if (!p) return -1;
        *arr = p;
    }
    (*arr)[(*n)++] = *e;
    return 0;
}

static int json_value(const cJSON *o, const char *key, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsNull(v)) *out = NAN;
    else if (cJSON_IsNumber(v)) *out = v->valuedouble;
    else if (cJSON_IsString(v) && !strcmp(v->valuestring, "inf")) *out = INFINITY;
    else if (cJSON_IsString(v) && !strcmp(v->valuestring, "-inf")) *out = -INFINITY;
    else return -1;
    return 0;
}

static int json_text(const cJSON *o, const char *key, char *out, size_t cap) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap) return -1;
    snprintf(out, cap, "%s", v->valuestring);
    return 0;
}

static int read_json(const char *path, FILE *f, Baseline *b, Error *err) {
    if (fseek(f, 0, SEEK_END)) return error_set(err, "%s: cannot read", path);
    long n = ftell(f);
    rewind(f);
    char *text = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (!text) return error_set(err, "%s: cannot read", path);
    text[fread(text, 1, (size_t)n, f)] = '\0';
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root) return error_set(err, "%s: not valid JSON", path);
    int rc = 0;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(root, "steps");
    const cJSON *video = cJSON_GetObjectItemCaseSensitive(root, "video");
    const cJSON *settings = cJSON_GetObjectItemCaseSensitive(root, "settings");
    const cJSON *runs = cJSON_GetObjectItemCaseSensitive(root, "runs");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, MAGIC + 2)) {
        rc = error_set(err, "%s: not a cachebench baseline (\"format\" must be \"%s\")", path, MAGIC + 2);
    } else if (json_text(root, "model", b->model, sizeof b->model) ||
               json_text(root, "weights_sha256", b->weights_sha256, sizeof b->weights_sha256) ||
               !cJSON_IsNumber(steps) || !cJSON_IsArray(video) || cJSON_GetArraySize(video) != 3 ||
               !cJSON_IsArray(settings) || !cJSON_IsArray(runs)) {
        rc = error_set(err, "%s: incomplete baseline (needs model, weights_sha256, steps, video [3], settings, runs)",
                       path);
    } else {
        b->steps = steps->valueint;
        b->frames = cJSON_GetArrayItem(video, 0)->valueint;
        b->height = cJSON_GetArrayItem(video, 1)->valueint;
        b->width = cJSON_GetArrayItem(video, 2)->valueint;
        const cJSON *o;
        int i = 0;
        cJSON_ArrayForEach(o, settings) {
            BaselineEntry e;
            memset(&e, 0, sizeof e);
            const cJSON *r = cJSON_GetObjectItemCaseSensitive(o, "runs");
            if (json_text(o, "spec", e.spec, sizeof e.spec) || !cJSON_IsNumber(r) ||
                json_value(o, "speedup_flops", &e.speedup_flops) || json_value(o, "psnr", &e.psnr) ||
                json_value(o, "ssim", &e.ssim) || json_value(o, "lpips", &e.lpips)) {
                rc = error_set(err, "%s: settings[%d] is not a baseline setting", path, i);
                break;
            }
            e.runs = r->valueint;
            if (append(&b->settings, &b->n_settings, &e)) rc = error_set(err, "out of memory");
            i++;
        }
        i = 0;
        cJSON_ArrayForEach(o, runs) {
            if (rc) break;
            BaselineEntry e;
            memset(&e, 0, sizeof e);
            char seed[32], decisions[4096];
            if (json_text(o, "spec", e.spec, sizeof e.spec) || json_text(o, "prompt_id", e.prompt_id, sizeof e.prompt_id) ||
                json_text(o, "seed", seed, sizeof seed) || sscanf(seed, "%llu", (unsigned long long *)&e.seed) != 1 ||
                json_text(o, "decisions", decisions, sizeof decisions) ||
                json_value(o, "speedup_flops", &e.speedup_flops) || json_value(o, "psnr", &e.psnr) ||
                json_value(o, "ssim", &e.ssim) || json_value(o, "lpips", &e.lpips)) {
                rc = error_set(err, "%s: runs[%d] is not a baseline run", path, i);
                break;
            }
            e.runs = 1;
            if (!(e.decisions = strdup(decisions)) || append(&b->runs, &b->n_runs, &e)) {
                free(e.decisions);
                rc = error_set(err, "out of memory");
            }
            i++;
        }
        if (!rc && !b->n_settings) rc = error_set(err, "%s: baseline has no settings", path);
    }
    cJSON_Delete(root);
    return rc;
}

/* A setting or run listed twice would be checked against whichever comes first: refused. */
static int check_unique(const char *path, const Baseline *b, Error *err) {
    for (int i = 0; i < b->n_settings; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(b->settings[i].spec, b->settings[j].spec))
                return error_set(err, "%s: setting %s listed twice", path, b->settings[i].spec);
    for (int i = 0; i < b->n_runs; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(b->runs[i].spec, b->runs[j].spec) && !strcmp(b->runs[i].prompt_id, b->runs[j].prompt_id) &&
                b->runs[i].seed == b->runs[j].seed)
                return error_set(err, "%s: run %s, prompt %s seed %llu listed twice", path, b->runs[i].spec,
                                 b->runs[i].prompt_id, (unsigned long long)b->runs[i].seed);
    return 0;
}

static int read_any(const char *path, Baseline *b, Error *err);

int baseline_read(const char *path, Baseline *b, Error *err) {
    if (read_any(path, b, err)) return -1;
    if (check_unique(path, b, err)) {
        baseline_free(b);
        return -1;
    }
    return 0;
}

static int read_any(const char *path, Baseline *b, Error *err) {
    memset(b, 0, sizeof *b);
    FILE *f = fopen(path, "r");
    if (!f) return error_set(err, "%s: cannot open baseline: %s", path, strerror(errno));
    int c;
    while ((c = fgetc(f)) == ' ' || c == '\n' || c == '\t' || c == '\r') {
    }
    if (c == '{') {
        int rc = read_json(path, f, b, err);
        fclose(f);
        if (rc) baseline_free(b);
        return rc;
    }
    rewind(f);
    char line[4096];
    int lineno = 0, rc = 0, have = 0;
    while (!rc && fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            rc = error_set(err, "%s:%d: line too long", path, lineno);
            break;
        }
        line[strcspn(line, "\r\n")] = '\0';
        if (lineno == 1) {
            if (strcmp(line, MAGIC))
                rc = error_set(err, "%s: not a cachebench baseline (first line must be '%s'; write one with "
                                    "`cachebench check DIR --write-baseline FILE`)",
                               path, MAGIC);
            continue;
        }
        if (!*line || *line == '#') continue;
        char *f_[12];
        int n = 0;
        for (char *p = line; n < 12;) {
            f_[n++] = p;
            char *tab = strchr(p, '\t');
            if (!tab) break;
            *tab = '\0';
            p = tab + 1;
        }
        BaselineEntry e;
        memset(&e, 0, sizeof e);
        if (strcmp(f_[0], "model") == 0 && n == 2) snprintf(b->model, sizeof b->model, "%s", f_[1]), have |= 1;
        else if (strcmp(f_[0], "weights_sha256") == 0 && n == 2)
            snprintf(b->weights_sha256, sizeof b->weights_sha256, "%s", f_[1]), have |= 2;
        else if (strcmp(f_[0], "steps") == 0 && n == 2 && sscanf(f_[1], "%d", &b->steps) == 1) have |= 4;
        else if (strcmp(f_[0], "video") == 0 && n == 2 &&
                 sscanf(f_[1], "%dx%dx%d", &b->frames, &b->height, &b->width) == 3)
            have |= 8;
        else if (strcmp(f_[0], "setting") == 0 && n == 7 && strlen(f_[1]) < sizeof e.spec &&
                 sscanf(f_[2], "%d", &e.runs) == 1 && !parse_num(f_[3], &e.speedup_flops) &&
                 !parse_num(f_[4], &e.psnr) && !parse_num(f_[5], &e.ssim) && !parse_num(f_[6], &e.lpips)) {
            snprintf(e.spec, sizeof e.spec, "%s", f_[1]);
            if (append(&b->settings, &b->n_settings, &e)) rc = error_set(err, "out of memory");
        } else if (strcmp(f_[0], "run") == 0 && n == 9 && strlen(f_[1]) < sizeof e.spec &&
                   strlen(f_[2]) < sizeof e.prompt_id && sscanf(f_[3], "%llu", (unsigned long long *)&e.seed) == 1 &&
                   !parse_num(f_[5], &e.speedup_flops) && !parse_num(f_[6], &e.psnr) && !parse_num(f_[7], &e.ssim) &&
                   !parse_num(f_[8], &e.lpips)) {
            snprintf(e.spec, sizeof e.spec, "%s", f_[1]);
            snprintf(e.prompt_id, sizeof e.prompt_id, "%s", f_[2]);
            e.runs = 1;
            if (!(e.decisions = strdup(f_[4])) || append(&b->runs, &b->n_runs, &e)) {
                free(e.decisions);
                rc = error_set(err, "out of memory");
            }
        } else {
            rc = error_set(err, "%s:%d: not a baseline line (expected model, weights_sha256, steps, video, setting "
                                "with 6 fields or run with 8)",
                           path, lineno);
        }
    }
    if (!rc && ferror(f)) rc = error_set(err, "%s: read error", path);
    fclose(f);
    if (!rc && lineno == 0) rc = error_set(err, "%s: empty file, not a cachebench baseline", path);
    if (!rc && have != 15)
        rc = error_set(err, "%s: incomplete baseline (needs the model, weights_sha256, steps and video lines)", path);
    if (!rc && !b->n_settings) rc = error_set(err, "%s: baseline has no settings", path);
    if (rc) baseline_free(b);
    return rc;
}

int baseline_compatible(const Baseline *g, const Baseline *n, Error *err) {
    if (strcmp(g->model, n->model))
        return error_set(err, "the baseline is of model %s, the sweep ran %s", g->model, n->model);
    if (strcmp(g->weights_sha256, n->weights_sha256))
        return error_set(err, "the baseline is of other weights (sha256 %.16s…, the sweep's %.16s…)",
                         g->weights_sha256, n->weights_sha256);
    if (g->steps != n->steps)
        return error_set(err, "the baseline has %d steps, the sweep %d", g->steps, n->steps);
    if (g->frames != n->frames || g->height != n->height || g->width != n->width)
        return error_set(err, "the baseline's video is %dx%dx%d (frames x height x width), the sweep's %dx%dx%d",
                         g->frames, g->height, g->width, n->frames, n->height, n->width);
    return 0;
}

static const BaselineEntry *find(const BaselineEntry *arr, int n, const BaselineEntry *key, int match_pair) {
    for (int i = 0; i < n; i++)
        if (strcmp(arr[i].spec, key->spec) == 0 &&
            (!match_pair || (strcmp(arr[i].prompt_id, key->prompt_id) == 0 && arr[i].seed == key->seed)))
            return &arr[i];
    return NULL;
}

static double capped(double v) { return isinf(v) && v > 0 ? 100.0 : v; }

int baseline_check(const Baseline *g, const Baseline *n, const BaselineTolerance *tol, FILE *out) {
    int fails = 0;
    for (int i = 0; i < g->n_settings; i++) {
        const BaselineEntry *ge = &g->settings[i], *ne = find(n->settings, n->n_settings, ge, 0);
        if (!ne) {
            fprintf(out, "FAIL %s: setting missing from the sweep\n", ge->spec);
            fails++;
            continue;
        }
        char gp[32], np[32];
        num(gp, sizeof gp, ge->psnr), num(np, sizeof np, ne->psnr);
        if (!isnan(ge->psnr) && (isnan(ne->psnr) || capped(ne->psnr) < capped(ge->psnr) - tol->tol_psnr)) {
            fprintf(out, "FAIL %s: PSNR %s dB, baseline %s dB (tolerance %g dB)\n", ge->spec, np, gp, tol->tol_psnr);
            fails++;
        }
        if (!isnan(ge->ssim) && (isnan(ne->ssim) || ne->ssim < ge->ssim - tol->tol_ssim)) {
            fprintf(out, "FAIL %s: SSIM %.6f, baseline %.6f (tolerance %g)\n", ge->spec, ne->ssim, ge->ssim,
                    tol->tol_ssim);
            fails++;
        }
        if (!isnan(ge->lpips) && !isnan(ne->lpips) && ne->lpips > ge->lpips + tol->tol_lpips) {
            fprintf(out, "FAIL %s: LPIPS %.6f, baseline %.6f (tolerance %g)\n", ge->spec, ne->lpips, ge->lpips,
                    tol->tol_lpips);
            fails++;
        }
        if (!isnan(ge->speedup_flops) &&
            (isnan(ne->speedup_flops) || ne->speedup_flops < ge->speedup_flops * (1 - tol->tol_speedup))) {
            fprintf(out, "FAIL %s: FLOP speed-up %.4f, baseline %.4f (tolerance %g relative)\n", ge->spec,
                    ne->speedup_flops, ge->speedup_flops, tol->tol_speedup);
            fails++;
        }
    }
    if (tol->exact_decisions) {
        for (int i = 0; i < g->n_runs; i++) {
            const BaselineEntry *ge = &g->runs[i], *ne = find(n->runs, n->n_runs, ge, 1);
            if (!ne) {
                fprintf(out, "FAIL %s, prompt %s seed %llu: run missing from the sweep\n", ge->spec, ge->prompt_id,
                        (unsigned long long)ge->seed);
                fails++;
            } else if (strcmp(ge->decisions, ne->decisions)) {
                size_t k = 0;
                while (ge->decisions[k] && ge->decisions[k] == ne->decisions[k]) k++;
                const char *slash = strchr(ge->decisions, '/');
                size_t half = slash ? (size_t)(slash - ge->decisions) : 0;
                char where[64];
                if (slash && k < half) snprintf(where, sizeof where, "step %zu, cond branch", k);
                else if (slash && k > half) snprintf(where, sizeof where, "step %zu, uncond branch", k - half - 1);
                else snprintf(where, sizeof where, "character %zu", k);
                fprintf(out, "FAIL %s, prompt %s seed %llu: decisions changed from %s\n     baseline %s\n     now      %s\n",
                        ge->spec, ge->prompt_id, (unsigned long long)ge->seed, where, ge->decisions, ne->decisions);
                fails++;
            }
        }
    }
    for (int i = 0; i < n->n_settings; i++)
        if (!find(g->settings, g->n_settings, &n->settings[i], 0))
            fprintf(out, "note %s: not in the baseline (not checked)\n", n->settings[i].spec);
    return fails;
}
