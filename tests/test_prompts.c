/* The shipped prompt sets (datasets/prompts_bench.txt, datasets/prompts_short.txt) against the tiny model's world
 * (issue 5; training/tiny/dataset.py): every prompt is "a {colour} {shape} moving {direction} on a {background}
 * background" with an object never in the background's colour; none is ambiguous to the model's bag-of-words
 * context (a prompt whose colour and background could swap roles, e.g. "a blue X on a white background" =
 * "a white X on a blue background", would be one context for two different videos); the benchmark set uses every
 * word of models/tiny/vocab.txt. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "datasets/prompts.h"

static const char *const COLOURS[] = {"red", "green", "blue", "yellow", "white", NULL};
static const char *const SHAPES[] = {"circle", "square", "triangle", NULL};
static const char *const DIRECTIONS[] = {"left", "right", "up", "down", NULL};
static const char *const BACKGROUNDS[] = {"black", "gray", "white", "blue", NULL};

static int in(const char *const *list, const char *w) {
    for (int i = 0; list[i]; i++)
        if (strcmp(list[i], w) == 0) return 1;
    return 0;
}

/* Parses one prompt; fails the test naming the set and id when it does not follow the template. */
static void parse(const char *set, const Prompt *p, char words[9][32]) {
    int n = sscanf(p->text, "%31s %31s %31s %31s %31s %31s %31s %31s %31s", words[0], words[1], words[2], words[3],
                   words[4], words[5], words[6], words[7], words[8]);
    cr_assert_eq(n, 9, "%s %s: '%s' is not 9 words", set, p->id, p->text);
    cr_assert(strcmp(words[0], "a") == 0 && in(COLOURS, words[1]) && in(SHAPES, words[2]) &&
                  strcmp(words[3], "moving") == 0 && in(DIRECTIONS, words[4]) && strcmp(words[5], "on") == 0 &&
                  strcmp(words[6], "a") == 0 && in(BACKGROUNDS, words[7]) && strcmp(words[8], "background") == 0,
              "%s %s: '%s' does not follow the template", set, p->id, p->text);
    cr_assert_str_neq(words[1], words[7], "%s %s: the object has the background's colour", set, p->id);
    cr_assert(!(in(BACKGROUNDS, words[1]) && in(COLOURS, words[7])),
              "%s %s: '%s' is the same bag of words as 'a %s %s ... on a %s background'", set, p->id, p->text,
              words[7], words[2], words[1]);
}

static void check_set(const char *path, int min_count, int every_word) {
    PromptSet s;
    Error err = {{0}};
    cr_assert_eq(prompt_set_read(path, &s, &err), 0, "%s", err.msg);
    cr_assert(s.count >= min_count, "%s has %d prompts, expected at least %d", path, s.count, min_count);
    char used[64][32];
    int nused = 0;
    for (int i = 0; i < s.count; i++) {
        char w[9][32];
        parse(path, &s.items[i], w);
        for (int k = 0; k < 9; k++) {
            int seen = 0;
            for (int u = 0; u < nused && !seen; u++) seen = strcmp(used[u], w[k]) == 0;
            if (!seen && nused < 64) memcpy(used[nused++], w[k], sizeof used[0]);
        }
    }
    if (every_word) {
        FILE *f = fopen("models/tiny/vocab.txt", "r");
        cr_assert_not_null(f, "models/tiny/vocab.txt");
        char word[64];
        while (fscanf(f, "%63s", word) == 1) {
            int seen = 0;
            for (int u = 0; u < nused && !seen; u++) seen = strcmp(used[u], word) == 0;
            cr_assert(seen, "%s never uses the vocabulary word '%s'", path, word);
        }
        fclose(f);
    }
    prompt_set_free(&s);
}

Test(prompts, bench_set_covers_the_vocabulary) { check_set("datasets/prompts_bench.txt", 16, 1); }
Test(prompts, short_set_has_four_unambiguous_prompts) { check_set("datasets/prompts_short.txt", 4, 0); }
