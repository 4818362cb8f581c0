/* umT5 prompt tokenizer: text cleaning as Wan's HuggingfaceTokenizer(clean='whitespace') does it, then SentencePiece. */
#include "models/t5/tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    uint32_t *cp;
    size_t n, cap;
} CodePoints;

static int cp_push(CodePoints *s, uint32_t c) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        uint32_t *p = realloc(s->cp, cap * sizeof *p);
        if (!p) return -1;
        s->cp = p;
        s->cap = cap;
    }
    s->cp[s->n++] = c;
    return 0;
}

/* UTF-8 to code points; a byte that does not start a valid sequence becomes U+FFFD and decoding resumes after it. */
static int utf8_decode(const char *text, CodePoints *out) {
    const unsigned char *s = (const unsigned char *)text;
    size_t len = strlen(text);
    for (size_t i = 0; i < len;) {
        uint32_t c = s[i];
        int extra = c < 0x80 ? 0 : (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : -1;
        uint32_t v = extra == 1 ? c & 0x1F : extra == 2 ? c & 0x0F : c & 0x07;
        int ok = extra >= 0 && i + (size_t)extra < len;
        for (int k = 1; ok && k <= extra; k++) {
            if ((s[i + k] & 0xC0) != 0x80) ok = 0;
            else v = (v << 6) | (s[i + k] & 0x3F);
        }
        if (extra == 0) v = c;
        static const uint32_t min_for_len[4] = {0, 0x80, 0x800, 0x10000};
        if (ok && (v < min_for_len[extra] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))) ok = 0;
        if (cp_push(out, ok ? v : 0xFFFD)) return -1;
        i += ok ? (size_t)extra + 1 : 1;
    }
    return 0;
}

static char *utf8_encode(const CodePoints *s) {
    char *out = malloc(4 * s->n + 1), *p = out;
    if (!out) return NULL;
    for (size_t i = 0; i < s->n; i++) {
        uint32_t c = s->cp[i];
        if (c < 0x80) *p++ = (char)c;
        else if (c < 0x800) *p++ = (char)(0xC0 | c >> 6), *p++ = (char)(0x80 | (c & 0x3F));
        else if (c < 0x10000)
            *p++ = (char)(0xE0 | c >> 12), *p++ = (char)(0x80 | ((c >> 6) & 0x3F)), *p++ = (char)(0x80 | (c & 0x3F));
        else
            *p++ = (char)(0xF0 | c >> 18), *p++ = (char)(0x80 | ((c >> 12) & 0x3F)),
            *p++ = (char)(0x80 | ((c >> 6) & 0x3F)), *p++ = (char)(0x80 | (c & 0x3F));
    }
    *p = 0;
    return out;
}

/* Python's str.isspace / the regex module's \s on str (Unicode White_Space). */
static int is_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* ftfy's remove_control_chars set (form feed, tab and line breaks are kept; they are whitespace). */
static int is_removed_control(uint32_t c) {
    return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F || (c >= 0x206A && c <= 0x206F) ||
           c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC) || (c >= 0x1D173 && c <= 0x1D17A) ||
           (c >= 0xE0000 && c <= 0xE007F);
}

/* html.unescape's replacements for numeric references to C1 controls: the Windows-1252 characters. */
static const uint32_t CP1252_C1[32] = {
    0x20AC, 0x81,   0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x8D,
    0x017D, 0x8F,   0x90,   0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A,
    0x0153, 0x9D,   0x017E, 0x0178};

/* The named references we resolve: the ones prompt text plausibly holds. `legacy` ones also match without ';'. */
static const struct {
    const char *name;
    uint32_t cp;
    int legacy;
} ENTITIES[] = {{"amp", '&', 1},      {"lt", '<', 1},        {"gt", '>', 1},        {"quot", '"', 1},
                {"apos", '\'', 0},    {"nbsp", 0xA0, 1},     {"copy", 0xA9, 1},     {"reg", 0xAE, 1},
                {"hellip", 0x2026, 0}, {"mdash", 0x2014, 0}, {"ndash", 0x2013, 0}, {"lsquo", 0x2018, 0},
                {"rsquo", 0x2019, 0}, {"ldquo", 0x201C, 0},  {"rdquo", 0x201D, 0},  {"deg", 0xB0, 1},
                {"times", 0xD7, 1}};

