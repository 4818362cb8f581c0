/* cachebench sweep: a grid of strategy settings × prompts × seeds, resumable; summary, plots and report at the end.
 * Grid, config file and folder: harness/sweep.h; summary and report: results/summary.h. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "harness/claims.h"
#include "harness/cli.h"
#include "harness/plugins.h"
#include "harness/solvers/solver.h"
#include "harness/sweep.h"
#include "models/dit/config.h"
#include "results/summary.h"
#include "strategies/strategy.h"

static void sweep_usage(FILE *out) {
    char names[1024], strategies[1200];
    strategy_list_names(names, sizeof names);
    cli_wrap_list(names, 34, 110, strategies, sizeof strategies);
    fprintf(out,
            "Usage: cachebench sweep --prompts FILE --out DIR [--strategy TEMPLATE]... [options]\n"
            "       cachebench sweep --config FILE [options that override it]\n"
            "Runs every strategy setting on every prompt and seed with one loaded model, plus the full-inference\n"
            "baseline (strategy none) once per prompt and seed, and writes one run file per run into DIR/runs/.\n"
            "Re-running the same command after an interruption (Ctrl-C, kill, crash) resumes: finished runs are\n"
            "skipped, nothing finished is lost. At the end: DIR/summary.tsv, DIR/report.md and DIR/plots/.\n\n"
            "  --strategy TEMPLATE  strategy settings, repeatable. A spec whose values may be lists and ranges:\n"
            "                         name:key=V1|V2|...,key=LO..HI/STEP\n"
            "                       '|' separates values, LO..HI/STEP is a range (HI included; /STEP defaults to\n"
            "                       1), and the cartesian product of the lists is run (first key slowest), e.g.\n"
            "                         'easycache:thresh=0.025|0.05|0.1,warmup=10'      3 settings\n"
            "                         'static:interval=2..4,warmup=3|5'                6 settings\n"
            "                         'teacache:thresh=0.05..0.2/0.05'                 4 settings\n"
            "                       available: %s\n"
            "  --prompts FILE       prompt set, lines \"id<TAB>prompt\" (e.g. datasets/prompts_short.txt)\n"
            "  --seeds LIST         noise seeds: 0,1,2 or 0..4 or both (default 0)\n"
            "  --steps N            sampling steps (default: the model config's, 50)\n"
            "  --frames N --height N --width N   latent (pixel) grid of every run (default: the config's; Wan:\n"
            "                       21x60x104, 480p x 81 frames)\n"
            "  --solver NAME        sampler for every run: %s (default: the model config's,\n"
            "                       unipc for the Wan configs as in Wan2.1, euler for tiny)\n"
            "  --model NAME         built-in model config: %s (default: the checkpoint's own)\n"
            "  --weights PATH       model folder or safetensors file (see `run --help`), or random[:SEED]\n"
            "                       (default: the embedded tiny model)\n"
            "  --backend cpu|cuda   compute backend (default cpu)\n"
            "  --contexts FILE      prompt contexts (safetensors: a tensor per prompt id and one for the negative\n"
            "                       prompt; scripts/make_contexts.py); required for Wan models unless\n"
            "                       --random-context. All ids are checked before the sweep starts\n"
            "  --negative-id ID     key of the negative prompt's context (default __negative__)\n"
            "  --negative-prompt TEXT  text of the uncond branch, as recorded (default: empty; Wan: the official\n"
            "                       default negative prompt)\n"
            "  --random-context     Wan models without --contexts: seeded random text (timing only)\n"
            "  --text-encoder PATH  umT5 encoder (see `cachebench encode`): every prompt and the negative are\n"
            "                       encoded once into OUT/contexts-<key>.safetensors (reused on resume), then used as\n"
            "                       --contexts; --tokenizer PATH gives its spiece.model\n"
            "  --vae FILE           Wan VAE decoder: every run records its decoded video, metrics compare pixels\n"
            "                       (a sweep folder never mixes decoded and latent videos)\n"
            "  --out DIR            sweep folder, created if missing\n"
            "  --config FILE        read these settings from an INI file (below); flags given as well override it\n"
            "                       (a --strategy or --seeds flag replaces the file's list)\n"
            "  --dry-run            print the plan (canonical settings, prompts, seeds, runs already finished)\n"
            "                       and stop; the folder is not touched\n"
            "  --rerun WHAT         run finished runs again: stale (those whose strategy source changed since, or\n"
            "                       made by another build when the record lacks the source hash; a resumed sweep\n"
            "                       lists them), all, or a strategy name (e.g. none: re-time the baselines)\n"
            "  --quiet              no progress, only the plan and the end\n"
            "  --plugin FILE        load a strategy plug-in (a .so built against include/cachebench/strategy.h,\n"
            "                       see `cachebench new-strategy`); repeatable; give it again when resuming\n"
            "  --worker             share DIR with other workers running the same command (on this machine or\n"
            "                       others, e.g. a Slurm job array): each claims one (prompt, seed) group at a\n"
            "                       time through DIR/claims/, returns when every run is finished (by anyone),\n"
            "                       and the last one writes the summary. See `cachebench status DIR`\n"
            "  --stale-after T      worker: a claim without heartbeat for T (seconds, or 30s, 10m, 1h) belongs to a\n"
            "                       dead worker and is taken over (default 10m)\n"
            "  --shard K/N          worker that runs only the groups K, K+N, K+2N, ... (K from 1): a fixed\n"
            "                       partition for schedulers that want fixed tasks\n"
            "  --no-share           make every run alone (by default the runs of a prompt and seed share the model\n"
            "                       calls they have in common, as fork trees: same results, less time; see\n"
            "                       README \"Shared computation\")\n"
            "  --share-max N        at most N settings per fork tree (memory: N strategies and trajectories at\n"
            "                       once; default 16)\n"
            "  --help               this text\n\n"
            "Config file (INI):\n"
            "  [sweep]\n"
            "  prompts = datasets/prompts_short.txt\n"
            "  seeds   = 0\n"
            "  steps   = 50\n"
            "  out     = results/demo            ; also: solver, model, weights, backend,\n"
            "                                    ; strategy = TEMPLATE (repeatable), contexts, negative_id,\n"
            "                                    ; negative_prompt, random_context = true, text_encoder,\n"
            "                                    ; tokenizer, vae, frames, height, width\n"
            "  [strategy static]\n"
            "  interval = 2 | 3 | 4\n"
            "  [strategy easycache]\n"
            "  thresh = 0.025 | 0.05 | 0.1       ; lists and ranges as above, spaces allowed\n"
            "  warmup = 10\n"
            "  [strategy teacache fine]          ; an optional label tells apart two sections of one strategy\n"
            "  thresh = 0.01..0.05/0.01\n"
            "  A strategy section needs a key: 'enabled = yes' runs it at its defaults, 'enabled = no' skips it.\n"
            "  Paths are relative to the current folder. Unknown sections or keys are errors (file:line).\n\n"
            "The run ids are those of `cachebench run` (canonical spec, prompt id, seed): DIR/runs/<run_id>.h5, each\n"
            "with its PSNR/SSIM/LPIPS against the baseline of its prompt and seed. A run whose output turns\n"
            "NaN/Inf is kept as a failed run and the sweep goes on. One folder holds one model, weights, step\n"
            "count, solver and backend. Progress: a status line and the run's step line on a terminal, one line per\n"
            "finished run otherwise. Summary, report and plots: see `cachebench plot --help`.\n"
            "Exit status: 0 done, 1 error, 2 bad usage, 130 interrupted (run the same command to resume).\n",
            strategies, solver_names(), dit_config_names());
}

/* The only mutable globals: a signal handler reaches nothing else. The handler exits at once (the run in progress is
 * dropped; run files are complete or absent) unless a run file is being written, then the sweep stops after it. */
