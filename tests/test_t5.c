/* The umT5 text encoder (models/t5/): tokenizer against SentencePiece's own spm_encode on a model trained here
 * with spm_train, encoder against an independent PyTorch transcription of wan/modules/t5.py
 * (tests/t5_reference.py) on a reduced random model, the two weight naming schemes, bad inputs, cachebench encode. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness/text_encoder.h"
#include "models/dit/config.h"
#include "models/safetensors.h"
#include "models/t5/t5.h"
#include "models/t5/tokenizer.h"
#ifdef CACHEBENCH_CUDA
#include "models/dit/engine_cuda.h" /* cuda_device_info */
#include "models/t5/t5_cuda.h"
#endif
#include "models/vae/vae.h"
#include "results/record.h"
#include "tests/fixtures.h"

/* ---- a reduced random umT5 ---- */

/* The structure of umT5-XXL at small sizes. */
static const T5Config SMALL = {.vocab = 50, .dim = 32, .dim_attn = 32, .dim_ffn = 300, .heads = 4, .layers = 2,
                               .buckets = 32};

typedef struct {
    const char *skip;       /* official name of a tensor to leave out */
    const char *reshape;    /* official name of a tensor written with one extra row */
} WriteFaults;

/* The tensors of cfg with official names (and HF names when hf), values from seed: the same numbers either way. */
static int write_t5(const char *path, const T5Config *c, uint64_t seed, StDtype dtype, int hf, WriteFaults faults) {
    enum { PER_LAYER = 10 };
    int count = 2 + PER_LAYER * c->layers, n = 0;
    StWriteTensor *t = calloc((size_t)count, sizeof *t);
    char (*names)[128] = calloc((size_t)count, 128);
    float **bufs = calloc((size_t)count, sizeof *bufs);
    for (int i = 0; i < count; i++) {
        const char *off, *hfn;
        int layer = i < 2 ? -1 : (i - 2) / PER_LAYER, kind = i < 2 ? i : (i - 2) % PER_LAYER;
        int64_t rows, cols = 0;
        float scale = 1.0f, offset = 0.0f;
        if (layer < 0) {
            off = kind == 0 ? "token_embedding.weight" : "norm.weight";
            hfn = kind == 0 ? "shared.weight" : "encoder.final_layer_norm.weight";
            rows = kind == 0 ? c->vocab : c->dim, cols = kind == 0 ? c->dim : 0;
            if (kind == 1) scale = 0.5f, offset = 1.0f;
        } else {
            static const char *const OFF[PER_LAYER] = {
                "attn.q.weight", "attn.k.weight", "attn.v.weight", "attn.o.weight", "ffn.gate.0.weight",
                "ffn.fc1.weight", "ffn.fc2.weight", "norm1.weight", "norm2.weight", "pos_embedding.embedding.weight"};
            static const char *const HF[PER_LAYER] = {
                "layer.0.SelfAttention.q.weight", "layer.0.SelfAttention.k.weight", "layer.0.SelfAttention.v.weight",
                "layer.0.SelfAttention.o.weight", "layer.1.DenseReluDense.wi_0.weight",
                "layer.1.DenseReluDense.wi_1.weight", "layer.1.DenseReluDense.wo.weight", "layer.0.layer_norm.weight",
                "layer.1.layer_norm.weight", "layer.0.SelfAttention.relative_attention_bias.weight"};
            const int64_t R[PER_LAYER] = {c->dim_attn, c->dim_attn, c->dim_attn, c->dim, c->dim_ffn, c->dim_ffn,
                                          c->dim, c->dim, c->dim, c->buckets};
            const int64_t C[PER_LAYER] = {c->dim, c->dim, c->dim, c->dim_attn, c->dim, c->dim, c->dim_ffn, 0, 0,
                                          c->heads};
            rows = R[kind], cols = C[kind];
            if (kind <= 6) scale = 1.7f / sqrtf((float)cols);
            else if (kind <= 8) scale = 0.5f, offset = 1.0f;
            char official[128];
            snprintf(official, sizeof official, "blocks.%d.%s", layer, OFF[kind]);
            if (hf) snprintf(names[n], 128, "encoder.block.%d.%s", layer, HF[kind]);
            else snprintf(names[n], 128, "%s", official);
            if (faults.skip && strcmp(faults.skip, official) == 0) continue;
            if (faults.reshape && strcmp(faults.reshape, official) == 0) rows++;
            off = NULL, hfn = NULL;
        }
        if (off) snprintf(names[n], 128, "%s", hf ? hfn : off);
        size_t len = (size_t)rows * (cols ? cols : 1);
        bufs[n] = malloc(len * sizeof(float));
        fixture_random(bufs[n], len, seed * 1000 + (uint64_t)i);
        for (size_t j = 0; j < len; j++) bufs[n][j] = offset + scale * bufs[n][j];
        t[n] = (StWriteTensor){names[n], dtype, cols ? 2 : 1, {rows, cols}, bufs[n]};
        n++;
    }
    Error err;
    int rc = st_write(path, t, n, &err);
    for (int i = 0; i < n; i++) free(bufs[i]);
    free(bufs), free(names), free(t);
    return rc;
}

static int have_torch(void) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import numpy, torch' >/dev/null 2>&1", fixture_python());
    return system(cmd) == 0;
}

static float *read_floats(const char *path, size_t n) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    float *x = malloc(n * sizeof *x);
    cr_assert_eq(fread(x, sizeof *x, n, f), n, "%s is short", path);
    fclose(f);
    return x;
}

