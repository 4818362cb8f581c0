/* Sweep plots: data files in <sweep>/plots/<name>.dat, drawn by gnuplot (pngcairo) from the templates kept in the
 * repository's plots/ folder. Every template takes its inputs as variables, so it can be run by hand:
 *     gnuplot -e "data='SWEEP/plots/tradeoff_psnr.dat'; front='SWEEP/plots/front_psnr.dat'; out='x.png';
 *                 ylabel='PSNR (dB)'" plots/tradeoff.gp
 * Drawn (names under <sweep>/plots/):
 *   tradeoff_{psnr,ssim,lpips}.png  speed-up (FLOPs, or wall with x_wall) vs quality, one point per setting (averaged over prompts and
 *                                   seeds, summary.h), one colour per strategy, its Pareto front as a line;
 *                                   infinite PSNR left off; the LPIPS plot only when LPIPS values exist; error
 *                                   bars: the 95% bootstrap intervals of both axes (ci_<metric>.dat, summary.h)
 *   steps_<strategy>.png            the best run of each strategy step by step: signal and k, accumulator and
 *                                   threshold, and which calls were computed or reused
 *   timeline_<strategy>.png         computed/reused per step for every setting of the strategy (report prompt)
 * Each PNG is written under a temporary name and renamed. */
#ifndef CACHEBENCH_PLOTS_H
#define CACHEBENCH_PLOTS_H

#include <stddef.h>

#include "core/error.h"
#include "results/summary.h"

/* The template folder: given when non-NULL; else <dir of the executable>/../plots when it holds tradeoff.gp;
 * else "plots" (relative to the working directory). */
void plots_templates_dir(const char *given, char *buf, size_t cap);

/* Runs `gnuplot -e "<vars>" <templates_dir>/<template>` with out='<png>.tmp...' added to vars, then renames the
 * output to png. vars: gnuplot statements such as "data='x.dat'; ylabel='PSNR'" (quote with plots_quote).
 * gnuplot's messages are returned in err when it fails. */
int plots_gnuplot(const char *templates_dir, const char *template_name, const char *vars, const char *png, Error *err);

/* Appends name='value' to buf as a gnuplot statement, quoting value for a single-quoted gnuplot string. */
void plots_var(char *buf, size_t cap, const char *name, const char *value);

/* Writes the data files and draws every plot above; *drawn counts the PNG files made. */
int plots_draw(const char *sweep_dir, const Summary *s, const SummaryGroup *g, int ng, const StrategyBest *best,
               int nbest, int report_row, const char *templates_dir, int x_wall, int *drawn, Error *err);

#endif
