#!/usr/bin/env bash
# Two lifemap builds on the same exports, run alternately (A, B, A, B, ...): on a machine whose
# speed drifts by ±10 % within the hour, alternating runs of the same input are the fair
# comparison of a change, where single whole runs are not.
#
#   A=/path/to/old/lifemap B=/path/to/new/lifemap RUNS=2 SELECT=person_events benches/ab.sh 100000000
#   A=... B=... STEPS="lifecycle_funnel" SELECT=lifecycle_funnel benches/ab.sh 10000000
#
# SELECT (optional) runs only that step and what it reads (`--select`); STEPS lists the steps
# whose time to print (default: the event-sized ones). Extra arguments after the size go to
# `lifemap run` (e.g. `--memory-limit 4GiB`). Without SELECT the marts of A's and B's first runs
# must be equal row for row (benches/tools/same_marts.py), or the script fails.
# Prints one line per run: wall, user and system CPU, peak RSS, and each listed step's seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${A:?A=path to the first lifemap binary}"
: "${B:?B=path to the second lifemap binary}"
# common.sh generates the exports with this binary rather than building one.
export LIFEMAP_BIN="$B"
# shellcheck source=benches/common.sh
source benches/common.sh
runs="${RUNS:-2}"
events="${1:-10000000}"
shift || true
steps="${STEPS:-stg_events repeated_event_ids event_duplicates person_events lifecycle_funnel}"
select_args=()
[ -n "${SELECT:-}" ] && select_args=(--select "$SELECT")

ensure_exports "$events"
data="$(exports_dir "$events")"
ab="$work/ab"
rm -rf "$ab"
mkdir -p "$ab"

for run in $(seq 1 "$runs"); do
  for side in A B; do
    marts="$ab/marts-$side-$run"
    log="$ab/$side-$run.log"
    LIFEMAP_LOG=lifemap=info /usr/bin/time -f "%e %U %S %M" -o "$ab/time" "${!side}" run \
      pipelines/customer_lifecycle.yaml --ds 2026-10-31 --no-report --var "exports_uri=$data" \
      --var "marts_uri=$marts" "${format_vars[@]}" "${select_args[@]}" "$@" > /dev/null 2> "$log"
    read -r wall user system kib < "$ab/time"
    line="$side run $run: wall ${wall} s, CPU ${user} + ${system} s, peak $((kib / 1024)) MiB"
    for step in $steps; do
      ms=$(grep "step ready" "$log" | grep -o "step=$step .*elapsed_ms=[0-9]*" | grep -o '[0-9]*$' || true)
      [ -n "$ms" ] && line="$line, $step $(awk -v ms="$ms" 'BEGIN { printf "%.1f", ms / 1000 }') s"
    done
    echo "$line"
  done
done

if [ -z "${SELECT:-}" ]; then
  "$(bench_python)" benches/tools/same_marts.py "$ab/marts-A-1" "$ab/marts-B-1"
fi