/* Runs tests/t5_reference.py on weights and ids padded to pad_to; returns its [n][dim] output; buckets (601) too. */
static float *torch_reference(const char *dir, const char *weights, const int *ids, int n, int pad_to, int dim,
                              int *buckets) {
    char ids_path[512], out_path[512], bucket_path[512], cmd[4096];
    snprintf(ids_path, sizeof ids_path, "%s/ids.txt", dir);
    snprintf(out_path, sizeof out_path, "%s/ref.f32", dir);
    snprintf(bucket_path, sizeof bucket_path, "%s/buckets.i32", dir);
    FILE *f = fopen(ids_path, "w");
    for (int i = 0; i < n; i++) fprintf(f, "%d ", ids[i]);
    fclose(f);
    snprintf(cmd, sizeof cmd, "'%s' tests/t5_reference.py '%s' '%s' %d '%s' '%s' 2>&1", fixture_python(), weights,
             ids_path, pad_to, out_path, bucket_path);
    cr_assert_eq(system(cmd), 0, "%s failed", cmd);
    if (buckets) {
        FILE *b = fopen(bucket_path, "rb");
        cr_assert_not_null(b);
        cr_assert_eq(fread(buckets, sizeof(int), 601, b), 601u);
        fclose(b);
    }
    return read_floats(out_path, (size_t)n * dim);
}

static double max_rel_diff(const float *a, const float *b, size_t n) {
    double diff = 0, ref = 0;
    for (size_t i = 0; i < n; i++) {
        diff = fmax(diff, fabs((double)a[i] - b[i]));
        ref = fmax(ref, fabs((double)b[i]));
    }
    return diff / ref;
}

Test(t5, encoder_matches_torch_transcription, .timeout = 120) {
    if (!have_torch()) cr_skip_test("%s cannot import numpy and torch", fixture_python());
    char *dir = fixture_tmpdir();
    /* 150 tokens: relative distances past max_distance 128 (the capped bucket) occur; padded to 160 in torch */
    enum { N = 150, PAD = 160 };
    int ids[N];
    for (int i = 0; i < N; i++) ids[i] = (i * 37 + 11) % SMALL.vocab;
    const StDtype dtypes[3] = {ST_F32, ST_BF16, ST_F16};
    for (int d = 0; d < 3; d++) {
        char path[512];
        snprintf(path, sizeof path, "%s/t5_%d.safetensors", dir, d);
        cr_assert_eq(write_t5(path, &SMALL, 3, dtypes[d], 0, (WriteFaults){0}), 0);
        T5Encoder enc;
        Error err = {{0}};
        cr_assert_eq(t5_encoder_open(&enc, path, &err), 0, "%s", err.msg);
        cr_assert(enc.cfg.vocab == SMALL.vocab && enc.cfg.dim == SMALL.dim && enc.cfg.heads == SMALL.heads &&
                  enc.cfg.dim_ffn == SMALL.dim_ffn && enc.cfg.layers == SMALL.layers && enc.official_names);
        float *out = malloc((size_t)N * SMALL.dim * sizeof(float));
        cr_assert_eq(t5_encode(&enc, ids, N, out, &err), 0, "%s", err.msg);
        int buckets[601];
        float *ref = torch_reference(dir, path, ids, N, PAD, SMALL.dim, buckets);
        double rel = max_rel_diff(out, ref, (size_t)N * SMALL.dim);
        cr_assert_leq(rel, 1e-4, "dtype %d: max |C - torch| / max |torch| = %g", d, rel);
        for (int r = -300; r <= 300; r++)
            cr_assert_eq(t5_relative_bucket(r, 32, 128), buckets[r + 300], "rel %d: bucket %d, torch %d", r,
                         t5_relative_bucket(r, 32, 128), buckets[r + 300]);
        free(out), free(ref);
        t5_encoder_close(&enc);
    }
    fixture_rmdir(dir);
    free(dir);
}

/* 1 when this process can use a GPU; otherwise 0 and why in why (the reason CUDA work fails here). */
static int have_cuda_device(char *why, size_t cap) {
#ifdef CACHEBENCH_CUDA
    CudaDeviceInfo info;
    Error err = {{0}};
    if (cuda_device_info(&info, &err) == 0 && info.major >= 8) return 1;
    if (err.msg[0]) snprintf(why, cap, "%.400s", err.msg);
    else snprintf(why, cap, "%.200s has compute capability %d.%d (8.0 needed)", info.name, info.major, info.minor);
#else
    snprintf(why, cap, "this build has no CUDA backend");
#endif
    return 0;
}

/* The encoder on the GPU (models/t5/t5_cuda.cu) against t5_encode on the CPU, for weights stored as F32, BF16 and
 * F16, prompts of 150 (distances past max_distance), 7 and 200 tokens through one device encoder (the activations grow and
 * are reused). Tolerance: 1e-4 of the output's largest magnitude; the two sum the same fp32 products in different
 * orders. */
Test(t5, cuda_encoder_matches_cpu, .timeout = 120) {
    char why[512];
    if (!have_cuda_device(why, sizeof why)) cr_skip_test("no CUDA device: %s", why);
#ifdef CACHEBENCH_CUDA
    char *dir = fixture_tmpdir();
    enum { MAX_N = 200 };
    const int lengths[3] = {150, 7, MAX_N};
    int ids[MAX_N];
    for (int i = 0; i < MAX_N; i++) ids[i] = (i * 37 + 11) % SMALL.vocab;
    const StDtype dtypes[3] = {ST_F32, ST_BF16, ST_F16};
    float *cpu = malloc((size_t)MAX_N * SMALL.dim * sizeof(float));
    float *gpu = malloc((size_t)MAX_N * SMALL.dim * sizeof(float));
    for (int d = 0; d < 3; d++) {
        char path[512];
        snprintf(path, sizeof path, "%s/t5_%d.safetensors", dir, d);
        cr_assert_eq(write_t5(path, &SMALL, 5, dtypes[d], 0, (WriteFaults){0}), 0);
        T5Encoder enc;
        T5Cuda *dev = NULL;
        Error err = {{0}};
        cr_assert_eq(t5_encoder_open(&enc, path, &err), 0, "%s", err.msg);
        cr_assert_eq(t5_cuda_open(&dev, &enc, &err), 0, "%s", err.msg);
        for (int p = 0; p < 3; p++) {
            const int n = lengths[p];
            cr_assert_eq(t5_encode(&enc, ids, n, cpu, &err), 0, "%s", err.msg);
            cr_assert_eq(t5_cuda_encode(dev, ids, n, gpu, &err), 0, "%s", err.msg);
            double rel = max_rel_diff(gpu, cpu, (size_t)n * SMALL.dim);
            cr_assert_leq(rel, 1e-4, "dtype %d, %d tokens: max |GPU - CPU| / max |CPU| = %g", d, n, rel);
        }
        int bad[2] = {3, SMALL.vocab};
        cr_assert_eq(t5_cuda_encode(dev, bad, 2, gpu, &err), -1);
        cr_assert(strstr(err.msg, "outside the vocabulary"), "%s", err.msg);
        t5_cuda_close(dev);
        t5_encoder_close(&enc);
    }
    free(cpu), free(gpu);
    fixture_rmdir(dir);
    free(dir);
#endif
}

