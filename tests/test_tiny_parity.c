/* The C forward of the embedded tiny model against PyTorch (training/tiny/train.py `fixture`): a float64 forward of
 * the exported weights on a few cases (conditional and empty prompt, early and late timesteps). Values nobody here
 * computed in C: the reference is an independent implementation of the module in another framework. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "models/dit/dit.h"
#include "models/safetensors.h"

#define WEIGHTS "models/tiny/tiny.safetensors"
#define FIXTURE "models/tiny/parity_fixture.safetensors"

Test(tiny_parity, c_forward_matches_pytorch, .timeout = 120) {
    if (access(WEIGHTS, R_OK) != 0 && access(FIXTURE, R_OK) != 0)
        cr_skip_test("no trained tiny model in this checkout (" WEIGHTS ")");
    cr_assert_eq(access(FIXTURE, R_OK), 0, "%s exists but %s is missing: regenerate it with "
                 "`/usr/bin/python3 training/tiny/train.py fixture`", WEIGHTS, FIXTURE);
    const DitConfig *cfg = dit_config_by_name("tiny");
    DitModel m;
    Error err = {{0}};
    cr_assert_eq(dit_load(&m, cfg, WEIGHTS, &err), 0, "%s", err.msg);
    StFile fx;
    cr_assert_eq(st_open(&fx, FIXTURE, &err), 0, "%s", err.msg);
    DitState s;
    cr_assert_eq(dit_state_init(&s, cfg, cfg->frames, cfg->height, cfg->width, &err), 0, "%s", err.msg);
    size_t n = (size_t)cfg->in_dim * cfg->frames * cfg->height * cfg->width;
    size_t tn = (size_t)cfg->text_len * cfg->text_dim;
    float *x = malloc(n * sizeof(float)), *want = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));
    float *text = malloc(tn * sizeof(float)), tokens[64], t;
    int cases = 0;
    for (int i = 0;; i++, cases++) {
        char name[64];
        snprintf(name, sizeof name, "case%d.x", i);
        const StTensor *tx = st_find(&fx, name);
        if (!tx) break;
        snprintf(name, sizeof name, "case%d.t", i);
        const StTensor *tt = st_find(&fx, name);
        snprintf(name, sizeof name, "case%d.tokens", i);
        const StTensor *tk = st_find(&fx, name);
        snprintf(name, sizeof name, "case%d.v", i);
        const StTensor *tv = st_find(&fx, name);
        cr_assert(tt && tk && tv && tk->shape[0] == cfg->text_len, "case %d incomplete in %s", i, FIXTURE);
        cr_assert_eq(st_to_f32(tx, x, &err), 0);
        cr_assert_eq(st_to_f32(tt, &t, &err), 0);
        cr_assert_eq(st_to_f32(tk, tokens, &err), 0);
        cr_assert_eq(st_to_f32(tv, want, &err), 0);
        /* Token ids -> embedding rows; -1 is padding, which stays zero as in the PyTorch model. */
        for (int r = 0; r < cfg->text_len; r++)
            for (int c = 0; c < cfg->text_dim; c++)
                text[(size_t)r * cfg->text_dim + c] =
                    tokens[r] < 0 ? 0.0f : m.w.token_embedding[(size_t)tokens[r] * cfg->text_dim + c];
        dit_forward(&m, &s, x, t, text, got);
        double err2 = 0, ref2 = 0, max_err = 0, max_ref = 0;
        for (size_t j = 0; j < n; j++) {
            double d = (double)got[j] - want[j];
            err2 += d * d, ref2 += (double)want[j] * want[j];
            max_err = fmax(max_err, fabs(d)), max_ref = fmax(max_ref, fabs(want[j]));
        }
        /* fp32 against a float64 reference through 4 blocks: ~1e-6 relative; the bound is 1e-4. */
        double rel_l2 = sqrt(err2 / ref2), rel_max = max_err / max_ref;
        cr_assert(rel_l2 <= 1e-4 && rel_max <= 1e-4, "case %d (t=%g): relative L2 error %.3g, max %.3g > 1e-4", i, t,
                  rel_l2, rel_max);
    }
    cr_assert(cases >= 3, "%s should hold at least 3 cases, found %d", FIXTURE, cases);
    free(x), free(want), free(got), free(text);
    dit_state_free(&s);
    st_close(&fx);
    dit_free(&m);
}
