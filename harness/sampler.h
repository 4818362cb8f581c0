/* Flow-matching schedule (DESIGN §3): sigma linearly spaced from 1 towards 0 over the steps, shifted by
 * sigma' = shift*sigma / (1 + (shift-1)*sigma), with a final 0; the model timestep is sigma' * 1000. */
#ifndef CACHEBENCH_SAMPLER_H
#define CACHEBENCH_SAMPLER_H

/* sigmas has steps + 1 entries; sigmas[steps] = 0. */
void flow_sigmas(float *sigmas, int steps, float shift);

#endif
