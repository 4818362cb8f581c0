# Speed-up vs quality of a cachebench sweep, one colour per strategy, its Pareto front as a line.
# Variables (gnuplot -e "..."): data  tradeoff_<metric>.dat (blocks per strategy: header line "<strategy> ...",
#                                     then "speedup value setting" rows)
#                               front front_<metric>.dat (same blocks, front points sorted by speed-up)
#                               ci    ci_<metric>.dat (same blocks: "speedup value xlo xhi ylo yhi", 95% bootstrap
#                                     intervals over prompt x seed pairs, drawn as error bars; optional)
#                               out   PNG file;  ylabel, xlabel  axis labels
#                               ymax  optional upper bound of the y axis (SSIM: 1)
# Written by results/plots.c; runnable by hand on any sweep folder's plots/*.dat.
if (!exists("ylabel")) ylabel = "quality vs baseline"
if (!exists("xlabel")) xlabel = "speed-up (full inference = 1)"
set terminal pngcairo size 1000,650 noenhanced font "DejaVu Sans,11"
set output out
set title "Speed-up vs quality: a point per setting (mean over prompts, seeds), bars: 95% CI, lines: fronts"
set xlabel xlabel
set ylabel ylabel
set grid
set key outside right top box width 3
# gnuplot's default colours repeat after 8; the built-in strategies alone are 12.
set linetype 9 lc rgb "#8c564b"
set linetype 10 lc rgb "#ff7f0e"
set linetype 11 lc rgb "#7f7f7f"
set linetype 12 lc rgb "#bcbd22"
set linetype 13 lc rgb "#17becf"
set linetype 14 lc rgb "#e377c2"
set linetype 15 lc rgb "#2ca02c"
set linetype 16 lc rgb "#1f3a93"
set linetype cycle 16
set offsets graph 0.05, graph 0.15, graph 0.08, graph 0.05
# Labels right of their points on an opaque ground, so that a Pareto line running through them does not hide them.
set style textbox opaque noborder margins 0.5, 0.5
if (exists("ymax")) set yrange [*:ymax]
if (!exists("ci")) ci = data
plot for [i=0:*] data index i using 1:2 with points pt 7 ps 1.4 lc i+1 title columnheader(1), \
     for [i=0:*] ci index i using 1:2:(ci eq data ? $1 : $3):(ci eq data ? $1 : $4):(ci eq data ? $2 : $5):(ci eq data ? $2 : $6) with xyerrorbars pt -1 lc i+1 notitle, \
     for [i=0:*] front index i using 1:2 with lines lw 2 lc i+1 notitle, \
     for [i=0:*] data index i using 1:2:3 with labels boxed left offset 0.8,0.5 font ",8" tc lt i+1 notitle
