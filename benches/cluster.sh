#!/usr/bin/env bash
# The bundled pipeline on a Ballista cluster on this machine against the local engine: the
# overhead of distribution (shuffles over loopback, materialised steps written as Parquet and read
# back), not a speed-up — every process shares the same cores.
#
#   benches/cluster.sh 10000000               # local, 1 executor, 2 executors; 1 run each
#   EXECUTORS="1" RUNS=3 benches/cluster.sh 1000000
#
# Exports and marts are local folders, which every process of a one-machine cluster reads alike.
# Prints a Markdown table: wall time (median of the runs), peak RSS of the client and of the
# largest executor, and the ratio to the local engine; checks that every mart equals the local
# run's before printing.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=benches/common.sh
source benches/common.sh
runs="${RUNS:-1}"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10000000)
read -r -a executor_counts <<< "${EXECUTORS:-1 2}"

pids=()
executor_pids=()
# The largest peak RSS among the running executors, in MiB (the kernel's high-water mark).
executors_peak_rss() {
  local peak=0 kib
  for pid in "${executor_pids[@]}"; do
    kib=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
    [ "${kib:-0}" -gt "$peak" ] && peak="$kib"
  done
  echo $(( peak / 1024 ))
}
stop_cluster() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
  executor_pids=()
}
trap stop_cluster EXIT

wait_port() {
  for _ in $(seq 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "nothing listens on port $1" >&2
  exit 1
}

# Start a scheduler on port 50150 and $1 executors, each running as many tasks at once as there
# are cores divided among them, and a `--memory-limit` of 70 % of the machine's memory (what a
# local run takes by default) divided among them. Left to Ballista's default, two executors on
# one host would each take a pool of 70 % of all of it.
start_cluster() {
  local executors="$1" tasks memory
  tasks=$(( $(nproc) / executors )); [ "$tasks" -ge 1 ] || tasks=1
  memory=$(( $(awk '/MemTotal/ { print $2 }' /proc/meminfo) * 1024 / 100 * 70 / executors ))
  "$bin" -q scheduler --bind 127.0.0.1 --port 50150 > "$work/scheduler.log" 2>&1 &
  pids+=($!)
  wait_port 50150
  for i in $(seq "$executors"); do
    "$bin" -q executor --scheduler 127.0.0.1:50150 --bind 127.0.0.1 --external-host 127.0.0.1 \
      --port $((50150 + 2 * i)) --grpc-port $((50151 + 2 * i)) --concurrent-tasks "$tasks" \
      --work-dir "$work/executor-$i" --memory-limit "$memory" > "$work/executor-$i.log" 2>&1 &
    pids+=($!); executor_pids+=($!)
    wait_port $((50150 + 2 * i))
  done
}

# Run the pipeline $runs times with extra arguments "$@"; prints "median_wall peak_rss_mib".
timed_runs() {
  local marts="$1"; shift
  : > "$work/walls"; : > "$work/rss"
  for _ in $(seq "$runs"); do
    # Inside $(...) `set -e` does not hold: a failed run must stop the script, not print blanks.
    /usr/bin/time -f "%e %M" -o "$work/run.time" "$bin" -q run pipelines/customer_lifecycle.yaml --ds 2026-10-31 \
      --no-report --var "exports_uri=$data" --var "marts_uri=$marts" "${format_vars[@]}" "$@" > "$work/run.out" \
      || { echo "the run failed: $(tail -1 "$work/run.out") ($work/run.time: $(head -1 "$work/run.time"))" >&2; return 1; }
    read -r wall rss < "$work/run.time"
    echo "$wall" >> "$work/walls"; echo "$rss" >> "$work/rss"
  done
  echo "$(median < "$work/walls") $(( $(sort -n "$work/rss" | tail -1) / 1024 ))"
}

machine
echo
echo "| events | engine | wall (s, median of $runs) | client peak RSS (MiB) | largest executor peak RSS (MiB) | wall / local |"
echo "|---:|---|---:|---:|---:|---:|"
for events in "${sizes[@]}"; do
  data="$(exports_dir "$events")"
  ensure_exports "$events"
  local_result="$(timed_runs "$work/cluster-marts-local-$events")"
  read -r local_wall local_rss <<< "$local_result"
  echo "| $events | local | $local_wall | $local_rss | – | 1.00 |"
  for executors in "${executor_counts[@]}"; do
    start_cluster "$executors"
    marts="$work/cluster-marts-$executors-$events"
    result="$(timed_runs "$marts" --engine df://127.0.0.1:50150)"
    read -r wall rss <<< "$result"
    executor_rss="$(executors_peak_rss)"
    stop_cluster
    "$python" benches/tools/same_marts.py "$work/cluster-marts-local-$events" "$marts"
    ratio=$(awk -v a="$wall" -v b="$local_wall" 'BEGIN { printf "%.2f", a / b }')
    echo "| $events | Ballista, $executors executor(s) | $wall | $rss | $executor_rss | $ratio |"
  done
done