static volatile sig_atomic_t sweep_writing, sweep_stop;

static void on_signal(int sig) {
    if (sweep_writing) {
        sweep_stop = sig;
        return;
    }
    static const char msg[] = "\ncachebench sweep: interrupted; the run in progress is dropped, finished runs are "
                              "kept. Run the same command again to resume.\n";
    ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)ignored;
    _exit(128 + sig);
}

static void format_duration(char *buf, size_t cap, double s) {
    if (s < 0) snprintf(buf, cap, "unknown");
    else if (s < 60) snprintf(buf, cap, "%.0fs", s);
    else if (s < 3600) snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
}

/* What the sweep shows. On a terminal (stderr), a two-line block redrawn for every run: the sweep's status line,
 * and below it experiment_run's own step line (the run id, step s/S, the run's ETA); notes are printed above the
 * block. Otherwise (a log), one line per finished run on stdout. */
typedef struct {
    int live, lines;
    int drawn;          /* the block is on screen and the cursor is on the line below it */
    int cols;
    const char *out;
    const SweepConfig *cfg;
} Display;

/* Removes the block so that permanent text can take its place. */
static void display_clear(Display *d) {
    if (d->live && d->drawn) fputs("\033[2A\r\033[J", stderr);
    d->drawn = 0;
    fflush(stderr);
}