static int is_hex(uint32_t c) { return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f'); }

/* Parses a reference at s[i] == '&' as Python's html.unescape does; returns the length consumed (0: none) and the
 * replacement in *rep (0x110000: the reference is dropped, as html.unescape drops invalid code points). */
static size_t html_reference(const uint32_t *s, size_t n, size_t i, uint32_t *rep) {
    size_t j = i + 1;
    if (j < n && s[j] == '#') {
        int hex = j + 1 < n && (s[j + 1] == 'x' || s[j + 1] == 'X');
        size_t k = j + 1 + (size_t)hex, start = k;
        uint64_t v = 0;
        while (k < n && (hex ? is_hex(s[k]) : (s[k] >= '0' && s[k] <= '9'))) {
            uint32_t d = s[k] <= '9' ? s[k] - '0' : (s[k] | 0x20) - 'a' + 10;
            if (v <= 0x110000) v = v * (hex ? 16 : 10) + d;
            k++;
        }
        if (k == start) return 0;
        if (k < n && s[k] == ';') k++;
        if (v == 0 || (v >= 0xD800 && v <= 0xDFFF) || v > 0x10FFFF) *rep = 0xFFFD;
        else if (v == 0x0D) *rep = 0x0D;
        else if (v >= 0x80 && v <= 0x9F) *rep = CP1252_C1[v - 0x80];
        else if ((v >= 0x1 && v <= 0x8) || v == 0xB || (v >= 0xE && v <= 0x1F) || v == 0x7F ||
                 (v >= 0xFDD0 && v <= 0xFDEF) || (v & 0xFFFE) == 0xFFFE)
            *rep = 0x110000;
        else *rep = (uint32_t)v;
        return k - i;
    }
    for (size_t e = 0; e < sizeof ENTITIES / sizeof ENTITIES[0]; e++) {
        size_t len = strlen(ENTITIES[e].name), k = 0;
        while (k < len && j + k < n && s[j + k] == (uint32_t)(unsigned char)ENTITIES[e].name[k]) k++;
        if (k < len) continue;
        int semicolon = j + len < n && s[j + len] == ';';
        if (!semicolon && !ENTITIES[e].legacy) continue;
        *rep = ENTITIES[e].cp;
        return 1 + len + (size_t)semicolon;
    }
    return 0;
}

static int html_unescape(CodePoints *s) {
    CodePoints out = {0};
    for (size_t i = 0; i < s->n;) {
        uint32_t rep;
        size_t used = s->cp[i] == '&' ? html_reference(s->cp, s->n, i, &rep) : 0;
        if (used) {
            if (rep != 0x110000 && cp_push(&out, rep)) goto oom;
            i += used;
        } else {
            if (cp_push(&out, s->cp[i])) goto oom;
            i++;
        }
    }
    free(s->cp);
    *s = out;
    return 0;
oom:
    free(out.cp);
    return -1;
}

/* The parts of ftfy.fix_text that change prompt text and that the tokenizer's own NFKC normalisation does not
 * already do: ANSI terminal escapes removed, curly quotes straightened, control characters removed. */
static void ftfy_fix(CodePoints *s) {
    size_t w = 0;
    for (size_t i = 0; i < s->n; i++) {
        uint32_t c = s->cp[i];
        if (c == 0x1B && i + 1 < s->n && s->cp[i + 1] == '[') {  /* ESC [ (digits | ;)* letter */
            size_t k = i + 2;
            while (k < s->n && ((s->cp[k] >= '0' && s->cp[k] <= '9') || s->cp[k] == ';')) k++;
            if (k < s->n && ((s->cp[k] | 0x20) >= 'a' && (s->cp[k] | 0x20) <= 'z')) {
                i = k;
                continue;
            }
        }
        if (c == 0x02BC || (c >= 0x2018 && c <= 0x201B)) c = '\'';
        else if (c >= 0x201C && c <= 0x201F) c = '"';
        else if (c == 0x0D && i + 1 < s->n && s->cp[i + 1] == 0x0A) continue;  /* fix_line_breaks: \r\n -> \n */
        if (is_removed_control(c)) continue;
        s->cp[w++] = c;
    }
    s->n = w;
}

/* whitespace_clean: every run of whitespace becomes one space, and the ends are stripped. */
static void collapse_whitespace(CodePoints *s) {
    size_t w = 0;
    int pending = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (is_space(s->cp[i])) {
            pending = 1;
            continue;
        }
        if (pending && w > 0) s->cp[w++] = ' ';
        pending = 0;
        s->cp[w++] = s->cp[i];
    }
    s->n = w;
}

