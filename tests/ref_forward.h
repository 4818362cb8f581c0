/* Naive double-precision reference forward (tests only). */
#ifndef CACHEBENCH_TEST_REF_FORWARD_H
#define CACHEBENCH_TEST_REF_FORWARD_H

#include "models/dit/dit.h"

/* out: [out_dim][F][H][W] in double. */
void ref_forward(const DitModel *m, int F, int H, int W, const float *x, float timestep, const float *text,
                 double *out);

#endif