static void cb_note(void *user, const char *message) {
    Display *d = user;
    display_clear(d);
    fprintf(stderr, "cachebench sweep: %s\n", message);
    fflush(stderr);
}

static void cb_plan(void *user, const SweepPlan *plan, const SweepStatus *st) {
    Display *d = user;
    printf("sweep: %d setting%s (baseline none + %d) x %d prompt%s x %d seed%s = %ld runs into %s\n",
           plan->specs.count, plan->specs.count == 1 ? "" : "s", plan->specs.count - 1, plan->prompts.count,
           plan->prompts.count == 1 ? "" : "s", plan->n_seeds, plan->n_seeds == 1 ? "" : "s", st->total, d->out);
    for (int i = 0; i < plan->specs.count; i++) printf("  %s\n", plan->specs.items[i]);
    printf("prompts (%s):", d->cfg->prompts);
    for (int i = 0; i < plan->prompts.count; i++) printf(" %s", plan->prompts.items[i].id);
    printf("\nseeds:");
    for (int i = 0; i < plan->n_seeds; i++) printf(" %llu", (unsigned long long)plan->seeds[i]);
    const char *model = d->cfg->model[0] ? d->cfg->model : d->cfg->weights[0] ? "(from the weights)" : "tiny";
    printf("\nmodel %s, weights %s, ", model, d->cfg->weights[0] ? d->cfg->weights : "(embedded tiny)");
    if (d->cfg->steps) printf("%d steps", d->cfg->steps);
    else printf("default steps");
    printf(", solver %s, grid %dx%dx%d", plan->solver, plan->grid[0], plan->grid[1], plan->grid[2]);
    printf(", backend %s\n", d->cfg->backend[0] ? d->cfg->backend : "cpu");
    if (d->cfg->text_encoder[0])
        printf("text: umT5 encoder %s, contexts %s\n", d->cfg->text_encoder,
               plan->contexts[0] ? plan->contexts : "encoded into this folder when the sweep runs");
    else if (d->cfg->contexts[0]) printf("text: contexts from %s\n", d->cfg->contexts);
    else if (d->cfg->random_context) printf("text: seeded random stand-in where the model has no vocabulary (timing only)\n");
    if (d->cfg->vae[0]) printf("video: decoded by the VAE %s\n", d->cfg->vae);
    printf("finished already: %ld, to run: %ld\n", st->finished_before, st->total - st->finished_before);
    char eta[32];
    format_duration(eta, sizeof eta, st->eta_seconds);
    if (st->total == st->finished_before) printf("nothing to run\n");
    else if (st->eta_seconds >= 0) printf("estimated time: %s%s\n", st->eta_upper_bound ? "at most " : "", eta);
    else printf("estimated time: known after the first baseline run\n");
    fflush(stdout);
}

static void cb_estimate(void *user, const SweepStatus *st) {
    Display *d = user;
    display_clear(d);
    char eta[32];
    format_duration(eta, sizeof eta, st->eta_seconds);
    printf("estimated time: %s%s (from the first baseline; refined as runs finish)\n",
           st->eta_upper_bound ? "at most " : "", eta);
    fflush(stdout);
}

