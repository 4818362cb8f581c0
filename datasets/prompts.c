#include "datasets/prompts.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int id_is_safe(const char *id) {
    if (!*id) return 0;
    for (; *id; id++)
        if (!isalnum((unsigned char)*id) && *id != '-' && *id != '_' && *id != '.') return 0;
    return 1;
}

int prompt_set_read(const char *path, PromptSet *set, Error *err) {
    memset(set, 0, sizeof *set);
    FILE *f = fopen(path, "r");
    if (!f) return error_set(err, "%s: cannot open prompt file: %s", path, strerror(errno));
    char line[1024];
    int lineno = 0, cap = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strcspn(line, "\r\n");
        if (line[len] == '\0' && !feof(f)) {
            rc = error_set(err, "%s:%d: line too long", path, lineno);
            break;
        }
        line[len] = '\0';
        const char *p = line;
        while (isspace((unsigned char)*p)) p++;
        if (*p == '\0' || *p == '#') continue;
        char *tab = strchr(line, '\t');
        if (!tab) {
            rc = error_set(err, "%s:%d: expected \"id<TAB>prompt\"", path, lineno);
            break;
        }
        *tab = '\0';
        const char *text = tab + 1;
        if (!id_is_safe(line) || strlen(line) >= sizeof set->items[0].id) {
            rc = error_set(err, "%s:%d: prompt id '%s' must be 1-63 letters, digits, '-', '_' or '.'", path, lineno,
                           line);
            break;
        }
        if (strlen(text) >= sizeof set->items[0].text) {
            rc = error_set(err, "%s:%d: prompt too long", path, lineno);
            break;
        }
        for (int i = 0; i < set->count; i++)
            if (strcmp(set->items[i].id, line) == 0) {
                rc = error_set(err, "%s:%d: duplicate prompt id '%s'", path, lineno, line);
                break;
            }
        if (rc) break;
        if (set->count == cap) {
            cap = cap ? 2 * cap : 16;
            Prompt *grown = realloc(set->items, (size_t)cap * sizeof *grown);
            if (!grown) {
                rc = error_set(err, "out of memory");
                break;
            }
            set->items = grown;
        }
        memcpy(set->items[set->count].id, line, strlen(line) + 1); /* length checked above */
        snprintf(set->items[set->count].text, sizeof set->items[0].text, "%s", text);
        set->count++;
    }
    if (!rc && ferror(f)) rc = error_set(err, "%s: read error", path);
    if (!rc && set->count == 0) rc = error_set(err, "%s: no prompts", path);
    fclose(f);
    if (rc) prompt_set_free(set);
    return rc;
}

void prompt_set_free(PromptSet *set) {
    free(set->items);
    memset(set, 0, sizeof *set);
}
