#include "tests/fixtures.h"

#include <criterion/criterion.h>

#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <math.h>

#include "core/rng.h"
#include "models/dit/dit.h"
#include "harness/runner.h"
#include "harness/solvers/solver.h"
#include "models/safetensors.h"
#ifdef CACHEBENCH_CUDA
#include "models/dit/engine_cuda.h"
#endif

static const DitConfig SMALL = {
    .name = "tiny", /* uses the tiny vocabulary path and name-based defaults */
    .in_dim = 3, .out_dim = 3, .patch_t = 1, .patch_h = 2, .patch_w = 2,
    .dim = 32, .ffn_dim = 64, .num_heads = 2, .num_layers = 2, .freq_dim = 256,
    .text_dim = 8, .text_len = 5, .vocab_size = 18, .eps = 1e-6f, .rope_theta = 10000.0f,
    .frames = 2, .height = 4, .width = 6, .default_steps = 6, .default_shift = 3.0f, .default_guidance = 5.0f};

const DitConfig *fixture_small_config(void) { return &SMALL; }

char *fixture_tmpdir(void) {
    char *dir = strdup("/tmp/cachebench-test-XXXXXX");
    if (!dir || !mkdtemp(dir)) {
        free(dir);
        return NULL;
    }
    return dir;
}

void fixture_rmdir(const char *dir) {
    if (!dir || strncmp(dir, "/tmp/cachebench-test-", 21) != 0) return;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "fixture: could not remove %s\n", dir);
}

typedef struct {
    StWriteTensor *list;
    int count;
    StDtype dtype;
} Collect;

static int collect_tensor(void *user, const char *name, int ndim, const int64_t *shape, const float **slot) {
    Collect *c = user;
    StWriteTensor *t = &c->list[c->count++];
    t->name = strdup(name);
    t->dtype = c->dtype;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->data = *slot;
    return 0;
}

static int count_tensor(void *user, const char *name, int ndim, const int64_t *shape, const float **slot) {
    (void)name, (void)ndim, (void)shape, (void)slot;
    (*(int *)user)++;
    return 0;
}

int fixture_write_random_weights(const char *path, const DitConfig *cfg, uint64_t seed, int dtype) {
    DitModel m;
    Error err;
    if (dit_init_random(&m, cfg, seed, &err)) return -1;
    int count = 0;
    dit_for_each_tensor(&m, count_tensor, &count);
    Collect c = {.list = calloc((size_t)count, sizeof(StWriteTensor)), .dtype = (StDtype)dtype};
    dit_for_each_tensor(&m, collect_tensor, &c);
    int rc = st_write(path, c.list, c.count, &err);
    if (rc) fprintf(stderr, "fixture: %s\n", err.msg);
    for (int i = 0; i < c.count; i++) free((char *)c.list[i].name);
    free(c.list);
    dit_free(&m);
    if (rc) return -1;
    /* The vocabulary lives beside the weights. */
    char dir[4096], vocab[4200];
    snprintf(dir, sizeof dir, "%s", path);
    snprintf(vocab, sizeof vocab, "%s/vocab.txt", dirname(dir));
    char cmd[8500];
    snprintf(cmd, sizeof cmd, "cp models/tiny/vocab.txt '%s'", vocab);
    return system(cmd) == 0 ? 0 : -1;
}

const char *fixture_cli_path(void) {
    /* `make sanitize` builds a second, instrumented CLI in its own folder and points the tests at it. */
    const char *bin = getenv("CACHEBENCH_BIN");
    return bin && *bin ? bin : "build/cachebench";
}

const char *fixture_python(void) {
    const char *py = getenv("CACHEBENCH_PYTHON");
    return py && *py ? py : "/usr/bin/python3";
}

int fixture_run_cli(char *out, size_t cap, const char *const *args) {
    int pipefd[2];
    if (pipe(pipefd)) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(pipefd[1], 1);
        dup2(pipefd[1], 2);
        close(pipefd[0]);
        int nargs = 0;
        while (args[nargs]) nargs++;
        char **argv = calloc((size_t)nargs + 2, sizeof *argv);
        const char *bin = fixture_cli_path();
        argv[0] = (char *)bin;
        for (int i = 0; i < nargs; i++) argv[i + 1] = (char *)args[i];
        execv(bin, argv);
        _exit(127);
    }
    close(pipefd[1]);
    size_t len = 0;
    ssize_t got;
    char sink[4096];
    while ((got = read(pipefd[0], len + 1 < cap ? out + len : sink,
                       len + 1 < cap ? cap - 1 - len : sizeof sink)) > 0)
        if (len + 1 < cap) len += (size_t)got;
    out[len] = '\0';
    close(pipefd[0]);
    int status;
    if (waitpid(pid, &status, 0) < 0) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void fixture_random(float *x, size_t n, uint64_t seed) {
    philox_uniform(x, n, seed, 7);
    for (size_t i = 0; i < n; i++) x[i] = 2.0f * x[i] - 1.0f;
}

/* Scores -α·(x_i - x_j)² with x = the token's position in one pattern's order: attention decays with the distance
 * in that order (σ = w/5), so that pattern's mask drops only keys of weight < e^-12.5 relative to the nearest,
 * while the other pattern's mask drops keys of weight ~0.3-0.8. q = √hd·[-α x², 2α x, -α, 0..], k = [1, x, x², 0..]
 * (√hd cancels the 1/√hd of the attention). */
