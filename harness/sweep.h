/* Sweeps (DESIGN §8): a grid of strategy settings × prompts × seeds, run with one loaded model into a sweep
 * folder, resumable after any interruption (Ctrl-C, kill -9, power loss).
 *
 * Grid grammar. A strategy template is a strategy spec whose values may be lists and ranges:
 *     template = name [ ":" param { "," param } ]        no whitespace (as in a spec)
 *     param    = key "=" item { "|" item }
 *     item     = value | lo ".." hi [ "/" step ]          range: lo, lo+step, ... up to hi inclusive (step 1
 *                                                         when omitted); a value whose text before ".." is not a
 *                                                         number ("../coeffs.txt") is a plain value
 * The template expands into the cartesian product of its lists, the first key varying slowest:
 *     "easycache:thresh=0.05|0.1,warmup=5|10" -> easycache:thresh=0.05,warmup=5  easycache:thresh=0.05,warmup=10
 *                                                easycache:thresh=0.1,warmup=5   easycache:thresh=0.1,warmup=10
 * Seeds: "0,1,2", ranges "0..4", or both ("0,10..12").
 *
 * Config file (INI, read with inih): a [sweep] section with the keys of the command-line flags
 *     strategy (repeatable, one template each), prompts, seeds, steps, solver, model, weights, backend, out,
 *     contexts, negative_id, negative_prompt, random_context (true/false), text_encoder, tokenizer, vae, frames,
 *     height, width
 * and one section per strategy, "[strategy NAME]" or "[strategy NAME LABEL]" (LABEL tells apart two grids of one
 * strategy), whose keys are the strategy's parameters and whose values are lists/ranges as above; spaces around
 * '|' are allowed there. Such a section is the template NAME:key=value,... in the order of the keys. A section
 * needs at least one key (inih does not report empty sections): `enabled = yes` runs the strategy at its
 * defaults, `enabled = no` leaves the section out. Relative paths in [sweep] (prompts, weights, contexts, out) are
 * relative to the INI file's folder, so a config works from any current directory; flags stay relative to it.
 * Unknown sections and keys, repeated keys, bad values and lines over 198 characters are errors naming the file
 * and line.
 *
 * The plan: the baseline ("none", full inference) first, then every expanded setting in order, duplicates
 * removed, for every prompt and seed. Before running, each setting is made canonical by creating the strategy
 * (so "easycache:thresh=0.05" and "easycache:thresh=0.05,warmup=10" are one setting, a bad value or a missing
 * TeaCache coefficient file fails before the first run), and the run id is experiment_run_id of the canonical
 * spec: the same file name `cachebench run` gives.
 *
 * The folder: runs/<run_id>.h5 (record_write: temporary name, then rename, so a file that exists is complete),
 * summary.tsv, report.md and plots/ (results/summary.h). A run file holds its metrics against the baseline of
 * its prompt and seed (the baseline against itself: PSNR inf, SSIM 1), computed before the file is written;
 * a failed run (NaN/Inf) is written with status failed and no metrics. A run counts as finished when record_read
 * accepts its file, it has metrics (or failed), and its model, weights, steps, solver, backend, prompt and spec are
 * the sweep's (a mismatch is an error: use another folder). Stale *.tmp files are removed at start; a lock file
 * (.lock, flock) keeps two sweeps out of one folder. Workers (SweepOptions.worker) share a folder instead, through
 * claim files (harness/claims.h), and neither lock it nor remove *.tmp files. An interrupt abandons the run in progress (nothing of it is
 * kept) but never a file being written (SweepOptions.writing).
 *
 * Shared computation: the runs of a (prompt, seed) group that are still to be made run together as fork trees
 * (harness/runner.h runner_sample_shared; SweepOptions.no_share, share_max); their records are written in plan
 * order when their tree is done, so an interrupt abandons the tree in progress (its runs are made again on resume,
 * with the same results). <out>/sharing.tsv gets one line per session: what was run and what sharing saved.
 *
 * Text conditioning: before anything else (folder, lock, weights) the contexts of every prompt id and of the
 * negative prompt are checked (experiment_check_conditioning); a model without a vocabulary needs contexts or
 * random_context. Finished runs must have the sweep's conditioning and contexts file (by sha256).
 *
 * Provenance: a finished run is stale when the sha256 of its strategy's source file (strategy_source_sha256,
 * stored in the record) differs from this build's, or, for records without one, when it was made by another
 * build (version). Stale runs are listed, not redone, unless SweepOptions.rerun asks ("stale", "all" or a
 * strategy name); the other mismatches (model, weights, steps, solver, backend, prompt, seed, conditioning) are
 * errors, as above. */
