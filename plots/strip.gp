# The report's frame strip with a label per row: the composed frames (a PNG) drawn 1:1, the row labels at the left.
# Variables: img  the composed strip (PNG, rows of frames);  out  PNG file;  w, h  its size in pixels
#            rows  number of rows;  labels  gnuplot ytics list, e.g. '("full inference" 0, "static" 1)' with the
#            pixel row of each row's centre (counted from the top) as position;  left  label margin, pixels
# Written by results/summary.c; runnable by hand.
if (!exists("left")) left = 300   # pixels for the labels
set terminal pngcairo size (w + left + 10), (h + 10) noenhanced font "DejaVu Sans,11"
set output out
set lmargin at screen real(left) / (w + left + 10)
set rmargin at screen real(left + w) / (w + left + 10)
set tmargin at screen 1 - 5.0 / (h + 10)
set bmargin at screen 5.0 / (h + 10)
unset border
unset xtics
unset key
set xrange [-0.5 : w - 0.5]
set yrange [h - 0.5 : -0.5]
# ytics at row centres (pixel rows counted from the top).
eval sprintf("set ytics scale 0 %s", labels)
plot img binary filetype=png flipy with rgbimage
