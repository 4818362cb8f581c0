#include "harness/calibrate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int use_e0;
    CalibrationSamples *samples;
    float *m_prev[2], *y_prev[2];
    size_t m_n, y_n;
    int have_prev[2];
    double pending_input[2];    /* signal of the current call, paired with its output in model_end */
    const VecOps *ops;
} Observer;

static int append(CalibrationSamples *s, double x, double y, int step, int branch) {
    if (s->count == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 256;
        double *in = realloc(s->input, cap * sizeof *in);
        if (!in) return -1;
        s->input = in;
        double *out = realloc(s->output, cap * sizeof *out);
        if (!out) return -1;
        s->output = out;
        int *st = realloc(s->step, cap * sizeof *st);
        if (!st) return -1;
        s->step = st;
        int *br = realloc(s->branch, cap * sizeof *br);
        if (!br) return -1;
        s->branch = br;
        s->cap = cap;
    }
    s->input[s->count] = x, s->output[s->count] = y, s->step[s->count] = step, s->branch[s->count] = branch;
    s->count++;
    return 0;
}

static int observe_blocks(Strategy *s, const StepInfo *st, const BlockInputs *in, BranchTrace *trace) {
    Observer *o = s->state;
    const float *m = o->use_e0 ? in->e0 : in->e;
    size_t n = o->use_e0 ? 6 * in->dim : in->dim;
    int b = st->branch;
    if (!o->m_prev[b]) {
        o->m_n = n;
        o->m_prev[b] = o->ops->alloc(o->ops->ctx, n);
        if (!o->m_prev[b]) return STRATEGY_COMPUTE;
    }
    o->pending_input[b] = NAN;
    if (o->have_prev[b]) {
        double denom = o->ops->mean_abs(o->ops->ctx, o->m_prev[b], n);
        if (denom > 0) o->pending_input[b] = o->ops->mean_abs_diff(o->ops->ctx, m, o->m_prev[b], n) / denom;
    }
    trace->signal = (float)o->pending_input[b];
    o->ops->copy(o->ops->ctx, o->m_prev[b], m, n);
    return STRATEGY_COMPUTE;
}

static void observe_output(Strategy *s, const StepInfo *st, const float *x, const float *y, size_t n) {
    (void)x;
    Observer *o = s->state;
    int b = st->branch;
    if (!o->y_prev[b]) {
        o->y_n = n;
        o->y_prev[b] = o->ops->alloc(o->ops->ctx, n);
        if (!o->y_prev[b]) return;
    }
    if (o->have_prev[b] && isfinite(o->pending_input[b])) {
        double denom = o->ops->mean_abs(o->ops->ctx, o->y_prev[b], n);
        if (denom > 0) {
            double rel = o->ops->mean_abs_diff(o->ops->ctx, y, o->y_prev[b], n) / denom;
            append(o->samples, o->pending_input[b], rel, st->step, b);
        }
    }
    o->ops->copy(o->ops->ctx, o->y_prev[b], y, n);
    o->have_prev[b] = 1;
}

static void observer_destroy(Strategy *s) {
    Observer *o = s->state;
    if (!o) return;
    for (int b = 0; b < 2; b++) {
        if (o->m_prev[b]) o->ops->release(o->ops->ctx, o->m_prev[b]);
        if (o->y_prev[b]) o->ops->release(o->ops->ctx, o->y_prev[b]);
    }
    free(o);
    s->state = NULL;
}

int calibration_observer_create(Strategy *s, const StrategyEnv *env, int use_e0, CalibrationSamples *samples,
                                Error *err) {
    memset(s, 0, sizeof *s);
    Observer *o = calloc(1, sizeof *o);
    if (!o) return error_set(err, "out of memory");
    o->use_e0 = use_e0;
    o->samples = samples;
    o->ops = env->ops;
    s->state = o;
    s->ops = env->ops;
    snprintf(s->spec, sizeof s->spec, "none");
    s->blocks_begin = observe_blocks;
    s->model_end = observe_output;
    s->destroy = observer_destroy;
    return 0;
}

void calibration_samples_free(CalibrationSamples *s) {
    free(s->input);
    free(s->output);
    free(s->step);
    free(s->branch);
    memset(s, 0, sizeof *s);
}

/* Solves the 5x5 normal equations by Gaussian elimination with partial pivoting. x is scaled to [-1,1] first
 * (signals are ~1e-2, so x^4 ~ 1e-8 would otherwise make the system badly conditioned), and the coefficients are
 * scaled back afterwards. */
int calibration_fit(const double *x, const double *y, size_t n, double coeffs[5], double *r2, Error *err) {
    if (n < 5) return error_set(err, "calibration needs at least 5 samples, got %zu", n);
    double scale = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(x[i]));
    if (!(scale > 0) || !isfinite(scale)) return error_set(err, "calibration inputs are all zero or not finite");
    double A[5][6] = {{0}};
    for (size_t i = 0; i < n; i++) {
        double t = x[i] / scale, p[5];
        p[4] = 1;
        for (int k = 3; k >= 0; k--) p[k] = p[k + 1] * t; /* p[k] = t^(4-k) */
        for (int r = 0; r < 5; r++) {
            for (int c = 0; c < 5; c++) A[r][c] += p[r] * p[c];
            A[r][5] += p[r] * y[i];
        }
    }
    for (int col = 0; col < 5; col++) {
        int piv = col;
        for (int r = col + 1; r < 5; r++)
            if (fabs(A[r][col]) > fabs(A[piv][col])) piv = r;
        if (fabs(A[piv][col]) < 1e-300)
            return error_set(err, "calibration samples do not determine a degree-4 polynomial (too few distinct inputs)");
        if (piv != col)
            for (int c = 0; c < 6; c++) {
                double tmp = A[col][c];
                A[col][c] = A[piv][c];
                A[piv][c] = tmp;
            }
        for (int r = 0; r < 5; r++) {
            if (r == col) continue;
            double f = A[r][col] / A[col][col];
            for (int c = col; c < 6; c++) A[r][c] -= f * A[col][c];
        }
    }
    for (int k = 0; k < 5; k++) coeffs[k] = A[k][5] / A[k][k] / pow(scale, 4 - k);
    double mean = 0, ss_tot = 0, ss_res = 0;
    for (size_t i = 0; i < n; i++) mean += y[i];
    mean /= (double)n;
    for (size_t i = 0; i < n; i++) {
        double f = (((coeffs[0] * x[i] + coeffs[1]) * x[i] + coeffs[2]) * x[i] + coeffs[3]) * x[i] + coeffs[4];
        ss_res += (y[i] - f) * (y[i] - f);
        ss_tot += (y[i] - mean) * (y[i] - mean);
    }
    *r2 = ss_tot > 0 ? 1.0 - ss_res / ss_tot : 1.0;
    return 0;
}
