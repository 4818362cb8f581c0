#!/bin/bash
# make test-slurm: scripts/slurm/sweep.sbatch for real, on a one-node Slurm cluster started here (localhost, CPU
# only, 2 cores): munged, slurmctld and slurmd with a minimal config in a temporary folder. Submits a 2-task array
# sweep of the tiny model (random weights, 4 steps), waits (time-limited), and checks that the folder holds the same
# runs and summary as the same sweep run by one process. Every daemon started here is stopped on exit.
# Installs Debian's slurm-wlm and munge when missing (needs root and apt-get); skips with a message if it cannot.
# Usage: scripts/slurm/test-local.sh [path/to/cachebench]
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
cachebench=$(realpath "${1:-build/cachebench}")
limit=${SLURM_TEST_LIMIT:-300}     # seconds for the array job to finish

skip() { echo "test-slurm: SKIPPED: $*"; exit 0; }
fail() { echo "test-slurm: FAILED: $*" >&2; exit 1; }

[ -x "$cachebench" ] || fail "$cachebench missing (make first)"
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    [ "$(id -u)" = 0 ] || skip "slurm-wlm and munge are not installed and this is not root" \
        "(apt-get install slurm-wlm munge)"
    command -v apt-get >/dev/null || skip "slurm-wlm and munge are not installed and there is no apt-get"
    echo "test-slurm: installing slurm-wlm and munge"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            slurm-wlm munge >/dev/null; }; then
        skip "apt-get install slurm-wlm munge failed"
    fi
fi
[ "$(id -u)" = 0 ] || skip "slurmd must run as root here (it starts jobs as their user)"

work=$(mktemp -d /tmp/cachebench-slurm-XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
    local rc=$?
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null || true
    done
    if [ $rc -ne 0 ]; then
        for f in "$work"/*.log "$work"/*.out "$work"/logs/*; do [ -f "$f" ] && { echo "--- $f"; tail -n 30 "$f"; }; done
    fi
    rm -rf "$work"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# munge: its own key, socket, and files in $work (a munged already running is left alone).
mkdir -p "$work/munge" "$work/state" "$work/spool" "$work/logs"
dd if=/dev/urandom of="$work/munge/munge.key" bs=1 count=128 status=none
chown -R munge:munge "$work/munge" 2>/dev/null || true
chmod 711 "$work/munge"   # the socket lives here: clients need to reach it
chmod 400 "$work/munge/munge.key"
sock="$work/munge/munge.sock"
munged_args=(--foreground --force --key-file="$work/munge/munge.key" --socket="$sock"
             --pid-file="$work/munge/munged.pid" --log-file="$work/munge.log" --seed-file="$work/munge/seed")
if id munge >/dev/null 2>&1; then
    runuser -u munge -- munged "${munged_args[@]}" > "$work/munged.out" 2>&1 &
else
    munged "${munged_args[@]}" > "$work/munged.out" 2>&1 &
fi
pids+=($!)
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || fail "munged did not start (see $work/munge.log)"

node=$(hostname -s)
conf="$work/slurm.conf"
cat > "$conf" <<CONF
ClusterName=cachebench-test
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock
SlurmctldPort=16817
SlurmdPort=16818
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
NodeName=$node NodeAddr=127.0.0.1 CPUs=2 RealMemory=1000 State=UNKNOWN
PartitionName=test Nodes=$node Default=YES MaxTime=30 State=UP
CONF
export SLURM_CONF="$conf"
slurmctld -D -i -f "$conf" > "$work/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -f "$conf" > "$work/slurmd.out" 2>&1 &
pids+=($!)
for _ in $(seq 150); do sinfo -h -o %t 2>/dev/null | grep -Eq '^(idle|mix|alloc)' && break; sleep 0.2; done
sinfo -h -o %t | grep -Eq '^(idle|mix|alloc)' || fail "the node did not come up: $(sinfo 2>&1 | tail -n 2)"
echo "test-slurm: slurmctld and slurmd up on $node"

# The sweep: 2 prompts x 2 seeds x (none + 2 settings) = 12 runs, 4 groups.
printf 'pa\ta red circle moving left\npb\ta blue square moving up\n' > "$work/prompts.txt"
cat > "$work/sweep.ini" <<INI
[sweep]
prompts = $work/prompts.txt
weights = random:1
steps = 4
seeds = 0,1
out = $work/shared
[strategy static]
interval = 2
warmup = 1
[strategy easycache]
thresh = 5
warmup = 1
INI
job=$(CACHEBENCH="$cachebench" OMP_NUM_THREADS=1 sbatch --parsable --array=0-1 --gres=none --cpus-per-task=1 \
      --time=10 --output="$work/logs/%x-%A_%a.out" --chdir="$repo" scripts/slurm/sweep.sbatch "$work/sweep.ini")
job=${job%%;*}
echo "test-slurm: submitted job array $job (2 tasks)"
# Meanwhile the reference: the same sweep by one process.
OMP_NUM_THREADS=1 "$cachebench" sweep --config "$work/sweep.ini" --out "$work/one" --quiet > "$work/one.log" 2>&1 \
    || fail "the one-process sweep failed: $(tail -n 3 "$work/one.log")"
start=$(date +%s)
while [ -n "$(squeue -h -j "$job" 2>/dev/null)" ]; do
    if [ $(( $(date +%s) - start )) -ge "$limit" ]; then
        scancel "$job" || true
        fail "job $job still running after ${limit}s"
    fi
    sleep 1
done
echo "test-slurm: job $job done after $(( $(date +%s) - start ))s"
for task in 0 1; do
    log="$work/logs/cachebench-sweep-${job}_$task.out"
    [ -f "$log" ] || fail "no log of task $task ($log)"
    grep -q '^runs done:' "$log" || fail "task $task did not finish its sweep: $(tail -n 5 "$log")"
    echo "test-slurm: task $task: $(grep '^runs done:' "$log")"
done

# Same run ids, same decisions and metrics: summary.tsv without its wall-clock columns, and the run files.
strip_wall() {
    awk -F'\t' 'NR == 1 { for (i = 1; i <= NF; i++) drop[i] = ($i ~ /wall|^time_s$|^cpu_s$|^load_avg$/) }
                { line = ""; for (i = 1; i <= NF; i++) if (!drop[i]) line = line $i "\t"; print line }' "$1"
}
[ -f "$work/shared/summary.tsv" ] || fail "no summary.tsv in the shared folder"
diff <(strip_wall "$work/one/summary.tsv") <(strip_wall "$work/shared/summary.tsv") \
    || fail "the array's summary differs from the one-process sweep's"
diff <(ls "$work/one/runs") <(ls "$work/shared/runs") || fail "the run files differ"
[ "$(wc -l < "$work/shared/summary.tsv")" = 13 ] || fail "summary.tsv does not have 12 runs"
"$cachebench" status "$work/shared"
echo "test-slurm: PASSED (2-task array sweep = one-process sweep, 12 runs)"
