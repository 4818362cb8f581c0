/* cachebench calibrate: fit TeaCache's rescaling polynomial for a model from full-inference traces, or (--for magcache)
 * measure MagCache's per-step magnitude-ratio table from one unmodified run. */
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datasets/prompts.h"
#include "harness/calibrate.h"
#include "harness/cli.h"
#include "harness/experiment.h"
#include "harness/magcache_calibrate.h"
#include "harness/solvers/solver.h"
#include "harness/sweep.h"
#include "strategies/magcache.h"
#include "strategies/teacache.h"

static void calibrate_usage(FILE *out) {
    fprintf(out,
            "Usage: cachebench calibrate --prompts FILE [options]\n"
            "Runs full inference for every prompt (and seed), records per model call the TeaCache input signal\n"
            "(relative L1 change of the timestep modulation since the previous call of the same branch) and the\n"
            "relative L1 change of the model output, fits output = poly4(input) by least squares and writes the five\n"
            "coefficients (highest degree first) as a TeaCache coefficient file. Prints R^2 of the fit.\n\n"
            "  --for magcache: runs the model once, unmodified, on the first prompt of --prompts and one seed (as\n"
            "MagCache's official calibration) and writes per step and branch the mean token-norm ratio of the\n"
            "block-stack residual to the previous step's, its std and the mean cosine distance (format:\n"
            "strategies/magcache.h) to magcache_ratios.txt beside the weights, where `magcache` looks for it.\n\n"
            "  --for teacache|magcache   what to calibrate (default teacache)\n"
            "  --prompts FILE     prompt set, lines \"id<TAB>prompt\" (required)\n"
            "  --model NAME       built-in model config (default: the checkpoint's own; tiny for random weights)\n"
            "  --weights PATH     model folder or safetensors file (default: the embedded tiny model)\n"
            "  --variant e|e0     signal: time embedding e (default) or time projection e0 (retention steps)\n"
            "  --seeds LIST       seeds as in sweep: \"0,1,2\", ranges \"0..4\", or both (default 0)\n"
            "  --steps N          sampling steps (default: the config's)\n"
            "  --shift X          schedule shift (default: the config's)\n"
            "  --solver NAME      sampler: %s (default: the config's; calibrate with\n"
            "                     the solver the strategy will run under: it sets the timesteps the model sees)\n"
            "  --out FILE         coefficient file (default: teacache_coeffs_<variant>.txt beside the weights,\n"
            "                     where the teacache strategy looks for it; an existing default file is kept\n"
            "                     unless --force); magcache: the ratio table (default magcache_ratios.txt beside\n"
            "                     the weights; an existing table, default or not, is kept unless --force)\n"
            "  --force            overwrite the default coefficient file (magcache: the table) when it exists\n"
            "  --samples FILE     also write the (step, input, output) samples as TSV\n"
            "  --backend cpu|cuda (default cpu)\n"
            "  --contexts FILE    prompt contexts, as for run and sweep (Wan models: this or --random-context)\n"
            "  --negative-id ID   key of the negative prompt's context (default __negative__)\n"
            "  --random-context   Wan models without --contexts: seeded random text (not for real coefficients)\n"
            "  --help\n",
            solver_names());
}