/* BF16/F16 weights are converted a block of rows at a time: 1,100 rows of 4,096 span two blocks (1,024 + 76). */
Test(t5, matmul_matches_naive_across_blocks) {
    enum { M = 5, K = 4096, N = 1100 };
    float *in = malloc(M * K * sizeof(float)), *wf = malloc((size_t)N * K * sizeof(float));
    float *out = malloc(M * N * sizeof(float)), *scratch = malloc(t5_matmul_scratch_floats(K) * sizeof(float));
    uint16_t *w16 = malloc((size_t)N * K * sizeof(uint16_t));
    fixture_random(in, M * K, 1);
    fixture_random(wf, (size_t)N * K, 2);
    cr_assert_lt(t5_matmul_scratch_floats(K), (size_t)N * K, "one block holds the whole matrix: nothing tested");
    /* one scratch serves every narrower matrix of a model (the encoder sizes it for its widest input) */
    for (int k = 2; k < 40000; k += 37)
        cr_assert_geq(t5_matmul_scratch_floats(k), t5_matmul_scratch_floats(k - 1), "K %d", k);
    for (int d = 0; d < 3; d++) {
        T5Matrix w = {ST_F32, wf, N, K};
        if (d > 0) {
            for (size_t i = 0; i < (size_t)N * K; i++) w16[i] = d == 1 ? st_f32_to_bf16(wf[i]) : st_f32_to_f16(wf[i]);
            w = (T5Matrix){d == 1 ? ST_BF16 : ST_F16, w16, N, K};
        }
        t5_matmul(out, in, &w, M, scratch);
        double worst = 0;
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                double ref = 0, mag = 0;
                for (int k = 0; k < K; k++) {
                    float wv = d == 0 ? wf[(size_t)n * K + k]
                                      : d == 1 ? st_bf16_to_f32(w16[(size_t)n * K + k]) : st_f16_to_f32(w16[(size_t)n * K + k]);
                    ref += (double)in[m * K + k] * wv;
                    mag += fabs((double)in[m * K + k] * wv);
                }
                worst = fmax(worst, fabs(out[m * N + n] - ref) / mag);
            }
        /* fp32 accumulation over 4,096 terms: error relative to sum |a_k w_k| stays far below 1e-5 */
        cr_assert_lt(worst, 1e-5, "dtype %d: worst error %g", d, worst);
    }
    free(in), free(wf), free(out), free(scratch), free(w16);
}

Test(t5, hf_and_official_names_give_identical_outputs) {
    char *dir = fixture_tmpdir();
    char official[512], hf[512];
    snprintf(official, sizeof official, "%s/official.safetensors", dir);
    snprintf(hf, sizeof hf, "%s/hf.safetensors", dir);
    cr_assert_eq(write_t5(official, &SMALL, 5, ST_BF16, 0, (WriteFaults){0}), 0);
    cr_assert_eq(write_t5(hf, &SMALL, 5, ST_BF16, 1, (WriteFaults){0}), 0);
    enum { N = 23 };
    int ids[N];
    for (int i = 0; i < N; i++) ids[i] = (i * 13 + 2) % SMALL.vocab;
    float *a = malloc(N * SMALL.dim * sizeof(float)), *b = malloc(N * SMALL.dim * sizeof(float));
    T5Encoder ea, eb;
    Error err = {{0}};
    cr_assert_eq(t5_encoder_open(&ea, official, &err), 0, "%s", err.msg);
    cr_assert_eq(t5_encoder_open(&eb, hf, &err), 0, "%s", err.msg);
    cr_assert(ea.official_names && !eb.official_names);
    cr_assert_eq(t5_encode(&ea, ids, N, a, &err), 0, "%s", err.msg);
    cr_assert_eq(t5_encode(&eb, ids, N, b, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(a, b, N * SMALL.dim * sizeof(float)), 0, "HF names and official names differ");
    double spread = 0;
    for (int i = 0; i < N * SMALL.dim; i++) spread = fmax(spread, fabs(a[i]));
    cr_assert_gt(spread, 0.1, "the outputs are degenerate");
    t5_encoder_close(&ea);
    t5_encoder_close(&eb);
    free(a), free(b);
    fixture_rmdir(dir);
    free(dir);
}

Test(t5, bad_weights_name_file_and_tensor) {
    char *dir = fixture_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/bad.safetensors", dir);
    T5Encoder enc;
    Error err = {{0}};
    cr_assert_eq(write_t5(path, &SMALL, 1, ST_F32, 0, (WriteFaults){.skip = "blocks.1.ffn.fc1.weight"}), 0);
    cr_assert_eq(t5_encoder_open(&enc, path, &err), -1);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, "blocks.1.ffn.fc1.weight") && strstr(err.msg, "missing"),
              "%s", err.msg);
    cr_assert_eq(write_t5(path, &SMALL, 1, ST_F32, 1, (WriteFaults){.reshape = "blocks.0.attn.k.weight"}), 0);
    cr_assert_eq(t5_encoder_open(&enc, path, &err), -1);
    cr_assert(strstr(err.msg, path) && strstr(err.msg, "encoder.block.0.layer.0.SelfAttention.k.weight") &&
                  strstr(err.msg, "[33, 32]") && strstr(err.msg, "expected [32, 32]"),
              "%s", err.msg);
    cr_assert_eq(write_t5(path, &SMALL, 1, ST_F32, 0, (WriteFaults){.reshape = "blocks.1.ffn.gate.0.weight"}), 0);
    cr_assert_eq(t5_encoder_open(&enc, path, &err), -1);
    cr_assert(strstr(err.msg, "blocks.1.ffn.gate.0.weight") && strstr(err.msg, "[301, 32]"), "%s", err.msg);
    cr_assert_eq(t5_encoder_open(&enc, "/nonexistent/t5.safetensors", &err), -1);
    cr_assert(strstr(err.msg, "/nonexistent/t5.safetensors"), "%s", err.msg);
    /* a valid model and an id outside its vocabulary */
    cr_assert_eq(write_t5(path, &SMALL, 1, ST_F32, 0, (WriteFaults){0}), 0);
    cr_assert_eq(t5_encoder_open(&enc, path, &err), 0, "%s", err.msg);
    int ids[2] = {3, SMALL.vocab};
    float out[2 * 32];
    cr_assert_eq(t5_encode(&enc, ids, 2, out, &err), -1);
    cr_assert(strstr(err.msg, "outside the vocabulary"), "%s", err.msg);
    t5_encoder_close(&enc);
    fixture_rmdir(dir);
    free(dir);
}

