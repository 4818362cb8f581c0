/* Prompt sets: text files with one prompt per line as "id<TAB>prompt"; blank lines and lines starting with '#'
 * are skipped. Ids are non-empty, unique, and safe in file names (letters, digits, '-', '_', '.'). */
#ifndef CACHEBENCH_PROMPTS_H
#define CACHEBENCH_PROMPTS_H

#include "core/error.h"

typedef struct {
    char id[64];
    char text[512];
} Prompt;

typedef struct {
    Prompt *items;
    int count;
} PromptSet;

/* Errors name the file and line. */
int prompt_set_read(const char *path, PromptSet *set, Error *err);
void prompt_set_free(PromptSet *set);

#endif
