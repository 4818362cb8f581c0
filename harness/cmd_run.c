/* cachebench run: one trajectory, one run record. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "harness/cli.h"
#include "harness/plugins.h"
#include "harness/experiment.h"
#include "harness/solvers/solver.h"
#include "harness/sweep.h"
#include "harness/text_encoder.h"
#include "strategies/strategy.h"

static void run_usage(FILE *out) {
    char names[1024], strategies[1200];
    strategy_list_names(names, sizeof names);
    cli_wrap_list(names, 34, 110, strategies, sizeof strategies);
    fprintf(out,
            "Usage: cachebench run --prompt TEXT [options]\n"
            "Runs one sampling trajectory and writes one HDF5 run record into --out.\n\n"
            "  --prompt TEXT        the prompt (required; the tiny model knows only its vocabulary words)\n"
            "  --prompt-id ID       id used in the run file name (default p0)\n"
            "  --negative TEXT      prompt of the unconditional branch (also --negative-prompt; default: empty,\n"
            "                       for Wan models the official default negative prompt, as wan/text2video.py)\n"
            "  --contexts FILE      prompt contexts (safetensors: a [n_tokens, text_dim] tensor per prompt id and\n"
            "                       one for the negative prompt; scripts/make_contexts.py); required for Wan models\n"
            "                       unless --random-context\n"
            "  --text-encoder PATH  umT5 encoder (.safetensors file or folder; see `cachebench encode`): the prompt\n"
            "                       and the negative are encoded once and cached in DIR/contexts-<key>.safetensors,\n"
            "                       then used as --contexts; the encoder runs on --backend\n"
            "  --tokenizer PATH     spiece.model for --text-encoder (default: looked up beside the encoder)\n"
            "  --negative-id ID     key of the negative prompt's context in --contexts (default __negative__)\n"
            "  --random-context     Wan models without --contexts: a seeded random stand-in for the text (timing\n"
            "                       only: the videos mean nothing)\n"
            "  --model NAME         built-in model config: %s (default: the checkpoint's\n"
            "                       config.json, else inferred from its shapes; tiny for random weights)\n"
            "  --weights PATH       model folder (official Wan2.1, diffusers, sharded), safetensors file (also\n"
            "                       ComfyUI), or random[:SEED] for random weights\n"
            "                       (default: the embedded tiny model, models/tiny/tiny.safetensors)\n"
            "  --strategy SPEC      caching strategy, e.g. none, static:interval=3,warmup=5,\n"
            "                       teacache:thresh=0.08, easycache:thresh=0.05,warmup=10 (default none)\n"
            "                       available: %s\n"
            "  --seed N             noise seed (default 0)\n"
            "  --steps N            sampling steps (default: the config's, 50)\n"
            "  --shift X            schedule shift (default: the config's)\n"
            "  --guidance X         classifier-free guidance scale; 1 disables CFG (default: the config's)\n"
            "  --solver NAME        sampler: %s (default: the config's,\n"
            "                       unipc for the Wan configs as in Wan2.1, euler for tiny)\n"
            "  --frames N --height N --width N   latent/pixel grid (default: the config's)\n"
            "  --backend cpu|cuda   compute backend (default cpu)\n"
            "  --latents            also record x after every step (chunked, compressed)\n"
            "  --vae FILE           Wan VAE decoder (safetensors; scripts/convert_wan_vae.py): the record's video is\n"
            "                       the decoded final latent, so metrics compare pixels (without it a latent model\n"
            "                       records a preview of three latent channels: video_space latent)\n"
            "  --out DIR            output folder, created if missing (default results/runs)\n"
            "  --force              overwrite an existing record of the same run (refused otherwise)\n"
            "  --quiet              no progress line\n"
            "  --plugin FILE        load a strategy plug-in (a .so built against include/cachebench/strategy.h,\n"
            "                       see `cachebench new-strategy`); repeatable\n"
            "  --help               this text\n"
            "The run file is DIR/<model>__<strategy>__<prompt-id>__s<seed>.h5, written under a temporary name and\n"
            "renamed when complete. Exit status: 0 done (also when the run failed with NaN/Inf, recorded in the file),\n"
            "1 error, 2 bad usage.\n",
            dit_config_names(), strategies, solver_names());
}

int cmd_run(int argc, char **argv) {
    enum { OPT_PROMPT = 1000, OPT_PROMPT_ID, OPT_NEGATIVE, OPT_MODEL, OPT_WEIGHTS, OPT_STRATEGY, OPT_SEED, OPT_STEPS,
           OPT_SHIFT, OPT_GUIDANCE, OPT_SOLVER, OPT_FRAMES, OPT_HEIGHT, OPT_WIDTH, OPT_BACKEND, OPT_LATENTS, OPT_OUT,
           OPT_QUIET, OPT_HELP, OPT_CONTEXTS, OPT_NEGATIVE_ID, OPT_RANDOM_CONTEXT, OPT_VAE, OPT_TEXT_ENCODER,
           OPT_TOKENIZER, OPT_PLUGIN, OPT_FORCE };
    static const struct option options[] = {
        {"prompt", required_argument, 0, OPT_PROMPT},     {"prompt-id", required_argument, 0, OPT_PROMPT_ID},
        {"negative", required_argument, 0, OPT_NEGATIVE}, {"model", required_argument, 0, OPT_MODEL},
        {"weights", required_argument, 0, OPT_WEIGHTS},   {"strategy", required_argument, 0, OPT_STRATEGY},
        {"seed", required_argument, 0, OPT_SEED},         {"steps", required_argument, 0, OPT_STEPS},
        {"shift", required_argument, 0, OPT_SHIFT},       {"guidance", required_argument, 0, OPT_GUIDANCE},
        {"frames", required_argument, 0, OPT_FRAMES},     {"height", required_argument, 0, OPT_HEIGHT},
        {"width", required_argument, 0, OPT_WIDTH},       {"backend", required_argument, 0, OPT_BACKEND},
        {"latents", no_argument, 0, OPT_LATENTS},         {"out", required_argument, 0, OPT_OUT},
        {"quiet", no_argument, 0, OPT_QUIET},             {"help", no_argument, 0, OPT_HELP},
        {"solver", required_argument, 0, OPT_SOLVER},
        {"negative-prompt", required_argument, 0, OPT_NEGATIVE},
        {"contexts", required_argument, 0, OPT_CONTEXTS},
        {"negative-id", required_argument, 0, OPT_NEGATIVE_ID},
        {"random-context", no_argument, 0, OPT_RANDOM_CONTEXT},
        {"vae", required_argument, 0, OPT_VAE},
        {"text-encoder", required_argument, 0, OPT_TEXT_ENCODER},
        {"tokenizer", required_argument, 0, OPT_TOKENIZER},
        {"plugin", required_argument, 0, OPT_PLUGIN},
        {"force", no_argument, 0, OPT_FORCE},
        {0, 0, 0, 0}};
    if (plugins_load_from_args("run", argc, argv)) return 1;
    int force = 0;
    const char *model = NULL, *weights = NULL, *out_dir = "results/runs", *backend = "cpu";
    const char *contexts_path = NULL, *vae_path = NULL, *text_encoder = NULL, *tokenizer = NULL;
    ExperimentSpec spec = {.strategy_spec = "none", .prompt_id = "p0", .negative_prompt = "", .show_progress = 1};
    long lv;
    double dv;
    int opt;
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case OPT_PROMPT: spec.prompt = optarg; break;
        case OPT_PROMPT_ID: spec.prompt_id = optarg; break;
        case OPT_NEGATIVE: spec.negative_prompt = optarg; break;
        case OPT_MODEL: model = optarg; break;
        case OPT_WEIGHTS: weights = optarg; break;
        case OPT_STRATEGY: spec.strategy_spec = optarg; break;
        case OPT_SEED:
            if (cli_parse_int("run", "--seed", optarg, 0, 0x7fffffffffffffffL, &lv)) return 2;
            spec.seed = (uint64_t)lv;
            break;
        case OPT_STEPS:
            if (cli_parse_int("run", "--steps", optarg, 1, 10000, &lv)) return 2;
            spec.steps = (int)lv;
            break;
        case OPT_SHIFT:
            if (cli_parse_double("run", "--shift", optarg, 1e-3, 1e3, &dv)) return 2;
            spec.shift = (float)dv;
            break;
        case OPT_GUIDANCE:
            if (cli_parse_double("run", "--guidance", optarg, 1.0, 100.0, &dv)) return 2;
            spec.guidance = (float)dv;
            break;
        case OPT_SOLVER:
            if (!(spec.solver = solver_by_name(optarg)))
                return cli_usage_error("run", "unknown solver '%s' (valid: %s)", optarg, solver_names());
            break;
        case OPT_FRAMES:
            if (cli_parse_int("run", "--frames", optarg, 1, 4096, &lv)) return 2;
            spec.F = (int)lv;
            break;
        case OPT_HEIGHT:
            if (cli_parse_int("run", "--height", optarg, 1, 8192, &lv)) return 2;
            spec.H = (int)lv;
            break;
        case OPT_WIDTH:
            if (cli_parse_int("run", "--width", optarg, 1, 8192, &lv)) return 2;
            spec.W = (int)lv;
            break;
        case OPT_BACKEND:
            if (strcmp(optarg, "cpu") && strcmp(optarg, "cuda"))
                return cli_usage_error("run", "invalid value '%s' for --backend: use cpu or cuda", optarg);
            backend = optarg;
            break;
        case OPT_LATENTS: spec.record_latents = 1; break;
        case OPT_OUT: out_dir = optarg; break;
        case OPT_QUIET: spec.show_progress = 0; break;
        case OPT_CONTEXTS: contexts_path = optarg; break;
        case OPT_NEGATIVE_ID: spec.negative_id = optarg; break;
        case OPT_RANDOM_CONTEXT: spec.random_context = 1; break;
        case OPT_VAE: vae_path = optarg; break;
        case OPT_TEXT_ENCODER: text_encoder = optarg; break;
        case OPT_TOKENIZER: tokenizer = optarg; break;
        case OPT_PLUGIN: break; /* loaded above */
        case OPT_FORCE: force = 1; break;
        case OPT_HELP: run_usage(stdout); return 0;
        default: return cli_usage_error("run", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return cli_usage_error("run", "unexpected argument '%s'", argv[optind]);
    if (!spec.prompt) return cli_usage_error("run", "--prompt is required");
    {
        const char *q = spec.prompt;
        while (*q && isspace((unsigned char)*q)) q++;
        if (!*q) return cli_usage_error("run", "--prompt is empty: give the text to generate from");
    }
    if (!*spec.prompt_id || strchr(spec.prompt_id, '/'))
        return cli_usage_error("run", "invalid --prompt-id '%s': must be non-empty, without '/'", spec.prompt_id);

    char default_weights[4096];
    if (!weights) {
        if (model && strcmp(model, "tiny") != 0)
            return cli_usage_error("run", "--weights is required for model %s (or --weights random)", model);
        experiment_default_weights(default_weights, sizeof default_weights);
        weights = default_weights;
    }

    if ((contexts_path != NULL) + spec.random_context + (text_encoder != NULL) > 1)
        return cli_usage_error("run", "--contexts, --text-encoder and --random-context exclude each other");
    if (tokenizer && !text_encoder) return cli_usage_error("run", "--tokenizer goes with --text-encoder");

    Error err = {{0}};
    char encoded[4200];
    if (text_encoder) { /* before the DiT is loaded: the encoder and the DiT are never in memory together */
        const char *ids[1] = {spec.prompt_id}, *texts[1] = {spec.prompt};
        TextEncodeJob job = {.encoder = text_encoder, .tokenizer = tokenizer, .ids = ids, .texts = texts, .n = 1,
                             .negative = spec.negative_prompt, .progress = "cachebench run", .backend = backend};
        if (text_contexts_cached(&job, out_dir, encoded, sizeof encoded, &err)) {
            fprintf(stderr, "cachebench run: --text-encoder: %s\n", err.msg);
            return 1;
        }
        contexts_path = encoded;
    }
    /* The text conditioning first: a missing context should not cost a model load. */
    if (experiment_check_conditioning(model, weights, contexts_path, spec.negative_id, spec.random_context,
                                      &spec.prompt_id, 1, &err)) {
        fprintf(stderr, "cachebench run: %s\n", err.msg);
        return 1;
    }
    ExperimentContext ctx;
    if (experiment_open(&ctx, model, weights, backend, &err)) {
        fprintf(stderr, "cachebench run: %s\n", err.msg);
        return 1;
    }
    if (ctx.model.file && spec.show_progress)
        fprintf(stderr, "cachebench run: loaded %s (%s; config %s) in %.2f s, peak RSS %.0f MiB\n", weights,
                ctx.model.weights_layout, ctx.model.cfg.name, ctx.load_seconds, ctx.load_peak_rss_kb / 1024.0);
    if ((contexts_path && experiment_use_contexts(&ctx, contexts_path, &err)) ||
        (vae_path && experiment_use_vae(&ctx, vae_path, &err))) {
        fprintf(stderr, "cachebench run: %s\n", err.msg);
        experiment_close(&ctx);
        return 1;
    }
    /* Validate the strategy spec before spending time: strategy_create in experiment_run reports it too,
     * but a usage error deserves exit code 2. */
    StrategyParams params;
    if (strategy_parse_spec(spec.strategy_spec, &params, &err) || !strategy_find(params.name)) {
        char names[512];
        strategy_list_names(names, sizeof names);
        if (!err.msg[0]) snprintf(err.msg, sizeof err.msg, "unknown strategy '%s' (valid: %s)", params.name, names);
        experiment_close(&ctx);
        return cli_usage_error("run", "%s", err.msg);
    }
    /* Its parameters too (unknown keys, out-of-range values, a missing coefficient file): only creating the
     * strategy for this run's geometry checks them, and that costs nothing next to the run. */
    StrategyEnv env;
    Strategy check;
    if (experiment_strategy_env(&ctx, &spec, &env, &err)) {
        fprintf(stderr, "cachebench run: %s\n", err.msg);
        experiment_close(&ctx);
        return 1;
    }
    if (strategy_create(&check, spec.strategy_spec, &env, &err)) {
        experiment_close(&ctx);
        return cli_usage_error("run", "%s", err.msg);
    }
    /* The file name comes from the canonical spec: known now, before the run, so an existing record (a result
     * someone may quote) is not silently replaced after minutes of sampling. */
    char run_id[512], path[4096 + 600];
    experiment_run_id(check.spec, spec.prompt_id, spec.seed, run_id, sizeof run_id);
    /* The model leads the file name: one results folder can hold runs of several models without collisions. */
    snprintf(path, sizeof path, "%s/%s__%s.h5", out_dir, ctx.model.cfg.name, run_id);
    strategy_destroy(&check);
    if (!force && access(path, F_OK) == 0) {
        fprintf(stderr, "cachebench run: %s exists; pass --force to overwrite it, or choose another --out\n", path);
        experiment_close(&ctx);
        return 1;
    }

    if (sweep_make_dirs(out_dir, &err)) {
        fprintf(stderr, "cachebench run: %s\n", err.msg);
        experiment_close(&ctx);
        return 1;
    }
    RunRecord rec;
    if (experiment_run(&ctx, &spec, &rec, &err)) {
        fprintf(stderr, "cachebench run: %s\n", err.msg);
        experiment_close(&ctx);
        return 1;
    }
    int rc = 0;
    if (record_write(path, &rec, &err)) {
        fprintf(stderr, "cachebench run: %s\n", err.msg);
        rc = 1;
    } else {
        /* A failed run is a result (exit 0), but the line must say where it failed, as `info` does. */
        char status[64];
        if (rec.failed) snprintf(status, sizeof status, "FAILED (non-finite output at step %d)", rec.failed_step);
        else snprintf(status, sizeof status, "complete");
        printf("%s: %s, %d/%d model calls computed (%.0f%% reused), %.2f s wall, FLOP speed-up %.2fx\n", path,
               status, rec.calls_computed, rec.calls_total,
               rec.calls_total ? 100.0 * rec.calls_skipped / rec.calls_total : 0.0, rec.wall_seconds,
               rec.flops_spent > 0 ? rec.flops_full / rec.flops_spent : 0.0);
    }
    record_free(&rec);
    experiment_close(&ctx);
    return rc;
}