/* ---- tokenizer ---- */

static const char *const CORPUS[] = {
    "A cat walks on the grass, realistic style.",
    "Two anthropomorphic cats in comfy boxing gear fight intensely on a spotlighted stage.",
    "A drone shot of waves crashing against the rugged cliffs along Big Sur's garay point beach.",
    "The camera follows behind a white vintage SUV with a black roof rack as it speeds up a steep dirt road.",
    "Ünïcödé café naïve déjà vu, mixed 文本 with numbers 42 and 混合 text.",
    WAN_DEFAULT_NEGATIVE_PROMPT,
    "一只猫在草地上行走，写实风格。海浪拍打着崎岖的悬崖。",
    "Bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images.",
};

/* Trains a small unigram model with T5's special ids (pad 0, </s> 1, unk 2, no BOS) into dir/spiece.model. */
static void train_spm(const char *dir) {
    if (system("command -v spm_train >/dev/null 2>&1 && command -v spm_encode >/dev/null 2>&1") != 0)
        cr_skip_test("spm_train/spm_encode missing (Debian: sentencepiece)");
    char corpus[512], cmd[2048];
    snprintf(corpus, sizeof corpus, "%s/corpus.txt", dir);
    FILE *f = fopen(corpus, "w");
    for (int rep = 0; rep < 20; rep++)
        for (size_t i = 0; i < sizeof CORPUS / sizeof CORPUS[0]; i++) fprintf(f, "%s\n", CORPUS[i]);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "spm_train --input='%s' --model_prefix='%s/spiece' --model_type=unigram --vocab_size=200 "
             "--hard_vocab_limit=false --character_coverage=1.0 --pad_id=0 --eos_id=1 --unk_id=2 --bos_id=-1 "
             "--minloglevel=2 >'%s/train.log' 2>&1",
             corpus, dir, dir);
    cr_assert_eq(system(cmd), 0, "%s failed", cmd);
}

static SpmModel *trained_spm(const char *dir) {
    train_spm(dir);
    char model[512];
    snprintf(model, sizeof model, "%s/spiece.model", dir);
    Error err = {{0}};
    SpmModel *spm = spm_model_load(model, &err);
    cr_assert_not_null(spm, "%s", err.msg);
    return spm;
}

/* spm_encode's ids for each line of texts (no EOS). */
/* DIR/spiece.model (trained here) and DIR/umt5.safetensors (SMALL at its vocabulary, seed 9) into weights. */
static T5Config encoder_with_tokenizer(const char *dir, StDtype dtype, char *weights, size_t cap) {
    SpmModel *spm = trained_spm(dir);
    T5Config cfg = SMALL;
    cfg.vocab = spm_model_vocab_size(spm);
    spm_model_free(spm);
    snprintf(weights, cap, "%s/umt5.safetensors", dir);
    cr_assert_eq(write_t5(weights, &cfg, 9, dtype, 0, (WriteFaults){0}), 0);
    return cfg;
}

static void spm_encode_lines(const char *dir, const char *const *texts, int n, int **ids, int *counts) {
    char in[512], out[512], cmd[2048];
    snprintf(in, sizeof in, "%s/in.txt", dir);
    snprintf(out, sizeof out, "%s/out.txt", dir);
    FILE *f = fopen(in, "w");
    for (int i = 0; i < n; i++) fprintf(f, "%s\n", texts[i]);
    fclose(f);
    snprintf(cmd, sizeof cmd, "spm_encode --model='%s/spiece.model' --output_format=id <'%s' >'%s'", dir, in, out);
    cr_assert_eq(system(cmd), 0, "%s failed", cmd);
    f = fopen(out, "r");
    static char line[1 << 16];
    for (int i = 0; i < n; i++) {
        cr_assert_not_null(fgets(line, sizeof line, f), "spm_encode gave fewer lines");
        ids[i] = malloc((1 << 15) * sizeof(int));
        counts[i] = 0;
        for (char *tok = strtok(line, " \n"); tok; tok = strtok(NULL, " \n")) ids[i][counts[i]++] = atoi(tok);
    }
    fclose(f);
}

