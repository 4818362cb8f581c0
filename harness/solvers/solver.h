/* Solvers (samplers): how the latent moves from one noise level to the next, given the guided model output.
 *
 * The runner (harness/runner.c) owns the model calls, classifier-free guidance and the strategy; a solver sees only
 * the guided velocity of each step, so every strategy works under every solver (a reused call's output feeds the
 * solver exactly like a computed one). One solver per file in this folder; registry.c is the only place that
 * lists them. A solver's state lives in backend memory and is touched only through VecOps, so the same solver runs
 * on every backend. */
#ifndef CACHEBENCH_SOLVER_H
#define CACHEBENCH_SOLVER_H

#include <stddef.h>

#include "core/error.h"
#include "models/backend.h"

typedef struct Solver Solver; /* one trajectory's state; each solver file defines it */

typedef struct {
    const char *name;
    const char *summary;        /* one line, for --help and error messages */
    /* The noise levels sigmas[0..steps] (sigmas[steps] is the final level) and the timesteps the model receives,
     * timesteps[0..steps-1], for `steps` steps of a flow-matching model with this shift. */
    void (*schedule)(int steps, float shift, float *sigmas, float *timesteps);
    /* State for one trajectory over n floats of backend memory; sigmas (steps + 1) must outlive it.
     * NULL with a message on failure. */
    Solver *(*create)(const VecOps *ops, size_t n, const float *sigmas, int steps, Error *err);
    /* Step i: moves x (backend memory) in place from sigmas[i] to sigmas[i + 1]; v is the guided velocity
     * the model gave at (x, sigmas[i]). Steps come in order 0, 1, ..., steps - 1. */
    void (*step)(Solver *s, int i, float *x, const float *v);
    /* Makes dst's history that of src (both made by this kind's create with the same n, sigmas and steps), so that
     * dst continues src's trajectory: a shared-computation sweep forks a trajectory with it (harness/runner.h). */
    void (*copy)(Solver *dst, const Solver *src);
    void (*destroy)(Solver *s);
} SolverKind;

/* NULL when the name is unknown. */
const SolverKind *solver_by_name(const char *name);
/* Comma-separated names of every solver, for help and error messages. */
const char *solver_names(void);
int solver_count(void);
const SolverKind *solver_at(int i);

#endif