void fixture_decaying_head(float *q, float *k, const SvgShape *g, AttnPattern p, int heads, int hd, int h) {
    const int L = g->frames * g->tokens_per_frame, ld = heads * hd;
    const double sigma = g->band / 5.0, alpha = 1.0 / (2.0 * sigma * sigma), r = sqrt((double)hd);
    for (int i = 0; i < L; i++) {
        const double x = svg_pos(g, p, i);
        float *qi = q + i * ld + h * hd, *ki = k + i * ld + h * hd;
        memset(qi, 0, sizeof(float) * hd), memset(ki, 0, sizeof(float) * hd);
        qi[0] = (float)(-alpha * x * x * r), qi[1] = (float)(2 * alpha * x * r), qi[2] = (float)(-alpha * r);
        ki[0] = 1.0f, ki[1] = (float)x, ki[2] = (float)(x * x);
    }
}

char *fixture_read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)n + 1)))
        buf[fread(buf, 1, (size_t)n, f)] = '\0';
    fclose(f);
    return buf;
}

int fixture_replay_case(const char *path, const DitConfig *cfg, const char *weights, const char *prompt,
                        const char *negative, uint64_t seed, int steps, float shift, float guidance) {
    Error err = {{0}};
    DitModel m;
    if (dit_load(&m, cfg, weights, &err)) {
        fprintf(stderr, "fixture_replay_case: %s\n", err.msg);
        return -1;
    }
    char dir[4096], vocab_path[4200];
    snprintf(dir, sizeof dir, "%s", weights);
    snprintf(vocab_path, sizeof vocab_path, "%s/vocab.txt", dirname(dir));
    char **vocab = NULL;
    int vocab_size = 0;
    const size_t n = (size_t)cfg->in_dim * cfg->frames * cfg->height * cfg->width;
    const size_t tn = (size_t)cfg->text_len * cfg->text_dim;
    float *noise = malloc(n * sizeof(float)), *text = malloc(2 * tn * sizeof(float));
    float *sigmas = malloc((size_t)(steps + 1) * sizeof(float)), *timesteps = malloc((size_t)steps * sizeof(float));
    int rc = -1;
    if (!noise || !text || !sigmas || !timesteps) {
        snprintf(err.msg, sizeof err.msg, "out of memory");
    } else if (!dit_read_vocab(vocab_path, &vocab, &vocab_size, &err) &&
               !dit_encode_prompt(&m, vocab, vocab_size, prompt, text, &err) &&
               !dit_encode_prompt(&m, vocab, vocab_size, negative, text + tn, &err)) {
        runner_initial_noise(noise, n, seed);
        solver_by_name("euler")->schedule(steps, shift, sigmas, timesteps);
        const StWriteTensor t[] = {
            {"noise", ST_F32, 4, {cfg->in_dim, cfg->frames, cfg->height, cfg->width}, noise},
            {"text.cond", ST_F32, 2, {cfg->text_len, cfg->text_dim}, text},
            {"text.uncond", ST_F32, 2, {cfg->text_len, cfg->text_dim}, text + tn},
            {"sigmas", ST_F32, 1, {steps + 1}, sigmas},
            {"timesteps", ST_F32, 1, {steps}, timesteps},
            {"guidance", ST_F32, 1, {1}, &guidance},
        };
        rc = st_write(path, t, (int)(sizeof t / sizeof *t), &err);
        if (!rc) {
            char wpath[4200];
            snprintf(wpath, sizeof wpath, "%s.weights", path);
            FILE *f = fopen(wpath, "w");
            rc = f && fprintf(f, "%s\n", weights) > 0 ? 0 : -1;
            if (f) fclose(f);
            if (rc) snprintf(err.msg, sizeof err.msg, "cannot write %.900s", wpath);
        }
    }
    if (rc) fprintf(stderr, "fixture_replay_case: %s\n", err.msg);
    if (vocab) dit_free_vocab(vocab, vocab_size);
    free(noise), free(text), free(sigmas), free(timesteps);
    dit_free(&m);
    return rc;
}

StrategyEnv fixture_strategy_env(const Engine *e, int steps, size_t model_numel) {
    const DitConfig *cfg = &e->model->cfg;
    return (StrategyEnv){.num_steps = steps, .num_layers = cfg->num_layers, .num_heads = cfg->num_heads,
                         .dim = cfg->dim, .model_numel = model_numel, .tokens_numel = (size_t)e->L * cfg->dim,
                         .ops = e->ops, .model_name = cfg->name};
}

void fixture_require_cuda_device(void) {
#ifdef CACHEBENCH_CUDA
    CudaDeviceInfo info;
    Error err = {{0}};
    const char *prefix = "no CUDA device available: ";
    if (cuda_device_info(&info, &err))
        cr_skip_test("no CUDA device: %s",
                     strncmp(err.msg, prefix, strlen(prefix)) == 0 ? err.msg + strlen(prefix) : err.msg);
    if (info.major < 8)
        cr_skip_test("no CUDA device: %s has compute capability %d.%d, the CUDA engine needs 8.0", info.name,
                     info.major, info.minor);
#else
    cr_skip_test("no CUDA device: this build has no CUDA backend (nvcc was not found at build time, or CUDA=0)");
#endif
}