char *t5_clean_text(const char *text) {
    CodePoints s = {0};
    char *out = NULL;
    if (utf8_decode(text, &s)) goto done;
    int has_tag_start = 0;
    for (size_t i = 0; i < s.n; i++) has_tag_start |= s.cp[i] == '<';
    /* ftfy's unescape_html='auto' unescapes only text without '<'; tokenizers.py then unescapes twice more. */
    if (!has_tag_start && html_unescape(&s)) goto done;
    ftfy_fix(&s);
    if (html_unescape(&s) || html_unescape(&s)) goto done;
    collapse_whitespace(&s);
    out = utf8_encode(&s);
done:
    free(s.cp);
    return out;
}

int t5_tokenize(const SpmModel *spm, const char *text, T5Tokens *out, Error *err) {
    int eos = spm_model_eos_id(spm), pad = spm_model_pad_id(spm);
    if (eos < 0) return error_set(err, "the SentencePiece model has no </s> (eos) id");
    if (pad < 0) pad = 0;
    char *clean = t5_clean_text(text);
    if (!clean) return error_set(err, "out of memory cleaning a prompt");
    int n_pieces = 0;
    int rc = spm_model_encode(spm, clean, out->ids, T5_TEXT_LEN - 1, &n_pieces, err);
    free(clean);
    if (rc) return -1;
    int kept = n_pieces < T5_TEXT_LEN - 1 ? n_pieces : T5_TEXT_LEN - 1;
    out->ids[kept] = eos;
    out->n_tokens = kept + 1;
    out->n_untruncated = n_pieces + 1;
    for (int i = 0; i < T5_TEXT_LEN; i++) {
        out->mask[i] = i < out->n_tokens;
        if (i >= out->n_tokens) out->ids[i] = pad;
    }
    return 0;
}

static int is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

int t5_find_tokenizer(const char *encoder, const char *explicit_path, char *out, size_t cap, Error *err) {
    struct stat sb;
    if (explicit_path) {
        if (stat(explicit_path, &sb) != 0) return error_set(err, "%s: no such tokenizer file or folder", explicit_path);
        if (S_ISDIR(sb.st_mode)) {
            snprintf(out, cap, "%s/spiece.model", explicit_path);
            if (!is_file(out)) return error_set(err, "%s: no spiece.model in the tokenizer folder", explicit_path);
        } else {
            snprintf(out, cap, "%s", explicit_path);
        }
        return 0;
    }
    char dir[4096];
    if (stat(encoder, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        snprintf(dir, sizeof dir, "%s", encoder);
    } else {
        const char *slash = strrchr(encoder, '/');
        if (slash) snprintf(dir, sizeof dir, "%.*s", (int)(slash - encoder), encoder);
        else snprintf(dir, sizeof dir, ".");
        if (!dir[0]) snprintf(dir, sizeof dir, "/");
    }
    static const char *const PLACES[] = {"spiece.model", "google/umt5-xxl/spiece.model", "tokenizer/spiece.model",
                                         "../tokenizer/spiece.model"};
    for (size_t i = 0; i < sizeof PLACES / sizeof PLACES[0]; i++) {
        snprintf(out, cap, "%s/%s", dir, PLACES[i]);
        if (is_file(out)) return 0;
    }
    return error_set(err, "%s: no spiece.model found (looked in %s/ for spiece.model, google/umt5-xxl/spiece.model, "
                          "tokenizer/spiece.model, ../tokenizer/spiece.model): give --tokenizer PATH",
                     encoder, dir);
}