static int cb_run_start(void *user, const SweepStatus *st, const char *run_id) {
    Display *d = user;
    if (!d->live) return 0;
    if (d->drawn) fputs("\033[2A", stderr);
    char eta[32], line[512];
    format_duration(eta, sizeof eta, st->eta_seconds);
    int n = snprintf(line, sizeof line, "sweep: run %ld/%ld, ETA %s%s", st->finished_before + st->done + 1,
                     st->total, st->eta_upper_bound ? "<= " : "", eta);
    if (st->failed) snprintf(line + n, sizeof line - (size_t)n, ", %ld failed", st->failed);
    if ((int)strlen(line) >= d->cols) line[d->cols - 1] = '\0';
    fprintf(stderr, "\r\033[K%s\n\033[K", line);
    fflush(stderr);
    d->drawn = 1;
    /* experiment_run's step line is "<run_id>: step s/S  X.Xs elapsed, ETA Y.Ys": a line longer than the terminal
     * wraps, and '\r' would no longer redraw it in place. */
    int fits = (int)strlen(run_id) + 48 < d->cols;
    if (!fits) fprintf(stderr, "%.*s", d->cols > 4 ? d->cols - 4 : 0, run_id);
    return fits;
}

static void cb_run_done(void *user, const SweepStatus *st, const char *run_id, const RunRecord *rec,
                        double seconds) {
    Display *d = user;
    if (d->live && d->drawn && (rec->failed || rec->steps == 0 || !((int)strlen(run_id) + 48 < d->cols)))
        fputc('\n', stderr); /* the step line ends with a newline only when the run reached its last step */
    if (d->live && rec->failed) {
        display_clear(d);
        fprintf(stderr, "cachebench sweep: %s FAILED at step %d: %s (kept as a failed run)\n", run_id,
                rec->failed_step, rec->failure);
    }
    if (!d->lines) return;
    char eta[32], psnr[32], ssim[32];
    format_duration(eta, sizeof eta, st->eta_seconds);
    summary_format(psnr, sizeof psnr, "%.2f", rec->metrics.frames ? rec->metrics.psnr_mean : NAN);
    summary_format(ssim, sizeof ssim, "%.4f", rec->metrics.frames ? rec->metrics.ssim_mean : NAN);
    printf("[%ld/%ld] %s: %s, %.2f s, %d/%d calls computed, PSNR %s, SSIM %s, ETA %s%s\n",
           st->finished_before + st->done, st->total, run_id,
           rec->failed ? "FAILED" : "complete", seconds, rec->calls_computed, rec->calls_total, psnr, ssim,
           st->eta_upper_bound ? "<= " : "", eta);
    fflush(stdout);
}