Test(t5, tokenizer_matches_spm_encode, .timeout = 60) {
    char *dir = fixture_tmpdir();
    SpmModel *spm = trained_spm(dir);
    Error err = {{0}};
    cr_assert_eq(spm_model_eos_id(spm), 1);
    const char *texts[] = {
        "A cat walks on the grass, realistic style.",
        "Ünïcödé café naïve – déjà vu",
        WAN_DEFAULT_NEGATIVE_PROMPT,
        "ｆｕｌｌ ｗｉｄｔｈ ＡＢＣ １２３，混合 mixed 文本 with numbers 42",
        "emoji 🐱 and a snowman ☃ the model has never seen",
        "",
    };
    enum { N = sizeof texts / sizeof texts[0] };
    int *expected[N], counts[N];
    spm_encode_lines(dir, texts, N, expected, counts);
    for (int i = 0; i < N; i++) {
        T5Tokens tok;
        cr_assert_eq(t5_tokenize(spm, texts[i], &tok, &err), 0, "%s", err.msg);
        cr_assert_eq(tok.n_tokens, counts[i] + 1, "'%s': %d tokens, spm_encode %d + </s>", texts[i], tok.n_tokens,
                     counts[i]);
        for (int j = 0; j < counts[i]; j++)
            cr_assert_eq(tok.ids[j], expected[i][j], "'%s': id %d is %d, spm_encode %d", texts[i], j, tok.ids[j],
                         expected[i][j]);
        cr_assert_eq(tok.ids[counts[i]], 1, "no </s> at the end");
        for (int j = 0; j < T5_TEXT_LEN; j++) {
            cr_assert_eq(tok.mask[j], j < tok.n_tokens);
            if (j >= tok.n_tokens) cr_assert_eq(tok.ids[j], 0, "padding is not <pad>");
        }
        free(expected[i]);
    }
    /* the negative prompt goes through NFKC: its full-width commas are ASCII commas to the model */
    T5Tokens neg, ascii;
    cr_assert_eq(t5_tokenize(spm, "静态，字幕", &neg, &err), 0);
    cr_assert_eq(t5_tokenize(spm, "静态,字幕", &ascii, &err), 0);
    cr_assert(neg.n_tokens == ascii.n_tokens && memcmp(neg.ids, ascii.ids, sizeof neg.ids) == 0);
    spm_model_free(spm);
    fixture_rmdir(dir);
    free(dir);
}

Test(t5, long_prompt_is_truncated_keeping_eos, .timeout = 60) {
    char *dir = fixture_tmpdir();
    SpmModel *spm = trained_spm(dir);
    Error err = {{0}};
    size_t cap = 6000;
    char *text = calloc(cap, 1);
    for (int i = 0; strlen(text) + 64 < cap; i++) strcat(text, i % 2 ? "waves crashing 混合 " : "cats fight 42 ");
    const char *texts[1] = {text};
    int *expected[1], count;
    spm_encode_lines(dir, texts, 1, expected, &count);
    cr_assert_gt(count, T5_TEXT_LEN, "the text is not long enough (%d pieces)", count);
    T5Tokens tok;
    cr_assert_eq(t5_tokenize(spm, text, &tok, &err), 0, "%s", err.msg);
    cr_assert_eq(tok.n_tokens, T5_TEXT_LEN);
    cr_assert_eq(tok.n_untruncated, count + 1, "the count before truncation is not reported");
    cr_assert_eq(memcmp(tok.ids, expected[0], (T5_TEXT_LEN - 1) * sizeof(int)), 0);
    cr_assert_eq(tok.ids[T5_TEXT_LEN - 1], 1, "</s> is not kept at the end");
    free(expected[0]);
    free(text);
    spm_model_free(spm);
    fixture_rmdir(dir);
    free(dir);
}

Test(t5, text_cleaning_as_wan_does_it) {
    static const struct {
        const char *in, *out;
    } CASES[] = {
        {"  a\t\tb \n c  ", "a b c"},
        {"Tom &amp; Jerry &lt;3", "Tom & Jerry <3"},
        {"<b> &amp;lt; </b>", "<b> < </b>"},               /* html.unescape twice even with a tag */
        {"\xe2\x80\x9cquoted\xe2\x80\x9d \xe2\x80\x98single\xe2\x80\x99", "\"quoted\" 'single'"},
        {"a\x01" "b\x7f" "c\xef\xbb\xbf", "abc"},          /* control characters and BOM removed */
        {"\x1b[31mred\x1b[0m", "red"},                      /* terminal escapes */
        {"&#20320;&#x597D;&#0;", "\xe4\xbd\xa0\xe5\xa5\xbd\xef\xbf\xbd"},
        {"a\xe3\x80\x80" "b\xc2\xa0" "c\r\n\r\nd", "a b c d"}, /* ideographic space, NBSP, CRLF */
        {"bad \xff byte", "bad \xef\xbf\xbd byte"},
        {"&amplifier; &nbsp;x &hellip;", "&lifier; x \xe2\x80\xa6"}, /* NBSP is whitespace too */
        {"", ""},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        char *got = t5_clean_text(CASES[i].in);
        cr_assert_str_eq(got, CASES[i].out, "case %zu", i);
        free(got);
    }
}

Test(t5, missing_tokenizer_is_reported) {
    char *dir = fixture_tmpdir();
    char weights[512], found[4096];
    snprintf(weights, sizeof weights, "%s/umt5.safetensors", dir);
    cr_assert_eq(write_t5(weights, &SMALL, 1, ST_BF16, 0, (WriteFaults){0}), 0);
    Error err = {{0}};
    cr_assert_eq(t5_find_tokenizer(weights, NULL, found, sizeof found, &err), -1);
    cr_assert(strstr(err.msg, "spiece.model") && strstr(err.msg, "--tokenizer"), "%s", err.msg);
    cr_assert_eq(t5_find_tokenizer(weights, "/nonexistent/spiece.model", found, sizeof found, &err), -1);
    cr_assert(strstr(err.msg, "/nonexistent/spiece.model"), "%s", err.msg);
    cr_assert_null(spm_model_load(weights, &err), "a safetensors file loaded as a SentencePiece model");
    cr_assert(strstr(err.msg, weights), "%s", err.msg);
    char prompts[512];
    snprintf(prompts, sizeof prompts, "%s/p.txt", dir);
    FILE *f = fopen(prompts, "w");
    fprintf(f, "a\tA cat.\n");
    fclose(f);
    char out[4096], ctx[512];
    snprintf(ctx, sizeof ctx, "%s/ctx.safetensors", dir);
    const char *args[] = {"encode", "--text-encoder", weights, "--prompts", prompts, "--out", ctx, NULL};
    cr_assert_eq(fixture_run_cli(out, sizeof out, args), 1, "%s", out);
    cr_assert(strstr(out, "spiece.model"), "%s", out);
    struct stat sb;
    cr_assert_neq(stat(ctx, &sb), 0, "an output was written");
    fixture_rmdir(dir);
    free(dir);
}

