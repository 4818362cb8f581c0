# One run of a cachebench sweep step by step: the strategy's signal and transformation rate k, its accumulator
# against the threshold, and which model calls were computed or reused.
# Variables: data   steps_<strategy>.dat (columns: step sigma computed_cond computed_uncond, then per branch
#                   cond/uncond: signal accumulator threshold k; NaN where the strategy records nothing)
#            out    PNG file;  title  plot title;  steps  number of sampling steps
#            has_signal  0 when the run records no signal or k (static, none): no signal panel
#            has_acc     0 when it records no accumulator (none): no accumulator panel
#            has_k       0 when it records no k (TeaCache): no right axis
if (!exists("title")) title = ""
if (!exists("steps")) steps = 50
if (!exists("has_signal")) has_signal = 1
if (!exists("has_acc")) has_acc = 1
if (!exists("has_k")) has_k = 1
panels = 1 + (has_signal ? 1 : 0) + (has_acc ? 1 : 0)
set terminal pngcairo size 1000,(60 + 280 * panels) noenhanced font "DejaVu Sans,10"
set output out
set xrange [-0.5:steps-0.5]
if (steps <= 20) set xtics 1
set grid
# Keys above each panel, in a row: beside it they would cover the right axis label.
set key outside top center horizontal
set multiplot layout panels,1 title title
set lmargin 12
set rmargin 12
# The first panel leaves room for the multiplot title above its key; the lines keep off the top border.
first = 1
set offsets 0, 0, graph 0.08, 0
if (has_signal) {
set tmargin 4
first = 0
set ylabel "signal"
if (has_k) {
set y2label "k (transformation rate)"
set y2tics
set ytics nomirror
plot data using 1:5 with linespoints pt 7 ps 0.6 lc 1 title "signal (cond)", \
     data using 1:9 with linespoints pt 6 ps 0.6 lc 3 dt 2 title "signal (uncond)", \
     data using 1:8 axes x1y2 with linespoints pt 5 ps 0.6 lc 2 title "k (cond, right axis)"
} else {
plot data using 1:5 with linespoints pt 7 ps 0.6 lc 1 title "signal (cond)", \
     data using 1:9 with linespoints pt 6 ps 0.6 lc 3 dt 2 title "signal (uncond)"
}
unset y2label
unset y2tics
set ytics mirror
}
if (has_acc) {
set tmargin (first ? 4 : 3)
first = 0
set ylabel "accumulator"
plot data using 1:6 with linespoints pt 7 ps 0.6 lc 4 title "accumulator (cond)", \
     data using 1:10 with linespoints pt 6 ps 0.6 lc 6 dt 2 title "accumulator (uncond)", \
     data using 1:7 with lines lw 2 lc rgb "red" dt 3 title "threshold", \
     0 with lines lc rgb "gray70" notitle
}
set tmargin (first ? 4 : 3)
set offsets 0, 0, 0, 0
set ylabel "calls"
set xlabel "sampling step"
set yrange [-0.7:1.7]
set ytics ("uncond" 0, "cond" 1)
plot data using 1:($3 == 1 ? 1 : NaN) with points pt 5 ps 1.0 lc rgb "#1f4e79" title "computed", \
     data using 1:($3 == 0 ? 1 : NaN) with points pt 4 ps 1.0 lc rgb "#d62728" title "reused", \
     data using 1:($4 == 1 ? 0 : NaN) with points pt 5 ps 1.0 lc rgb "#1f4e79" notitle, \
     data using 1:($4 == 0 ? 0 : NaN) with points pt 4 ps 1.0 lc rgb "#d62728" notitle
unset multiplot