#ifndef CACHEBENCH_SWEEP_H
#define CACHEBENCH_SWEEP_H

#include <signal.h>
#include <stdint.h>

#include "datasets/prompts.h"
#include "core/error.h"
#include "results/record.h"

#define SWEEP_SPEC_MAX 256      /* = sizeof Strategy.spec */
#define SWEEP_MAX_TEMPLATES 64
#define SWEEP_MAX_SEEDS 1024
#define SWEEP_MAX_SETTINGS 10000 /* expanded specs of one sweep: a typo in a range should not plan a year */

/* A growable list of distinct strategy specs, owned. */
typedef struct {
    char (*items)[SWEEP_SPEC_MAX];
    int count, cap;
} SpecList;

/* Appends spec unless it is already in the list. */
int spec_list_add(SpecList *l, const char *spec, Error *err);
void spec_list_free(SpecList *l);

/* Expands one template (grammar above) and appends its specs to out (duplicates dropped). Checks the strategy
 * name and the parameter names against the registry; values are checked later, when the strategy is created. */
int sweep_expand_template(const char *tmpl, SpecList *out, Error *err);

/* Parses a seed list (grammar above) into seeds[cap]; a repeated seed is an error. */
int sweep_parse_seeds(const char *text, uint64_t *seeds, int cap, int *count, Error *err);

/* What a sweep is asked to do: the [sweep] keys and flags, before expansion. Empty strings mean "default". */
typedef struct {
    char model[64];             /* default tiny */
    char weights[1024];         /* default: the embedded tiny weights */
    char backend[16];           /* default cpu */
    char out[1024];             /* required */
    char prompts[1024];         /* required: "id<TAB>prompt" file (datasets/prompts.h) */
    int steps;                  /* 0: the model config's default */
    int frames, height, width;  /* latent (pixel) grid of every run; 0: the model config's */
    char solver[16];            /* a registered solver name; "": the model config's default_solver */
    int n_templates;
    char templates[SWEEP_MAX_TEMPLATES][1024];
    int n_seeds;                /* 0: seed 0 */
    uint64_t seeds[SWEEP_MAX_SEEDS];
    char contexts[1024];        /* prompt contexts file (harness/contexts.h); "" none */
    char text_encoder[1024];    /* umT5 encoder: the prompts are encoded once into OUT/contexts-<key>.safetensors */
    char tokenizer[1024];       /* its spiece.model; "": looked up beside the encoder */
    char vae[1024];             /* VAE decoder: runs record decoded pixels (harness/experiment.h experiment_use_vae) */
    char negative_id[64];       /* key of the negative context; "" CONTEXTS_NEGATIVE_KEY */
    char negative_prompt[512];  /* "": ExperimentSpec's default */
    int random_context;         /* models without a vocabulary and without contexts: the seeded stand-in */
} SweepConfig;

void sweep_config_init(SweepConfig *c);
/* Reads an INI file (grammar above) into c, replacing the values it sets. Errors are "FILE:LINE: ...". */
int sweep_config_read_ini(SweepConfig *c, const char *path, Error *err);
/* Adds one template (validated by expansion), for --strategy. */
int sweep_config_add_template(SweepConfig *c, const char *tmpl, Error *err);

/* The expanded grid. specs[0] is always "none". */
typedef struct {
    SpecList specs;
    PromptSet prompts;
    int n_seeds;
    uint64_t seeds[SWEEP_MAX_SEEDS];
    const char *solver;         /* the solver every run uses, set by sweep_run once the model is open */
    int grid[3];                /* frames, height, width of every run, likewise */
    char contexts[4200];        /* the contexts file every run uses (--contexts, or the text encoder's cache); set by
                                 * sweep_run; "" none (or, in a dry run, not encoded yet) */
} SweepPlan;

/* Expands the templates, reads the prompt file. */
int sweep_plan_build(SweepPlan *p, const SweepConfig *c, Error *err);
void sweep_plan_free(SweepPlan *p);
static inline long sweep_plan_runs(const SweepPlan *p) {
    return (long)p->specs.count * p->prompts.count * p->n_seeds;
}

