/* cachebench encode: prompt text to umT5 contexts (the text conditioning of Wan2.1), one tensor per prompt. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/prompts.h"
#include "harness/cli.h"
#include "harness/contexts.h"
#include "harness/text_encoder.h"

static void encode_usage(FILE *out) {
    fprintf(out,
            "Usage: cachebench encode --text-encoder PATH --prompts FILE --out CONTEXTS.safetensors\n"
            "                         [--tokenizer PATH] [--negative TEXT] [--backend cpu|cuda]\n"
            "Tokenizes every prompt of a prompt set as Wan2.1 does (umT5 SentencePiece, text cleaning, </s>, at most\n"
            "512 tokens) and runs the umT5 encoder (fp32 activations) on the CPU or the GPU. Writes one F32 tensor\n"
            "per prompt id, shaped [n_tokens, dim] (trimmed to the prompt's tokens including </s>), and the negative\n"
            "prompt's context under '" CONTEXTS_NEGATIVE_KEY "'. Progress goes to stderr.\n\n"
            "  --text-encoder PATH  umT5 encoder weights: a .safetensors file, or a folder of them (shards), with the\n"
            "                       official Wan names or the Hugging Face UMT5 names; F32, F16 or BF16\n"
            "  --tokenizer PATH     spiece.model, or a folder holding it. Default: the first of spiece.model,\n"
            "                       google/umt5-xxl/spiece.model, tokenizer/spiece.model, ../tokenizer/spiece.model in\n"
            "                       the encoder's folder (the file's folder when PATH is a file)\n"
            "  --prompts FILE       prompt set (id<TAB>text per line)\n"
            "  --negative TEXT      negative prompt (default, and when empty: Wan's default Chinese negative prompt)\n"
            "  --out FILE           output .safetensors (written to FILE.tmp, then renamed)\n"
            "  --backend cpu|cuda   where the encoder runs (default cpu); cuda keeps the block weights on the GPU as\n"
            "                       stored (umT5-XXL BF16: ~9.3 GB) and needs a CUDA build and device\n"
            "  --help               this text\n"
            "Exit status: 0 done, 1 error, 2 bad usage.\n");
}

int cmd_encode(int argc, char **argv) {
    enum { OPT_ENCODER = 1000, OPT_TOKENIZER, OPT_PROMPTS, OPT_NEGATIVE, OPT_OUT, OPT_BACKEND, OPT_HELP };
    static const struct option options[] = {{"text-encoder", required_argument, 0, OPT_ENCODER},
                                            {"tokenizer", required_argument, 0, OPT_TOKENIZER},
                                            {"prompts", required_argument, 0, OPT_PROMPTS},
                                            {"negative", required_argument, 0, OPT_NEGATIVE},
                                            {"out", required_argument, 0, OPT_OUT},
                                            {"backend", required_argument, 0, OPT_BACKEND},
                                            {"help", no_argument, 0, OPT_HELP},
                                            {0, 0, 0, 0}};
    const char *encoder_path = NULL, *tokenizer_arg = NULL, *prompts_path = NULL, *negative = NULL, *out = NULL;
    const char *backend = "cpu";
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
        case OPT_BACKEND:
            if (strcmp(optarg, "cpu") && strcmp(optarg, "cuda"))
                return cli_usage_error("encode", "invalid value '%s' for --backend: use cpu or cuda", optarg);
            backend = optarg;
            break;
        case OPT_HELP: encode_usage(stdout); return 0;
        default: return cli_usage_error("encode", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc) return cli_usage_error("encode", "unexpected argument '%s'", argv[optind]);
    if (!encoder_path) return cli_usage_error("encode", "--text-encoder PATH is required");
    if (!prompts_path) return cli_usage_error("encode", "--prompts FILE is required");
    if (!out) return cli_usage_error("encode", "--out FILE is required");

    Error err = {{0}};
    PromptSet set = {0};
    const char **ids = NULL, **texts = NULL;
    int rc = 1;
    if (prompt_set_read(prompts_path, &set, &err)) goto done;
    ids = calloc((size_t)set.count + 1, sizeof *ids);
    texts = calloc((size_t)set.count + 1, sizeof *texts);
    if (!ids || !texts) {
        error_set(&err, "out of memory");
        goto done;
    }
    for (int i = 0; i < set.count; i++) ids[i] = set.items[i].id, texts[i] = set.items[i].text;
    TextEncodeJob job = {.encoder = encoder_path, .tokenizer = tokenizer_arg, .ids = ids, .texts = texts,
                         .n = set.count, .negative = negative, .progress = "cachebench encode",
                         .backend = backend};
    if (text_encode_contexts(&job, out, &err)) {
        error_prefix(&err, "%s", prompts_path);
        goto done;
    }
    printf("%s: %d prompt contexts + %s\n", out, set.count, CONTEXTS_NEGATIVE_KEY);
    rc = 0;
done:
    if (rc) fprintf(stderr, "cachebench encode: %s\n", err.msg);
    free(ids);
    free(texts);
    prompt_set_free(&set);
    return rc;
}