int cmd_sweep(int argc, char **argv) {
    enum { OPT_CONFIG = 1000, OPT_STRATEGY, OPT_PROMPTS, OPT_SEEDS, OPT_STEPS, OPT_SOLVER, OPT_MODEL, OPT_WEIGHTS,
           OPT_BACKEND, OPT_OUT, OPT_DRY_RUN, OPT_QUIET, OPT_HELP, OPT_CONTEXTS, OPT_NEGATIVE_ID, OPT_NEGATIVE_PROMPT,
           OPT_RANDOM_CONTEXT, OPT_VAE, OPT_TEXT_ENCODER, OPT_TOKENIZER, OPT_FRAMES, OPT_HEIGHT, OPT_WIDTH,
           OPT_PLUGIN, OPT_RERUN, OPT_WORKER, OPT_STALE_AFTER, OPT_SHARD, OPT_NO_SHARE, OPT_SHARE_MAX };
    static const struct option options[] = {
        {"config", required_argument, 0, OPT_CONFIG},   {"strategy", required_argument, 0, OPT_STRATEGY},
        {"prompts", required_argument, 0, OPT_PROMPTS}, {"seeds", required_argument, 0, OPT_SEEDS},
        {"steps", required_argument, 0, OPT_STEPS},     {"model", required_argument, 0, OPT_MODEL},
        {"weights", required_argument, 0, OPT_WEIGHTS}, {"backend", required_argument, 0, OPT_BACKEND},
        {"out", required_argument, 0, OPT_OUT},         {"dry-run", no_argument, 0, OPT_DRY_RUN},
        {"quiet", no_argument, 0, OPT_QUIET},           {"help", no_argument, 0, OPT_HELP},
        {"solver", required_argument, 0, OPT_SOLVER},
        {"contexts", required_argument, 0, OPT_CONTEXTS}, {"negative-id", required_argument, 0, OPT_NEGATIVE_ID},
        {"negative-prompt", required_argument, 0, OPT_NEGATIVE_PROMPT},
        {"random-context", no_argument, 0, OPT_RANDOM_CONTEXT},
        {"vae", required_argument, 0, OPT_VAE},
        {"text-encoder", required_argument, 0, OPT_TEXT_ENCODER},
        {"tokenizer", required_argument, 0, OPT_TOKENIZER},
        {"frames", required_argument, 0, OPT_FRAMES}, {"height", required_argument, 0, OPT_HEIGHT},
        {"width", required_argument, 0, OPT_WIDTH},
        {"plugin", required_argument, 0, OPT_PLUGIN},
        {"rerun", required_argument, 0, OPT_RERUN},
        {"worker", no_argument, 0, OPT_WORKER}, {"stale-after", required_argument, 0, OPT_STALE_AFTER},
        {"shard", required_argument, 0, OPT_SHARD},
        {"no-share", no_argument, 0, OPT_NO_SHARE}, {"share-max", required_argument, 0, OPT_SHARE_MAX},
        {0, 0, 0, 0}};
    /* Before the config file: it may name a plug-in's strategy. */
    if (plugins_load_from_args("sweep", argc, argv)) return 1;
    const char *rerun = NULL;
    SweepConfig *cfg = malloc(sizeof *cfg);
    SweepPlan plan;
    int have_plan = 0, rc = 2, opt;
    if (!cfg) {
        fprintf(stderr, "cachebench sweep: out of memory\n");
        return 1;
    }
    sweep_config_init(cfg);
    Error err = {{0}};

    /* Pass 1: --config and --help, so that the file is read first and every other flag overrides it. */
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        if (opt == OPT_HELP) {
            sweep_usage(stdout);
            rc = 0;
            goto done;
        }
        if (opt == OPT_CONFIG && sweep_config_read_ini(cfg, optarg, &err)) {
            rc = cli_usage_error("sweep", "%s", err.msg);
            goto done;
        }
        if (opt == '?' || opt == ':') {
            rc = cli_usage_error("sweep", "unknown or incomplete option '%s'", argv[optind - 1]);
            goto done;
        }
    }
    if (optind < argc) {
        rc = cli_usage_error("sweep", "unexpected argument '%s'", argv[optind]);
        goto done;
    }
    /* Pass 2: the flags. */
    int dry_run = 0, quiet = 0, strategies_from_flags = 0, worker = 0, shard = 0, shards = 0;
    int no_share = 0, share_max = 0;
    double stale_after = 600;
    long lv;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case OPT_CONFIG: break;
        case OPT_STRATEGY:
            if (!strategies_from_flags++) cfg->n_templates = 0; /* flags replace the file's list */
            if (sweep_config_add_template(cfg, optarg, &err)) {
                rc = cli_usage_error("sweep", "%s", err.msg);
                goto done;
            }
            break;
        case OPT_PROMPTS: snprintf(cfg->prompts, sizeof cfg->prompts, "%s", optarg); break;
        case OPT_SEEDS:
            if (sweep_parse_seeds(optarg, cfg->seeds, SWEEP_MAX_SEEDS, &cfg->n_seeds, &err)) {
                rc = cli_usage_error("sweep", "invalid value for --seeds: %s", err.msg);
                goto done;
            }
            break;
        case OPT_STEPS:
            if (cli_parse_int("sweep", "--steps", optarg, 1, 10000, &lv)) goto done;
            cfg->steps = (int)lv;
            break;
        case OPT_FRAMES:
        case OPT_HEIGHT:
        case OPT_WIDTH: {
            const char *flag = opt == OPT_FRAMES ? "--frames" : opt == OPT_HEIGHT ? "--height" : "--width";
            if (cli_parse_int("sweep", flag, optarg, 1, 8192, &lv)) goto done;
            *(opt == OPT_FRAMES ? &cfg->frames : opt == OPT_HEIGHT ? &cfg->height : &cfg->width) = (int)lv;
            break;
        }
        case OPT_SOLVER:
            if (!solver_by_name(optarg)) {
                rc = cli_usage_error("sweep", "unknown solver '%s' (valid: %s)", optarg, solver_names());
                goto done;
            }
            snprintf(cfg->solver, sizeof cfg->solver, "%s", optarg);
            break;
        case OPT_MODEL: snprintf(cfg->model, sizeof cfg->model, "%s", optarg); break;
        case OPT_WEIGHTS: snprintf(cfg->weights, sizeof cfg->weights, "%s", optarg); break;
        case OPT_BACKEND: snprintf(cfg->backend, sizeof cfg->backend, "%s", optarg); break;
        case OPT_OUT: snprintf(cfg->out, sizeof cfg->out, "%s", optarg); break;
        case OPT_CONTEXTS: snprintf(cfg->contexts, sizeof cfg->contexts, "%s", optarg); break;
        case OPT_NEGATIVE_ID: snprintf(cfg->negative_id, sizeof cfg->negative_id, "%s", optarg); break;
        case OPT_NEGATIVE_PROMPT: snprintf(cfg->negative_prompt, sizeof cfg->negative_prompt, "%s", optarg); break;
        case OPT_RANDOM_CONTEXT: cfg->random_context = 1; break;
        case OPT_VAE: snprintf(cfg->vae, sizeof cfg->vae, "%s", optarg); break;
        case OPT_TEXT_ENCODER: snprintf(cfg->text_encoder, sizeof cfg->text_encoder, "%s", optarg); break;
        case OPT_TOKENIZER: snprintf(cfg->tokenizer, sizeof cfg->tokenizer, "%s", optarg); break;
        case OPT_DRY_RUN: dry_run = 1; break;
        case OPT_QUIET: quiet = 1; break;
        case OPT_RERUN:
            if (strcmp(optarg, "stale") && strcmp(optarg, "all") && !strategy_find(optarg)) {
                char names[512];
                strategy_list_names(names, sizeof names);
                rc = cli_usage_error("sweep", "--rerun takes stale, all or a strategy (%s), not '%s'", names, optarg);
                goto done;
            }
            rerun = optarg;
            break;
        case OPT_WORKER: worker = 1; break;
        case OPT_NO_SHARE: no_share = 1; break;
        case OPT_SHARE_MAX: {
            char *end;
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || v < 1 || v > 100000) {
                rc = cli_usage_error("sweep", "invalid value '%s' for --share-max: an integer >= 1", optarg);
                goto done;
            }
            share_max = (int)v;
            break;
        }
        case OPT_STALE_AFTER:
            if (claims_parse_duration(optarg, &stale_after)) {
                rc = cli_usage_error("sweep", "invalid value '%s' for --stale-after: write seconds, or e.g. 30s, "
                                     "10m, 1h", optarg);
                goto done;
            }
            break;
        case OPT_SHARD: {
            char tail;
            if (sscanf(optarg, "%d/%d%c", &shard, &shards, &tail) != 2 || shards < 1 || shard < 1 || shard > shards) {
                rc = cli_usage_error("sweep", "invalid value '%s' for --shard: write K/N with 1 <= K <= N", optarg);
                goto done;
            }
            worker = 1;
            break;
        }
        default: break;
        }
    }
    if (cfg->backend[0] && strcmp(cfg->backend, "cpu") && strcmp(cfg->backend, "cuda")) {
        rc = cli_usage_error("sweep", "invalid backend '%s': use cpu or cuda", cfg->backend);
        goto done;
    }
    if (!cfg->prompts[0]) {
        rc = cli_usage_error("sweep", "no prompt file: give --prompts FILE (or prompts = FILE in the config)");
        goto done;
    }
    if (!cfg->out[0]) {
        rc = cli_usage_error("sweep", "no output folder: give --out DIR (or out = DIR in the config)");
        goto done;
    }
    if (sweep_plan_build(&plan, cfg, &err)) {
        fprintf(stderr, "cachebench sweep: %s\n", err.msg);
        rc = 1;
        goto done;
    }
    have_plan = 1;

    Display d = {.live = !quiet && !dry_run && isatty(STDERR_FILENO), .cols = 80, .out = cfg->out,
                 .cfg = cfg};
    d.lines = !quiet && !dry_run && (!d.live || !isatty(STDOUT_FILENO));
    struct winsize ws;
    if (d.live && ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20) d.cols = ws.ws_col;
    SweepCallbacks cb = {.plan = cb_plan, .estimate = cb_estimate, .run_start = cb_run_start,
                         .run_done = cb_run_done, .note = cb_note, .user = &d};
    SweepOptions so = {.dry_run = dry_run, .writing = &sweep_writing, .stop = &sweep_stop, .rerun = rerun,
                       .worker = worker, .stale_after = stale_after, .shard = shard - 1, .shards = shards,
                       .no_share = no_share, .share_max = share_max};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    if (!dry_run) {
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
    }
    SweepStatus st;
    const double t0 = clock_seconds();
    int src = sweep_run(cfg, &plan, &so, &cb, &st, &err);
    display_clear(&d);
    if (src < 0) {
        fprintf(stderr, "cachebench sweep: %s\n", err.msg);
        if (st.done) fprintf(stderr, "cachebench sweep: %ld runs finished this session are kept; run the same "
                                     "command again to resume\n", st.done);
        rc = 1;
        goto done;
    }
    if (src == 1) {
        fprintf(stderr, "cachebench sweep: interrupted; finished runs are kept. Run the same command again to "
                        "resume.\n");
        rc = 128 + (int)sweep_stop;
        goto done;
    }
    if (dry_run) {
        rc = 0;
        goto done;
    }
    /* Drawing is quick but not instant; an interrupt now loses nothing (temporary names, redraw with plot). */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    char took[32];
    format_duration(took, sizeof took, clock_seconds() - t0);
    printf("runs done: %ld this session (%ld failed%s), %ld found finished, in %s\n", st.done - st.skipped, st.failed,
           st.skipped ? ", some left out after a failed baseline" : "", st.finished_before, took);
    if (st.calls_alone > 0 && !no_share)
        printf("sharing: %ld model calls made for %ld computed calls of the runs (%ld saved, %.0f%%), %ld forks, "
               "%ld calls replayed; %s/sharing.tsv\n",
               st.calls_run, st.calls_alone, st.calls_alone - st.calls_run,
               100.0 * (double)(st.calls_alone - st.calls_run) / (double)st.calls_alone, st.forks, st.replays,
               cfg->out);
    if (worker) printf("worker: %ld runs finished by other workers meanwhile, %ld stale claims taken over\n",
                       st.by_others, st.taken_over);
    if (shards) {
        printf("shard %d/%d done; `cachebench status %s` shows the others, `cachebench plot %s` draws the summary\n",
               shard, shards, cfg->out, cfg->out);
        rc = 0;
        goto done;
    }
    RenderResult res;
    if (summary_render(cfg->out, NULL, &res, &err)) {
        fprintf(stderr, "cachebench sweep: %s\n", err.msg);
        fprintf(stderr, "cachebench sweep: the runs are complete; fix the problem and run `cachebench plot %s`\n",
                cfg->out);
        rc = 1;
        goto done;
    }
    if (res.unreadable)
        fprintf(stderr, "cachebench sweep: %d file(s) in %s/runs could not be read and are left out (first: %s)\n",
                res.unreadable, cfg->out, res.unreadable_msg);
    printf("wrote %s/summary.tsv (%d runs), %s/report.md and %d images in %s/plots\n", cfg->out, res.runs, cfg->out,
           res.plots, cfg->out);
    rc = 0;
done:
    if (have_plan) sweep_plan_free(&plan);
    free(cfg);
    return rc;
}
