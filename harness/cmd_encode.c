/* cachebench encode: prompt text to umT5 contexts (the text conditioning of Wan2.1), one tensor per prompt. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "datasets/prompts.h"
#include "harness/cli.h"
#include "harness/contexts.h"
#include "models/dit/config.h"
#include "models/safetensors.h"
#include "models/t5/t5.h"
#include "models/t5/tokenizer.h"


static void encode_usage(FILE *out) {
    fprintf(out,
            "Usage: cachebench encode --text-encoder PATH --prompts FILE --out CONTEXTS.safetensors\n"
            "                         [--tokenizer PATH] [--negative TEXT]\n"
            "Tokenizes every prompt of a prompt set as Wan2.1 does (umT5 SentencePiece, text cleaning, </s>, at most\n"
            "512 tokens) and runs the umT5 encoder on the CPU. Writes one F32 tensor per prompt id, shaped\n"
            "[n_tokens, dim] (trimmed to the prompt's tokens including </s>), and the negative prompt's context under\n"
            "'" CONTEXTS_NEGATIVE_KEY "'. Progress goes to stderr.\n\n"
            "  --text-encoder PATH  umT5 encoder weights: a .safetensors file, or a folder of them (shards), with the\n"
            "                       official Wan names or the Hugging Face UMT5 names; F32, F16 or BF16\n"
            "  --tokenizer PATH     spiece.model, or a folder holding it. Default: the first of spiece.model,\n"
            "                       google/umt5-xxl/spiece.model, tokenizer/spiece.model, ../tokenizer/spiece.model in\n"
            "                       the encoder's folder (the file's folder when PATH is a file)\n"
            "  --prompts FILE       prompt set (id<TAB>text per line)\n"
            "  --negative TEXT      negative prompt (default, and when empty: Wan's default Chinese negative prompt)\n"
            "  --out FILE           output .safetensors (written to FILE.tmp, then renamed)\n"
            "  --help               this text\n"
            "Exit status: 0 done, 1 error, 2 bad usage.\n");
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Tokenizes and encodes one text into a malloc'd [n_tokens][dim] context. */
static int encode_one(const SpmModel *spm, const T5Encoder *enc, const char *label, const char *text, int index,
                      int total, float **ctx, int *n_tokens, Error *err) {
    T5Tokens tok;
    if (t5_tokenize(spm, text, &tok, err)) return error_prefix(err, "%s", label);
    *ctx = malloc((size_t)tok.n_tokens * enc->cfg.dim * sizeof(float));
    if (!*ctx) return error_set(err, "%s: out of memory", label);
    double t0 = now_s();
    if (t5_encode(enc, tok.ids, tok.n_tokens, *ctx, err)) return error_prefix(err, "%s", label);
    *n_tokens = tok.n_tokens;
    fprintf(stderr, "cachebench encode: [%d/%d] %s: %d tokens", index, total, label, tok.n_tokens);
    if (tok.n_untruncated > T5_TEXT_LEN)
        fprintf(stderr, " (truncated from %d to %d as Wan does)", tok.n_untruncated, T5_TEXT_LEN);
    fprintf(stderr, ", %.1f s\n", now_s() - t0);
    return 0;
}

int cmd_encode(int argc, char **argv) {
    enum { OPT_ENCODER = 1000, OPT_TOKENIZER, OPT_PROMPTS, OPT_NEGATIVE, OPT_OUT, OPT_HELP };
    static const struct option options[] = {{"text-encoder", required_argument, 0, OPT_ENCODER},
                                            {"tokenizer", required_argument, 0, OPT_TOKENIZER},
                                            {"prompts", required_argument, 0, OPT_PROMPTS},
                                            {"negative", required_argument, 0, OPT_NEGATIVE},
                                            {"out", required_argument, 0, OPT_OUT},
                                            {"help", no_argument, 0, OPT_HELP},
                                            {0, 0, 0, 0}};
    const char *encoder_path = NULL, *tokenizer_arg = NULL, *prompts_path = NULL, *negative = NULL, *out = NULL;
    int opt;
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case OPT_ENCODER: encoder_path = optarg; break;
        case OPT_TOKENIZER: tokenizer_arg = optarg; break;
        case OPT_PROMPTS: prompts_path = optarg; break;
        case OPT_NEGATIVE: negative = optarg; break;
        case OPT_OUT: out = optarg; break;
        case OPT_HELP: encode_usage(stdout); return 0;
        default: return cli_usage_error("encode", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc) return cli_usage_error("encode", "unexpected argument '%s'", argv[optind]);
    if (!encoder_path) return cli_usage_error("encode", "--text-encoder PATH is required");
    if (!prompts_path) return cli_usage_error("encode", "--prompts FILE is required");
    if (!out) return cli_usage_error("encode", "--out FILE is required");
    /* As wan/text2video.py: an empty negative prompt means the default one. */
    if (!negative || !negative[0]) negative = WAN_DEFAULT_NEGATIVE_PROMPT;

    Error err = {{0}};
    PromptSet set = {0};
    T5Encoder enc = {0};
    SpmModel *spm = NULL;
    StWriteTensor *tensors = NULL;
    int count = 0, rc = 1;
    char spm_path[4096];
    if (prompt_set_read(prompts_path, &set, &err)) goto done;
    for (int i = 0; i < set.count; i++)
        if (strcmp(set.items[i].id, CONTEXTS_NEGATIVE_KEY) == 0) {
            error_set(&err, "%s: the prompt id '%s' is reserved for the negative prompt", prompts_path, CONTEXTS_NEGATIVE_KEY);
            goto done;
        }
    if (t5_find_tokenizer(encoder_path, tokenizer_arg, spm_path, sizeof spm_path, &err)) goto done;
    if (!(spm = spm_model_load(spm_path, &err))) goto done;
    if (t5_encoder_open(&enc, encoder_path, &err)) goto done;
    fprintf(stderr, "cachebench encode: umT5 encoder %d layers, dim %d, %d heads, ffn %d, vocab %d; tokenizer %s\n",
            enc.cfg.layers, enc.cfg.dim, enc.cfg.heads, enc.cfg.dim_ffn, enc.cfg.vocab, spm_path);
    tensors = calloc((size_t)set.count + 1, sizeof *tensors);
    if (!tensors) {
        error_set(&err, "out of memory");
        goto done;
    }
    for (int i = 0; i <= set.count; i++) {
        int is_negative = i == set.count;
        const char *label = is_negative ? CONTEXTS_NEGATIVE_KEY : set.items[i].id;
        const char *text = is_negative ? negative : set.items[i].text;
        float *ctx = NULL;
        int n = 0;
        int failed = encode_one(spm, &enc, label, text, i + 1, set.count + 1, &ctx, &n, &err);
        tensors[count] = (StWriteTensor){label, ST_F32, 2, {n, enc.cfg.dim}, ctx};
        count++;
        if (failed) goto done;
    }
    if (st_write(out, tensors, count, &err)) goto done;
    printf("%s: %d prompt contexts + %s, dim %d\n", out, set.count, CONTEXTS_NEGATIVE_KEY, enc.cfg.dim);
    rc = 0;
done:
    if (rc) fprintf(stderr, "cachebench encode: %s\n", err.msg);
    for (int i = 0; i < count; i++) free((void *)tensors[i].data);
    free(tensors);
    if (spm) spm_model_free(spm);
    if (enc.files) t5_encoder_close(&enc);
    prompt_set_free(&set);
    return rc;
}