Test(t5, cli_encode_writes_trimmed_contexts, .timeout = 60) {
    char *dir = fixture_tmpdir();
    SpmModel *spm = trained_spm(dir);
    Error err = {{0}};
    T5Config cfg = SMALL;
    cfg.vocab = spm_model_vocab_size(spm);
    char weights[512], prompts[512], ctx_path[512];
    snprintf(weights, sizeof weights, "%s/umt5.safetensors", dir);
    snprintf(prompts, sizeof prompts, "%s/prompts.txt", dir);
    snprintf(ctx_path, sizeof ctx_path, "%s/contexts.safetensors", dir);
    cr_assert_eq(write_t5(weights, &cfg, 9, ST_BF16, 1, (WriteFaults){0}), 0);
    FILE *f = fopen(prompts, "w");
    fprintf(f, "cat\tA cat walks on the grass, realistic style.\nzh\t一只猫在草地上行走。\n");
    fclose(f);
    char out[8192];
    const char *args[] = {"encode", "--text-encoder", weights, "--prompts", prompts, "--out", ctx_path, NULL};
    cr_assert_eq(fixture_run_cli(out, sizeof out, args), 0, "%s", out);
    cr_assert(strstr(out, "[1/3] cat") && strstr(out, "[3/3] __negative__"), "no progress lines:\n%s", out);
    StFile st;
    cr_assert_eq(st_open(&st, ctx_path, &err), 0, "%s", err.msg);
    cr_assert_eq(st.num_tensors, 3);
    T5Encoder enc;
    cr_assert_eq(t5_encoder_open(&enc, weights, &err), 0, "%s", err.msg);
    const char *keys[3] = {"cat", "zh", "__negative__"};
    const char *texts[3] = {"A cat walks on the grass, realistic style.", "一只猫在草地上行走。", WAN_DEFAULT_NEGATIVE_PROMPT};
    for (int i = 0; i < 3; i++) {
        const StTensor *t = st_find(&st, keys[i]);
        cr_assert_not_null(t, "no tensor '%s'", keys[i]);
        T5Tokens tok;
        cr_assert_eq(t5_tokenize(spm, texts[i], &tok, &err), 0);
        cr_assert(t->dtype == ST_F32 && t->ndim == 2 && t->shape[0] == tok.n_tokens && t->shape[1] == cfg.dim,
                  "'%s': shape [%lld, %lld], expected [%d, %d]", keys[i], (long long)t->shape[0],
                  (long long)t->shape[1], tok.n_tokens, cfg.dim);
        float *want = malloc((size_t)tok.n_tokens * cfg.dim * sizeof(float));
        cr_assert_eq(t5_encode(&enc, tok.ids, tok.n_tokens, want, &err), 0);
        double rel = max_rel_diff((const float *)t->data, want, (size_t)tok.n_tokens * cfg.dim);
        cr_assert_leq(rel, 1e-6, "'%s' differs from t5_encode by %g", keys[i], rel);
        free(want);
    }
    st_close(&st);
    /* --negative replaces the default; the reserved id is refused */
    const char *args2[] = {"encode", "--text-encoder", weights, "--prompts", prompts, "--out", ctx_path,
                           "--negative", "blurry", NULL};
    cr_assert_eq(fixture_run_cli(out, sizeof out, args2), 0, "%s", out);
    cr_assert_eq(st_open(&st, ctx_path, &err), 0, "%s", err.msg);
    T5Tokens blurry;
    cr_assert_eq(t5_tokenize(spm, "blurry", &blurry, &err), 0);
    cr_assert_eq(st_find(&st, "__negative__")->shape[0], blurry.n_tokens);
    st_close(&st);
    f = fopen(prompts, "w");
    fprintf(f, "__negative__\tA cat.\n");
    fclose(f);
    cr_assert_eq(fixture_run_cli(out, sizeof out, args), 1, "%s", out);
    cr_assert(strstr(out, "reserved"), "%s", out);
    t5_encoder_close(&enc);
    spm_model_free(spm);
    fixture_rmdir(dir);
    free(dir);
}

/* encode --backend cuda: on a GPU the same contexts as the CPU's (1e-4, as cuda_encoder_matches_cpu); without one
 * (or in a build without CUDA) a clear error and no file. An unknown backend is a usage error. */