/* --for magcache: one unmodified run on the first prompt, the table written to out. Returns the exit status. */
static int calibrate_magcache(ExperimentContext *ctx, const PromptSet *prompts, const char *prompts_path,
                              const char *weights, const char *out, const char *negative_id, int random_context,
                              uint64_t seed, int steps, float shift, const SolverKind *solver) {
    Error err = {{0}};
    const Prompt *p = &prompts->items[0];
    ExperimentSpec spec = {.strategy_spec = "none", .prompt_id = p->id, .prompt = p->text, .negative_prompt = "",
                           .negative_id = negative_id, .random_context = random_context, .seed = seed,
                           .steps = steps, .shift = shift, .solver = solver, .show_progress = 1};
    if (prompts->count > 1)
        fprintf(stderr, "calibrate: magcache: one run on prompt %s (the first of %d in %s), as the official "
                        "calibration uses one prompt\n",
                p->id, prompts->count, prompts_path);
    StrategyEnv env;
    Strategy observer = {0};
    MagTable table = {0};
    RunRecord rec;
    int rc = 1, have_rec = 0;
    if (experiment_strategy_env(ctx, &spec, &env, &err) || magcache_table_alloc(&table, env.num_steps, &err) ||
        magcache_observer_create(&observer, &env, ctx->engine, &table, &err))
        goto done;
    int run_rc = experiment_run_with(ctx, &spec, &observer, &rec, &err);
    if (run_rc) goto done;
    have_rec = 1;
    if (rec.failed) {
        error_set(&err, "prompt %s seed %llu: model output turned non-finite", p->id, (unsigned long long)seed);
        goto done;
    }
    if (rec.calls_total != 2 * rec.steps) {
        error_set(&err, "magcache calibration needs both branches (guidance != 1): the table holds cond and uncond "
                        "ratios");
        goto done;
    }
    for (int b = 0; b < 2; b++)
        for (int t = 1; t < table.steps; t++)
            if (!isfinite(table.ratio[b][t]) || !(table.ratio[b][t] > 0)) {
                error_set(&err, "step %d %s: magnitude ratio %g is not a finite positive number (a zero residual?)",
                          t, b ? "uncond" : "cond", table.ratio[b][t]);
                goto done;
            }
    MagTableMeta meta = {.model = ctx->model.cfg.name, .weights = weights,
                         .weights_sha256 = ctx->model.weights_sha256, .solver = rec.solver,
                         .prompts_path = prompts_path, .prompt_id = p->id, .shift = rec.shift,
                         .guidance = rec.guidance, .seed = seed, .frames = rec.frames, .height = rec.height,
                         .width = rec.width};
    if (magcache_write_table(out, &table, &meta, &err)) goto done;
    printf("%s: MagCache ratio table, %d steps (model %s, solver %s, shift %g, guidance %g); ratio_cond at steps 1, "
           "%d, %d: %.5f %.5f %.5f\n",
           out, table.steps, ctx->model.cfg.name, rec.solver, rec.shift, rec.guidance, table.steps / 2,
           table.steps - 1, table.ratio[0][table.steps > 1 ? 1 : 0], table.ratio[0][table.steps / 2],
           table.ratio[0][table.steps - 1]);
    rc = 0;
done:
    if (rc) fprintf(stderr, "cachebench calibrate: %s\n", err.msg);
    if (have_rec) record_free(&rec);
    if (observer.destroy) observer.destroy(&observer);
    magcache_table_free(&table);
    return rc;
}

