# Which steps each setting of a strategy computed (one row per setting, one cell per sampling step).
# Variables: data   timeline_<strategy>.dat (columns: step row state setting; state 2 = both branches computed,
#                   1 = one branch, 0 = both reused)
#            out    PNG file;  title  plot title;  nrows  number of rows;  steps  number of sampling steps
if (!exists("title")) title = ""
if (!exists("nrows")) nrows = 1
if (!exists("steps")) steps = 50
set terminal pngcairo size 1000, 140 + 36*nrows noenhanced font "DejaVu Sans,10"
set output out
set title title
set xlabel "sampling step"
set xrange [-0.5:steps-0.5]
if (steps <= 20) set xtics 1
set yrange [-0.6:nrows-0.4]
set key outside right top
set tics nomirror
colour(s) = s == 2 ? 0x1f4e79 : s == 1 ? 0x6fa8dc : 0xe0e0e0
plot data using 1:2:(0.45):(0.38):(colour($3)):ytic(4) with boxxy fs solid lc rgb variable notitle, \
     NaN with boxes fs solid lc rgb "#1f4e79" title "computed", \
     NaN with boxes fs solid lc rgb "#6fa8dc" title "one branch", \
     NaN with boxes fs solid lc rgb "#e0e0e0" title "reused"
