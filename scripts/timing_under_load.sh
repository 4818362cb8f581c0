#!/bin/sh
# Benchmark: do wall-clock speed-ups survive a busy machine? Runs the same sweep three times into fresh folders:
# once as the machine is, twice while a niced busy loop keeps one core busy, and prints each setting's wall-clock
# speed-up (mean baseline robust time / mean robust time over the same pairs, as in report.md) per sweep, and the
# largest relative difference between the runs. Target (issue 21): within 10%.
#   usage: scripts/timing_under_load.sh [INI] [OUT_DIR]     (default datasets/demo_sweep.ini, /tmp/cachebench-load)
#   environment: CACHEBENCH (default build/cachebench), OMP_NUM_THREADS (default 2)
# It takes about three times the sweep's own time. The "idle" sweep is only as idle as the machine is: the script
# prints the 1-minute load average before each sweep.
set -eu
INI=${1:-datasets/demo_sweep.ini}
OUT=${2:-/tmp/cachebench-load}
BIN=${CACHEBENCH:-build/cachebench}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
rm -rf "$OUT"
mkdir -p "$OUT"

speedups() { # summary.tsv -> "spec speedup" per setting (ratio of mean robust times over the baseline's pairs)
    awk -F'\t' 'NR == 1 { next }
        $2 == "none" && $16 == "complete" { base[$4 "/" $5] = $17 }
        { spec[NR] = $3; key[NR] = $4 "/" $5; t[NR] = $17; ok[NR] = ($16 == "complete") }
        END { for (i in spec) if (ok[i] && (key[i] in base)) { sb[spec[i]] += base[key[i]]; st[spec[i]] += t[i] }
              for (s in sb) printf "%s %.4f\n", s, sb[s] / st[s] }' "$1" | sort
}

loader=
trap '[ -n "$loader" ] && kill "$loader" 2>/dev/null' EXIT INT TERM # never leave the busy loop behind
for run in idle load1 load2; do
    loader=
    if [ "$run" != idle ]; then
        nice -n 19 sh -c 'while :; do :; done' &
        loader=$!
    fi
    echo "== $run: load average $(cut -d' ' -f1 /proc/loadavg), OMP_NUM_THREADS=$OMP_NUM_THREADS"
    "$BIN" sweep --config "$INI" --out "$OUT/$run" --quiet > "$OUT/$run.log" 2>&1 || { cat "$OUT/$run.log"; exit 1; }
    [ -n "$loader" ] && kill "$loader"
    loader=
    speedups "$OUT/$run/summary.tsv" > "$OUT/$run.speedups"
done

echo "setting idle load1 load2 max_rel_diff"
join "$OUT/idle.speedups" "$OUT/load1.speedups" | join - "$OUT/load2.speedups" | awk '
    { lo = $2; hi = $2; for (i = 3; i <= 4; i++) { if ($i < lo) lo = $i; if ($i > hi) hi = $i }
      d = (hi - lo) / lo; if (d > worst) worst = d; printf "%s %.2f %.2f %.2f %.1f%%\n", $1, $2, $3, $4, 100 * d }
    END { printf "largest relative difference: %.1f%% (target <= 10%%)\n", 100 * worst }'