Test(t5, cli_encode_backend_cuda, .timeout = 60) {
    char *dir = fixture_tmpdir();
    char weights[512], prompts[512], cpu_path[512], gpu_path[512], out[8192];
    encoder_with_tokenizer(dir, ST_BF16, weights, sizeof weights);
    snprintf(prompts, sizeof prompts, "%s/prompts.txt", dir);
    snprintf(cpu_path, sizeof cpu_path, "%s/cpu.safetensors", dir);
    snprintf(gpu_path, sizeof gpu_path, "%s/gpu.safetensors", dir);
    FILE *f = fopen(prompts, "w");
    fprintf(f, "cat\tA cat walks on the grass, realistic style.\n");
    fclose(f);
    const char *bad[] = {"encode", "--text-encoder", weights, "--prompts", prompts, "--out", gpu_path,
                         "--backend", "tpu", NULL};
    cr_assert_eq(fixture_run_cli(out, sizeof out, bad), 2, "%s", out);
    cr_assert(strstr(out, "invalid value 'tpu' for --backend"), "%s", out);
    const char *on_cpu[] = {"encode", "--text-encoder", weights, "--prompts", prompts, "--out", cpu_path,
                            "--backend", "cpu", NULL};
    cr_assert_eq(fixture_run_cli(out, sizeof out, on_cpu), 0, "%s", out);
    const char *on_gpu[] = {"encode", "--text-encoder", weights, "--prompts", prompts, "--out", gpu_path,
                            "--backend", "cuda", NULL};
    int rc = fixture_run_cli(out, sizeof out, on_gpu);
    char why[512];
    struct stat sb;
    if (!have_cuda_device(why, sizeof why)) {
        cr_assert_eq(rc, 1, "%s", out);
        cr_assert(strstr(out, "umT5 encoder on cuda: ") &&
                      (strstr(out, "no CUDA device available") || strstr(out, "this build has no CUDA") ||
                       strstr(out, "compute capability")),
                  "%s", out);
        char tmp[600];
        snprintf(tmp, sizeof tmp, "%s.tmp", gpu_path);
        cr_assert(stat(gpu_path, &sb) != 0 && stat(tmp, &sb) != 0, "%s or its .tmp was written", gpu_path);
        /* run --text-encoder encodes on its --backend: the same refusal, before any model is loaded */
        char runs[600];
        snprintf(runs, sizeof runs, "%s/runs", dir);
        const char *run[] = {"run", "--weights", "random:1", "--prompt", "A cat.", "--text-encoder", weights,
                             "--backend", "cuda", "--frames", "1", "--height", "16", "--width", "16", "--steps", "1",
                             "--quiet", "--out", runs, NULL};
        cr_assert_eq(fixture_run_cli(out, sizeof out, run), 1, "%s", out);
        cr_assert(strstr(out, "--text-encoder: umT5 encoder on cuda: "), "%s", out);
    } else {
        cr_assert_eq(rc, 0, "%s", out);
        cr_assert(strstr(out, "on cuda"), "%s", out);
        Error err = {{0}};
        StFile a, b;
        cr_assert_eq(st_open(&a, cpu_path, &err), 0, "%s", err.msg);
        cr_assert_eq(st_open(&b, gpu_path, &err), 0, "%s", err.msg);
        cr_assert_eq(a.num_tensors, b.num_tensors);
        for (int i = 0; i < a.num_tensors; i++) {
            const StTensor *x = &a.tensors[i], *y = st_find(&b, x->name);
            cr_assert(y && y->shape[0] == x->shape[0] && y->shape[1] == x->shape[1], "'%s' differs in shape",
                      x->name);
            double rel = max_rel_diff((const float *)y->data, (const float *)x->data,
                                      (size_t)x->shape[0] * x->shape[1]);
            cr_assert_leq(rel, 1e-4, "'%s': GPU differs from CPU by %g", x->name, rel);
        }
        st_close(&a), st_close(&b);
    }
    fixture_rmdir(dir);
    free(dir);
}

/* run/sweep --text-encoder: each set of texts is encoded once into DIR/contexts-<key>.safetensors; the key changes
 * with any text, the negative or the encoder file, and an unchanged set is read back, not encoded again. */
Test(t5, text_contexts_are_encoded_once_and_cached, .timeout = 60) {
    char *dir = fixture_tmpdir();
    char weights[512], cache[600];
    T5Config cfg = encoder_with_tokenizer(dir, ST_F32, weights, sizeof weights);
    snprintf(cache, sizeof cache, "%s/sweep", dir);
    const char *ids[2] = {"cat", "dog"}, *texts[2] = {"A cat walks on the grass.", "A dog runs."};
    TextEncodeJob job = {.encoder = weights, .ids = ids, .texts = texts, .n = 2, .progress = "test"};
    Error err = {{0}};
    char first[4200], again[4200], other[4200];
    cr_assert_eq(text_contexts_cached(&job, cache, first, sizeof first, &err), 0, "%s", err.msg);
    cr_assert(strncmp(first, cache, strlen(cache)) == 0 && strstr(first, "/contexts-"), "%s", first);
    struct stat a, b;
    cr_assert_eq(stat(first, &a), 0);
    StFile st;
    cr_assert_eq(st_open(&st, first, &err), 0, "%s", err.msg);
    cr_assert_eq(st.num_tensors, 3);
    cr_assert_not_null(st_find(&st, "cat"));
    cr_assert_not_null(st_find(&st, "__negative__"));
    st_close(&st);
    /* The same job again: the same file, untouched (a rewrite would be a new inode: st_write renames a .tmp). */
    cr_assert_eq(text_contexts_cached(&job, cache, again, sizeof again, &err), 0, "%s", err.msg);
    cr_assert_str_eq(again, first);
    /* The backend is not part of the key: a CUDA job finds the CPU's file (nothing is encoded, so no GPU needed). */
    TextEncodeJob on_cuda = job;
    on_cuda.backend = "cuda";
    cr_assert_eq(text_contexts_cached(&on_cuda, cache, again, sizeof again, &err), 0, "%s", err.msg);
    cr_assert_str_eq(again, first);
    cr_assert_eq(stat(again, &b), 0);
    cr_assert(a.st_ino == b.st_ino && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec, "the cached file was rewritten");
    /* Any change of the texts, the negative or the encoder gives another file. */
    const char *texts2[2] = {"A cat walks on the grass.", "A dog sleeps."};
    TextEncodeJob changed = job;
    changed.texts = texts2;
    cr_assert_eq(text_contexts_cache_path(&changed, cache, other, sizeof other, &err), 0, "%s", err.msg);
    cr_assert_str_neq(other, first);
    changed = job;
    changed.negative = "blurry";
    cr_assert_eq(text_contexts_cache_path(&changed, cache, other, sizeof other, &err), 0, "%s", err.msg);
    cr_assert_str_neq(other, first);
    cr_assert_eq(write_t5(weights, &cfg, 10, ST_F32, 0, (WriteFaults){0}), 0); /* new weights, same path */
    cr_assert_eq(text_contexts_cache_path(&job, cache, other, sizeof other, &err), 0, "%s", err.msg);
    cr_assert_str_neq(other, first);
    /* A missing encoder is an error naming it, and nothing is written. */
    TextEncodeJob missing = job;
    missing.encoder = "/nonexistent/umt5.safetensors";
    cr_assert_neq(text_contexts_cached(&missing, cache, other, sizeof other, &err), 0);
    cr_assert(strstr(err.msg, "/nonexistent/umt5.safetensors"), "%s", err.msg);
    fixture_rmdir(dir);
    free(dir);
}

/* ---- The whole Wan pipeline through the CLI, at toy sizes: prompt text -> umT5 contexts -> a 2-layer Wan folder
 * (config.json) sampled with UniPC under EasyCache -> VAE-decoded pixels -> sweep summary; then a resume that
 * neither encodes nor runs anything again. ---- */

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

