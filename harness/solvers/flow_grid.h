/* The noise grid and model timesteps of Wan's multistep solvers (wan/utils/fm_solvers_unipc.py and fm_solvers.py,
 * set_timesteps with final_sigmas_type 'zero', as wan/text2video.py drives them), and their log-SNR. Shared by
 * unipc.c and dpmpp.c. */
#ifndef CACHEBENCH_FLOW_GRID_H
#define CACHEBENCH_FLOW_GRID_H

/* sigma_k = start + k * (-start / steps) for k < steps (numpy linspace(start, 0, steps + 1) in float64), shifted
 * in float64 by sigma' = shift*sigma / (1 + (shift-1)*sigma); sigmas[k] = (float)sigma', sigmas[steps] = 0, and
 * timesteps[k] = the int64 truncation of 1000*sigma' (computed in float64): what the model receives. */
void flow_grid(int steps, double start, double shift, float *sigmas, float *timesteps);

/* lambda = log(alpha) - log(sigma) with alpha = 1 - sigma (flow matching), in double from the float32 sigma:
 * -inf at sigma = 1, +inf at sigma = 0. */
double flow_lambda(float sigma);

#endif