int cmd_calibrate(int argc, char **argv) {
    enum { OPT_PROMPTS = 1000, OPT_MODEL, OPT_WEIGHTS, OPT_VARIANT, OPT_SEEDS, OPT_STEPS, OPT_OUT, OPT_SAMPLES,
           OPT_BACKEND, OPT_SOLVER, OPT_HELP, OPT_CONTEXTS, OPT_NEGATIVE_ID, OPT_RANDOM_CONTEXT, OPT_FORCE,
           OPT_FOR, OPT_SHIFT };
    static const struct option options[] = {
        {"prompts", required_argument, 0, OPT_PROMPTS}, {"model", required_argument, 0, OPT_MODEL},
        {"weights", required_argument, 0, OPT_WEIGHTS}, {"variant", required_argument, 0, OPT_VARIANT},
        {"seeds", required_argument, 0, OPT_SEEDS},     {"steps", required_argument, 0, OPT_STEPS},
        {"out", required_argument, 0, OPT_OUT},         {"samples", required_argument, 0, OPT_SAMPLES},
        {"backend", required_argument, 0, OPT_BACKEND}, {"help", no_argument, 0, OPT_HELP},
        {"solver", required_argument, 0, OPT_SOLVER},
        {"contexts", required_argument, 0, OPT_CONTEXTS}, {"negative-id", required_argument, 0, OPT_NEGATIVE_ID},
        {"random-context", no_argument, 0, OPT_RANDOM_CONTEXT},
        {"force", no_argument, 0, OPT_FORCE},
        {"for", required_argument, 0, OPT_FOR},         {"shift", required_argument, 0, OPT_SHIFT},
        {0, 0, 0, 0}};
    int force = 0;
    const char *prompts_path = NULL, *model = NULL, *weights = NULL, *out = NULL, *samples_path = NULL;
    const char *backend = "cpu", *seeds_text = "0", *contexts_path = NULL, *negative_id = NULL;
    const SolverKind *solver = NULL; /* the config's */
    int use_e0 = 0, random_context = 0, for_magcache = 0, variant_given = 0;
    double shift = 0.0;
    long steps = 0;
    int opt;
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case OPT_PROMPTS: prompts_path = optarg; break;
        case OPT_MODEL: model = optarg; break;
        case OPT_WEIGHTS: weights = optarg; break;
        case OPT_VARIANT:
            if (strcmp(optarg, "e") && strcmp(optarg, "e0"))
                return cli_usage_error("calibrate", "invalid value '%s' for --variant: use e or e0", optarg);
            use_e0 = strcmp(optarg, "e0") == 0;
            variant_given = 1;
            break;
        case OPT_FOR:
            if (strcmp(optarg, "teacache") && strcmp(optarg, "magcache"))
                return cli_usage_error("calibrate", "invalid value '%s' for --for: use teacache or magcache", optarg);
            for_magcache = strcmp(optarg, "magcache") == 0;
            break;
        case OPT_SHIFT:
            if (cli_parse_double("calibrate", "--shift", optarg, 1e-3, 1e3, &shift)) return 2;
            break;
        case OPT_SEEDS: seeds_text = optarg; break;
        case OPT_STEPS:
            if (cli_parse_int("calibrate", "--steps", optarg, 2, 10000, &steps)) return 2;
            break;
        case OPT_SOLVER:
            if (!(solver = solver_by_name(optarg)))
                return cli_usage_error("calibrate", "unknown solver '%s' (valid: %s)", optarg, solver_names());
            break;
        case OPT_OUT: out = optarg; break;
        case OPT_SAMPLES: samples_path = optarg; break;
        case OPT_BACKEND:
            if (strcmp(optarg, "cpu") && strcmp(optarg, "cuda"))
                return cli_usage_error("calibrate", "invalid value '%s' for --backend: use cpu or cuda", optarg);
            backend = optarg;
            break;
        case OPT_CONTEXTS: contexts_path = optarg; break;
        case OPT_NEGATIVE_ID: negative_id = optarg; break;
        case OPT_RANDOM_CONTEXT: random_context = 1; break;
        case OPT_FORCE: force = 1; break;
        case OPT_HELP: calibrate_usage(stdout); return 0;
        default: return cli_usage_error("calibrate", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return cli_usage_error("calibrate", "unexpected argument '%s'", argv[optind]);
    if (!prompts_path) return cli_usage_error("calibrate", "--prompts is required");
    if (for_magcache && variant_given)
        return cli_usage_error("calibrate",
                               "--variant is TeaCache's: --for magcache measures the block-stack residual");
    if (for_magcache && samples_path)
        return cli_usage_error("calibrate", "--samples is TeaCache's: the magcache table holds every measurement");

    /* Seeds: the sweep's grammar (lists and ranges). */
    uint64_t seeds[64];
    int num_seeds = 0;
    {
        Error serr = {{0}};
        if (sweep_parse_seeds(seeds_text, seeds, 64, &num_seeds, &serr))
            return cli_usage_error("calibrate", "invalid value for --seeds: %s", serr.msg);
        if (num_seeds == 0) return cli_usage_error("calibrate", "--seeds is empty");
        if (for_magcache && num_seeds != 1)
            return cli_usage_error("calibrate", "--for magcache calibrates on one run (one prompt, one seed), as the "
                                                "official calibration: give one seed, not %d", num_seeds);
    }

    char default_weights[PATH_MAX];
    if (!weights) {
        if (model && strcmp(model, "tiny") != 0)
            return cli_usage_error("calibrate", "--weights is required for %s", model);
        experiment_default_weights(default_weights, sizeof default_weights);
        weights = default_weights;
    }
    char default_out[PATH_MAX + 64];
    if (!out) {
        if (strncmp(weights, "random", 6) == 0)
            return cli_usage_error("calibrate", "--out is required with random weights");
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", weights);
        if (for_magcache) snprintf(default_out, sizeof default_out, "%s/magcache_ratios.txt", dirname(dir));
        else snprintf(default_out, sizeof default_out, "%s/teacache_coeffs_%s.txt", dirname(dir), use_e0 ? "e0" : "e");
        out = default_out;
    }
    /* The default file sits beside the weights, often a tracked file of the repository: never replaced silently.
     * A MagCache table is the record of one calibration run: never replaced silently wherever it is. */
    if (!force && (out == default_out || for_magcache) && access(out, F_OK) == 0)
        return cli_usage_error("calibrate", "%s exists: pass --force to replace it, or --out FILE to write elsewhere",
                               out);

    Error err = {{0}};
    PromptSet prompts;
    if (prompt_set_read(prompts_path, &prompts, &err)) {
        fprintf(stderr, "cachebench calibrate: %s\n", err.msg);
        return 1;
    }
    const char **ids = malloc((size_t)prompts.count * sizeof *ids);
    for (int p = 0; ids && p < prompts.count; p++) ids[p] = prompts.items[p].id;
    int bad = !ids ? error_set(&err, "out of memory")
                   : experiment_check_conditioning(model, weights, contexts_path, negative_id, random_context, ids,
                                                   prompts.count, &err);
    free(ids);
    ExperimentContext ctx;
    if (bad || experiment_open(&ctx, model, weights, backend, &err)) {
        fprintf(stderr, "cachebench calibrate: %s\n", err.msg);
        prompt_set_free(&prompts);
        return 1;
    }
    if (contexts_path && experiment_use_contexts(&ctx, contexts_path, &err)) {
        fprintf(stderr, "cachebench calibrate: %s\n", err.msg);
        experiment_close(&ctx);
        prompt_set_free(&prompts);
        return 1;
    }
    if (for_magcache) {
        int mrc = calibrate_magcache(&ctx, &prompts, prompts_path, weights, out, negative_id, random_context, seeds[0],
                                     (int)steps, (float)shift, solver);
        experiment_close(&ctx);
        prompt_set_free(&prompts);
        return mrc;
    }
    CalibrationSamples samples = {0};
    int rc = 1, total = prompts.count * num_seeds, done = 0;
    for (int p = 0; p < prompts.count; p++)
        for (int s = 0; s < num_seeds; s++) {
            ExperimentSpec spec = {.strategy_spec = "none", .prompt_id = prompts.items[p].id,
                                   .prompt = prompts.items[p].text, .negative_prompt = "",
                                   .negative_id = negative_id, .random_context = random_context,
                                   .seed = seeds[s], .steps = (int)steps, .shift = (float)shift, .solver = solver,
                                   .show_progress = 1};
            StrategyEnv env;
            Strategy observer;
            RunRecord rec;
            if (experiment_strategy_env(&ctx, &spec, &env, &err) ||
                calibration_observer_create(&observer, &env, use_e0, &samples, &err))
                goto fail;
            int run_rc = experiment_run_with(&ctx, &spec, &observer, &rec, &err);
            observer.destroy(&observer);
            if (run_rc) goto fail;
            int failed = rec.failed;
            record_free(&rec);
            if (failed) {
                error_set(&err, "prompt %s seed %llu: model output turned non-finite", prompts.items[p].id,
                          (unsigned long long)seeds[s]);
                goto fail;
            }
            fprintf(stderr, "calibrate: %d/%d trajectories, %zu samples\n", ++done, total, samples.count);
        }
    double coeffs[5], r2;
    if (calibration_fit(samples.input, samples.output, samples.count, coeffs, &r2, &err)) goto fail;
    char comment[1024];
    snprintf(comment, sizeof comment,
             "TeaCache coefficients (variant %s) for model %s, weights %.300s (sha256 %s)\n"
             "fitted by cachebench calibrate on %.300s, %d seed(s), solver %s, %zu samples; R^2 = %.4f",
             use_e0 ? "e0" : "e", ctx.model.cfg.name, weights, ctx.model.weights_sha256, prompts_path, num_seeds,
             experiment_solver(&ctx.model.cfg, solver)->name, samples.count, r2);
    if (teacache_write_coeffs(out, coeffs, comment, &err)) goto fail;
    if (samples_path) {
        FILE *f = fopen(samples_path, "w");
        if (!f) {
            error_set(&err, "%s: cannot write samples", samples_path);
            goto fail;
        }
        fprintf(f, "step\tbranch\tinput_rel_l1\toutput_rel_l1\n");
        for (size_t i = 0; i < samples.count; i++)
            fprintf(f, "%d\t%s\t%.9g\t%.9g\n", samples.step[i], samples.branch[i] == BRANCH_UNCOND ? "uncond" : "cond",
                    samples.input[i], samples.output[i]);
        if (fclose(f)) {
            error_set(&err, "%s: write error", samples_path);
            goto fail;
        }
    }
    printf("%s: poly = %.9g s^4 + %.9g s^3 + %.9g s^2 + %.9g s + %.9g   (R^2 = %.4f, %zu samples)\n", out,
           coeffs[0], coeffs[1], coeffs[2], coeffs[3], coeffs[4], r2, samples.count);
    rc = 0;
fail:
    if (rc) fprintf(stderr, "cachebench calibrate: %s\n", err.msg);
    calibration_samples_free(&samples);
    experiment_close(&ctx);
    prompt_set_free(&prompts);
    return rc;
}