Test(t5, wan_folder_sweep_from_text_to_pixels, .timeout = 240) {
    char *dir = fixture_tmpdir();
    SpmModel *spm = trained_spm(dir);
    T5Config tcfg = SMALL;
    tcfg.vocab = spm_model_vocab_size(spm);
    spm_model_free(spm);
    char t5[600], spiece[600], wan[600], weights[700], vae[600], prompts[600], out[600], cmd[700];
    snprintf(t5, sizeof t5, "%s/umt5.safetensors", dir);
    snprintf(spiece, sizeof spiece, "%s/spiece.model", dir);
    snprintf(wan, sizeof wan, "%s/Wan2.1-T2V-toy", dir);
    snprintf(weights, sizeof weights, "%s/diffusion_pytorch_model.safetensors", wan);
    snprintf(vae, sizeof vae, "%s/vae.safetensors", dir);
    snprintf(prompts, sizeof prompts, "%s/prompts.txt", dir);
    snprintf(out, sizeof out, "%s/sweep", dir);
    cr_assert_eq(write_t5(t5, &tcfg, 9, ST_F32, 0, (WriteFaults){0}), 0);
    /* The DiT: Wan's structure (16 latent channels, no vocabulary) at width 32, text width = the encoder's. */
    DitConfig dcfg = *fixture_small_config();
    dcfg.in_dim = dcfg.out_dim = VAE_Z_DIM;
    dcfg.vocab_size = 0;
    dcfg.prediction = DIT_PREDICT_VELOCITY;
    dcfg.text_dim = tcfg.dim;
    dcfg.text_len = 512;
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", wan);
    cr_assert_eq(system(cmd), 0);
    cr_assert_eq(fixture_write_random_weights(weights, &dcfg, 4, 0), 0);
    char json[1024], config_path[1024];
    snprintf(json, sizeof json,
             "{\"_class_name\": \"WanModel\", \"model_type\": \"t2v\", \"dim\": %d, \"ffn_dim\": %d, \"freq_dim\": %d, "
             "\"in_dim\": %d, \"out_dim\": %d, \"num_heads\": %d, \"num_layers\": %d, \"text_len\": %d, "
             "\"text_dim\": %d, \"eps\": 1e-06, \"patch_size\": [1, 2, 2]}\n",
             dcfg.dim, dcfg.ffn_dim, dcfg.freq_dim, dcfg.in_dim, dcfg.out_dim, dcfg.num_heads, dcfg.num_layers,
             dcfg.text_len, dcfg.text_dim);
    snprintf(config_path, sizeof config_path, "%s/config.json", wan);
    write_file(config_path, json);
    VaeConfig vcfg = {.z_dim = VAE_Z_DIM, .dim = 4, .num_stages = 4, .dim_mult = {1, 2, 4, 4}, .num_res_blocks = 1,
                      .temporal_upsample = {1, 1, 0}};
    Error err = {{0}};
    cr_assert_eq(vae_write_random(vae, &vcfg, 5, ST_F32, &err), 0, "%s", err.msg);
    write_file(prompts, "cat\tA cat walks on the grass.\ndog\tA dog runs.\n");

    char log[16384];
    const char *args[] = {"sweep", "--weights", wan, "--text-encoder", t5, "--tokenizer", spiece, "--vae", vae,
                          "--prompts", prompts, "--strategy", "easycache:thresh=3,warmup=1", "--steps", "8",
                          "--frames", "2", "--height", "4", "--width", "4", "--out", out, "--quiet", NULL};
    cr_assert_eq(fixture_run_cli(log, sizeof log, args), 0, "%s", log);
    cr_assert(strstr(log, "[3/3] __negative__") && strstr(log, "solver unipc") && strstr(log, "grid 2x4x4"), "%s",
              log);
    char run[800];
    snprintf(run, sizeof run, "%s/runs/easycache_thresh-3_warmup-1__dog__s0.h5", out);
    RunRecord r;
    cr_assert_eq(record_read(run, &r, &err), 0, "%s", err.msg);
    cr_assert_str_eq(r.solver, "unipc");
    cr_assert_str_eq(r.conditioning, "contexts");
    cr_assert(strstr(r.contexts_path, "/sweep/contexts-"), "%s", r.contexts_path);
    cr_assert_str_eq(r.negative_prompt, WAN_DEFAULT_NEGATIVE_PROMPT);
    cr_assert_str_eq(r.video_space, "pixel");
    cr_assert(r.frames == 5 && r.height == 32 && r.width == 32, "video %dx%dx%d", r.frames, r.height, r.width);
    cr_assert(r.grid[0] == 2 && r.grid[1] == 4 && r.grid[2] == 4);
    cr_assert_gt(r.calls_skipped, 0, "EasyCache reused nothing in 8 steps at thresh 3 (a random model changes fast)");
    cr_assert(r.metrics.frames == 5 && isfinite(r.metrics.psnr_mean), "metrics on the decoded frames");
    /* The UniPC grid, as the model received it: the first timestep is 999 (int64 of 1000 sigma). */
    cr_assert_eq(r.step[0].timestep, 999.0f);
    record_free(&r);
    /* A resume: the contexts come from the cache and every run is finished. */
    cr_assert_eq(fixture_run_cli(log, sizeof log, args), 0, "%s", log);
    cr_assert(strstr(log, "from the cache") && strstr(log, "nothing to run"), "%s", log);
    cr_assert_null(strstr(log, "[1/3]"), "encoded again:\n%s", log);
    /* Another VAE (none) in the same folder is refused: pixels and latents never share a sweep. */
    const char *latent[] = {"sweep", "--weights", wan, "--text-encoder", t5, "--tokenizer", spiece,
                            "--prompts", prompts, "--strategy", "easycache:thresh=3,warmup=1", "--steps", "8",
                            "--frames", "2", "--height", "4", "--width", "4", "--out", out, "--quiet", NULL};
    cr_assert_eq(fixture_run_cli(log, sizeof log, latent), 1, "%s", log);
    cr_assert(strstr(log, "made with VAE"), "%s", log);
    fixture_rmdir(dir);
    free(dir);
}
