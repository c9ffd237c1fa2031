#!/usr/bin/env bash
# A 30-day backfill with kept state against 30 full rebuilds, on the same exports.
#
#   bash benches/backfill.sh [EVENTS]              # default 1000000 (one year of sample data)
#
#   incremental  `lifemap run --from 2026-10-02 --to 2026-10-31` in an empty output: the first
#                date computes the partitions it needs, every later one the partition that is new
#                to its window;
#   full         the same 30 dates as 30 runs with `--full-refresh` (each parses every partition
#                it needs, as every run did before incremental steps).
# The marts of 2026-10-31 of both must be equal row for row. Prints the wall and CPU time of both.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/common.sh
source benches/common.sh

events="${1:-1000000}"
ensure_exports "$events"
data="$(exports_dir "$events")"
bench="$work/backfill-$events"
rm -rf "$bench"
mkdir -p "$bench"
args=(--no-report --var "exports_uri=$data" --var max_event_age=3d "${format_vars[@]}")

machine
/usr/bin/time -f "%e %U %S" -o "$bench/incremental.time" "$bin" -q run pipelines/customer_lifecycle.yaml \
  --from 2026-10-02 --to 2026-10-31 --var "marts_uri=$bench/incremental" "${args[@]}" > /dev/null
/usr/bin/time -f "%e %U %S" -o "$bench/full.time" bash -c '
  bin="$1"; shift
  for day in $(seq -w 2 31); do
    "$bin" -q run pipelines/customer_lifecycle.yaml --ds "2026-10-$day" --full-refresh "$@" > /dev/null
  done' _ "$bin" --var "marts_uri=$bench/full" "${args[@]}"

"$python" benches/tools/same_marts.py "$bench/full" "$bench/incremental"
for label in incremental full; do
  read -r wall user system < "$bench/$label.time"
  echo "$label: 30 dates in ${wall} s (CPU ${user} + ${system} s)"
done
read -r inc _ < "$bench/incremental.time"
read -r full _ < "$bench/full.time"
echo "incremental / full: $(awk -v a="$inc" -v b="$full" 'BEGIN { printf "%.2f", a / b }')"
