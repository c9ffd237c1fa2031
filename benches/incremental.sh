#!/usr/bin/env bash
# The daily run with kept state against a full rebuild of the same day, on the same exports.
#
#   bash benches/incremental.sh [EVENTS]          # default 10000000 (one year of sample data)
#
# For each of RUNS rounds:
#   full         a run of ds 2026-10-31 in an output with nothing kept (what every run cost before
#                incremental steps, plus writing the kept state);
#   incremental  a run of ds 2026-10-31 in an output holding the state a run of 2026-10-30 left,
#                made while the partitions from dt=2026-10-31 on had not yet arrived (they arrive
#                before the timed run, as a new day's exports do).
# Then the marts of both must be equal row for row (benches/tools/same_marts.py), or the script
# fails. Prints wall, CPU and peak RSS per run, the medians, and incremental / full.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/common.sh
source benches/common.sh

events="${1:-10000000}"
ensure_exports "$events"
data="$(exports_dir "$events")"
bench="$work/incremental-$events"
rm -rf "$bench"
mkdir -p "$bench/aside"

# One timed run: $1 label, $2 marts folder, $3 ds; appends "wall cpu kib" to $bench/$1.runs.
timed_run() {
  local label="$1" marts="$2" ds="$3"
  LIFEMAP_LOG=lifemap=info /usr/bin/time -f "%e %U %S %M" -o "$bench/time" "$bin" run \
    pipelines/customer_lifecycle.yaml --ds "$ds" --no-report --var "exports_uri=$data" \
    --var "marts_uri=$marts" "${format_vars[@]}" > /dev/null 2> "$bench/$label.log"
  local wall user system kib
  read -r wall user system kib < "$bench/time"
  echo "$wall $(awk -v u="$user" -v s="$system" 'BEGIN { print u + s }') $kib" >> "$bench/$label.runs"
  echo "$label: wall ${wall} s, CPU ${user} + ${system} s, peak $((kib / 1024)) MiB"
}

late_days=(dt=2026-10-31 dt=2026-11-01 dt=2026-11-02)
put_aside() { for day in "${late_days[@]}"; do [ -d "$data/events/$day" ] && mv "$data/events/$day" "$bench/aside/"; done; true; }
bring_back() { for day in "${late_days[@]}"; do [ -d "$bench/aside/$day" ] && mv "$bench/aside/$day" "$data/events/"; done; true; }
trap bring_back EXIT

machine
for run in $(seq 1 "$runs"); do
  rm -rf "$bench/full" "$bench/inc"
  timed_run full "$bench/full" 2026-10-31
  # The state of the day before, kept while the new day's partitions had not arrived.
  put_aside
  "$bin" -q run pipelines/customer_lifecycle.yaml --ds 2026-10-30 --no-report --var "exports_uri=$data" \
    --var "marts_uri=$bench/inc" --var max_event_age=3d "${format_vars[@]}" > /dev/null
  bring_back
  timed_run incremental "$bench/inc" 2026-10-31
  "$python" benches/tools/step_times.py "$bench/inc/_runs/ds=2026-10-31/run_results.json"
done

"$python" benches/tools/same_marts.py "$bench/full" "$bench/inc"

summary() {
  local label="$1"
  local wall cpu kib
  wall=$(cut -d' ' -f1 "$bench/$label.runs" | median)
  cpu=$(cut -d' ' -f2 "$bench/$label.runs" | median)
  kib=$(cut -d' ' -f3 "$bench/$label.runs" | sort -n | tail -1)
  echo "$label $wall $cpu $kib"
}
read -r _ full_wall full_cpu full_kib < <(summary full)
read -r _ inc_wall inc_cpu inc_kib < <(summary incremental)
echo "median of $runs: full ${full_wall} s (CPU ${full_cpu} s, peak $((full_kib / 1024)) MiB);" \
  "incremental ${inc_wall} s (CPU ${inc_cpu} s, peak $((inc_kib / 1024)) MiB);" \
  "incremental / full: wall $(awk -v a="$inc_wall" -v b="$full_wall" 'BEGIN { printf "%.2f", a / b }')," \
  "peak RSS $(awk -v a="$inc_kib" -v b="$full_kib" 'BEGIN { printf "%.2f", a / b }')"