/* Progress reports from sweep_run (the library prints nothing; the command decides what to show). */
typedef struct {
    long total;                 /* runs in the plan */
    long finished_before;       /* found finished at start (runs to be run again by --rerun not counted) */
    long stale;                 /* finished runs whose strategy source changed since (listed through cb->note) */
    long other_build;           /* finished runs made by another build of cachebench with the same strategy source */
    long done;                  /* run (or skipped) in this session so far, finished_before not included */
    long failed;                /* failed runs written in this session */
    long skipped;               /* runs left out because the baseline of their prompt and seed failed */
    double eta_seconds;         /* remaining time; < 0 when unknown */
    int eta_upper_bound;        /* 1 while the estimate is (remaining runs) × (baseline wall): caching is faster */
    long by_others;             /* worker: runs found finished by other workers after the start */
    long taken_over;            /* worker: stale claims taken over */
    /* Shared computation (fork trees), this session: */
    long calls_alone;           /* model calls of the runs made that ran the engine, as if each ran alone */
    long calls_run;             /* model calls the engine made for them (calls_alone - calls_run were saved) */
    long replays, forks, trees; /* calls made again alone after leaving a shared call; trajectories forked; trees */
    double flops_alone, flops_run;
    double wall_seconds;        /* of this session, from the first run to the last */
} SweepStatus;

typedef struct {
    /* After planning and the finished-run scan, before the first run. */
    void (*plan)(void *user, const SweepPlan *plan, const SweepStatus *st);
    /* When a time estimate first becomes available (after the first baseline of a fresh sweep). */
    void (*estimate)(void *user, const SweepStatus *st);
    /* Before a run; returns 1 to let experiment_run draw its per-step progress line (on a terminal stderr). */
    int (*run_start)(void *user, const SweepStatus *st, const char *run_id);
    /* rec: the record as written (metrics included); seconds: run + metrics + write. */
    void (*run_done)(void *user, const SweepStatus *st, const char *run_id, const RunRecord *rec, double seconds);
    /* Something the user should know that does not stop the sweep (a file to be run again, a failed baseline). */
    void (*note)(void *user, const char *message);
    void *user;
} SweepCallbacks;

typedef struct {
    int dry_run;                /* plan, scan and report through cb->plan, run nothing (the folder is untouched) */
    /* For the command's signal handler (both may be NULL): *writing is 1 while a run file is being written, so
     * that the handler only sets *stop then (and exits at once otherwise: the run in progress is abandoned, which
     * loses nothing finished); sweep_run returns 1 after the write when *stop is set. */
    volatile sig_atomic_t *writing;
    volatile sig_atomic_t *stop;
    /* Finished runs to run again: NULL none; "stale" the stale ones (sweep_run_stale); "all"; or a strategy name
     * (every run of that strategy, e.g. "none" re-times the baselines). */
    const char *rerun;
    /* Many workers on one folder (harness/claims.h) instead of the folder lock: each (prompt, seed) group is claimed
     * before it runs; a worker returns when every run of the plan (of its shard) is finished, by it or by others,
     * waiting meanwhile for groups other live workers hold. */
    int worker;
    double stale_after;         /* seconds without a heartbeat after which a claim is taken over; 0: 600 */
    int shard, shards;          /* shards > 0: only the groups g (in plan order, from 0) with g % shards == shard */
    /* Shared computation (README "Shared computation (fork trees)"): by default the runs of each (prompt, seed)
     * group are made as fork trees of at most share_max settings (0: SWEEP_SHARE_MAX_DEFAULT), the baseline in the
     * first, with results bit-identical to runs made alone; no_share makes every run alone. */
    int no_share;
    int share_max;
} SweepOptions;

#define SWEEP_SHARE_MAX_DEFAULT 16

/* Runs the plan into c->out (created if missing). plan->specs are replaced by their canonical forms. Returns 0
 * when every run is finished (failed runs included) or, with dry_run, after planning; 1 when stopped by *stop;
 * -1 on errors that stop the sweep (model, folder, lock, a write error). */
int sweep_run(const SweepConfig *c, SweepPlan *plan, const SweepOptions *opt, const SweepCallbacks *cb,
              SweepStatus *final, Error *err);

/* mkdir -p. */
int sweep_make_dirs(const char *path, Error *err);

#endif
