/* The one list of solvers. Adding a solver: its file in this folder, one line here. */
#include "harness/solvers/solver.h"

#include <string.h>

extern const SolverKind solver_euler, solver_unipc, solver_dpmpp;

static const SolverKind *const SOLVERS[] = {&solver_euler, &solver_unipc, &solver_dpmpp};
enum { SOLVER_COUNT = sizeof SOLVERS / sizeof SOLVERS[0] };

int solver_count(void) { return SOLVER_COUNT; }

const SolverKind *solver_at(int i) { return i >= 0 && i < SOLVER_COUNT ? SOLVERS[i] : NULL; }

const SolverKind *solver_by_name(const char *name) {
    for (int i = 0; i < SOLVER_COUNT; i++)
        if (strcmp(SOLVERS[i]->name, name) == 0) return SOLVERS[i];
    return NULL;
}

const char *solver_names(void) {
    static char names[256]; /* built once from constants; identical on every call */
    if (!names[0]) {
        for (int i = 0; i < SOLVER_COUNT; i++) {
            if (i) strncat(names, ", ", sizeof names - strlen(names) - 1);
            strncat(names, SOLVERS[i]->name, sizeof names - strlen(names) - 1);
        }
    }
    return names;
}
