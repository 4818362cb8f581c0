/* Harness pieces with published reference values: Philox4x32-10 known-answer vectors (Random123 kat_vectors),
 * SHA-256 (FIPS 180-2 examples), the shifted flow-matching schedule. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/rng.h"
#include "core/sha256.h"
#include "harness/cli.h"
#include "harness/solvers/solver.h"

Test(rng, philox4x32_10_known_answers) {
    const struct { uint32_t ctr[4], key[2], want[4]; } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
        uint32_t out[4];
        philox4x32_10(kat[i].ctr, kat[i].key, out);
        for (int j = 0; j < 4; j++) cr_assert_eq(out[j], kat[i].want[j], "vector %zu word %d: %08x", i, j, out[j]);
    }
}

Test(rng, normal_noise_is_standard_and_order_free) {
    enum { N = 1 << 16 };
    static float a[N], b[100];
    philox_normal(a, N, 42, 0);
    double mean = 0, var = 0;
    for (int i = 0; i < N; i++) mean += a[i];
    mean /= N;
    for (int i = 0; i < N; i++) var += (a[i] - mean) * (a[i] - mean);
    var /= N;
    /* Standard error of the mean is 1/sqrt(N) = 0.004; of the variance about sqrt(2/N) = 0.0055. */
    cr_assert(fabs(mean) < 0.02 && fabs(var - 1.0) < 0.03, "mean %g var %g", mean, var);
    /* A shorter draw is a prefix of a longer one: element i depends only on (seed, i). */
    philox_normal(b, 100, 42, 0);
    cr_assert_eq(memcmp(a, b, sizeof b), 0);
    philox_normal(b, 100, 43, 0);
    cr_assert_neq(memcmp(a, b, sizeof b), 0);
}

static void sha_hex(const char *msg, char hex[65]) {
    Sha256 h;
    uint8_t d[32];
    sha256_init(&h);
    sha256_update(&h, msg, strlen(msg));
    sha256_final(&h, d);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

Test(sha256, fips_examples) {
    char hex[65];
    sha_hex("abc", hex);
    cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    sha_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", hex);
    cr_assert_str_eq(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    sha_hex("", hex);
    cr_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

Test(sampler, euler_shifted_schedule) {
    const SolverKind *euler = solver_by_name("euler");
    cr_assert_not_null(euler);
    float s[5], t[4];
    euler->schedule(4, 5.0f, s, t);
    /* sigma = 1, .75, .5, .25 shifted by 5: 5s/(1+4s) = 1, 0.9375, 0.8333.., 0.625; then 0. */
    const float want[5] = {1.0f, 0.9375f, 5.0f / 6.0f, 0.625f, 0.0f};
    for (int i = 0; i < 5; i++) cr_assert_float_eq(s[i], want[i], 1e-6f, "sigma[%d] = %g", i, s[i]);
    for (int i = 0; i < 4; i++) cr_assert_eq(t[i], s[i] * 1000.0f, "timestep[%d] = %g", i, t[i]);
    euler->schedule(4, 1.0f, s, t);
    cr_assert_float_eq(s[1], 0.75f, 1e-7f);
}

Test(sampler, registry_lists_every_solver_once) {
    cr_assert_geq(solver_count(), 1);
    for (int i = 0; i < solver_count(); i++) {
        const SolverKind *k = solver_at(i);
        cr_assert_eq(solver_by_name(k->name), k, "%s", k->name);
        cr_assert(strstr(solver_names(), k->name), "%s missing from '%s'", k->name, solver_names());
        cr_assert(k->schedule && k->create && k->step && k->destroy && k->summary, "%s", k->name);
    }
    cr_assert_null(solver_by_name("heun"));
    cr_assert_null(solver_at(solver_count()));
}

/* --help's lists of strategies: wrapped at commas, continuation lines indented, no item split. */
Test(cli, wrap_list_breaks_at_commas) {
    char buf[256];
    cli_wrap_list("none, static, teacache, easycache", 4, 24, buf, sizeof buf);
    cr_assert_str_eq(buf, "none, static,\n    teacache, easycache");
    cli_wrap_list("one", 4, 24, buf, sizeof buf);
    cr_assert_str_eq(buf, "one");
    char small[8];
    cli_wrap_list("none, static, teacache", 0, 80, small, sizeof small);
    cr_assert_str_eq(small, "none, s", "truncated to the buffer, terminated");
}
