#!/usr/bin/env bash
# End-to-end benchmark: the bundled customer_lifecycle pipeline on generated exports.
#
#   benches/lifecycle.sh                  # 1M and 10M events, 3 runs each
#   RUNS=5 benches/lifecycle.sh 1000000   # other sizes and run counts
#   MEMORY_LIMIT=1GiB benches/lifecycle.sh 10000000   # runs with --memory-limit
#
# Prints a Markdown table: wall time (median of the runs), events per second and peak RSS of
# `lifemap run`, after generating the data once per size with `lifemap sample-data --events N`.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=benches/common.sh
source benches/common.sh
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000000 10000000)

limit=()
if [ -n "${MEMORY_LIMIT:-}" ]; then limit=(--memory-limit "$MEMORY_LIMIT"); fi

machine
echo "memory limit: ${MEMORY_LIMIT:-none}"
echo
echo "| events | input files (MiB) | generate (s) | run wall (s, median of $runs) | events/s | peak RSS (MiB) |"
echo "|---:|---:|---:|---:|---:|---:|"
for events in "${sizes[@]}"; do
  data="$(exports_dir "$events")"
  ensure_exports "$events"
  generated=$(cat "$data/.generate-seconds")
  actual=$(sed -E 's/.*"events":([0-9]+).*/\1/' "$(stats_file "$events")")
  size=$(du -sm "$data" | cut -f1)
  : > "$work/walls"; : > "$work/rss"
  for _ in $(seq "$runs"); do
    /usr/bin/time -f "%e %M" -o "$work/run.time" "$bin" -q run pipelines/customer_lifecycle.yaml --ds 2026-10-31 \
      --var "exports_uri=$data" --var "marts_uri=$work/marts-$events" "${format_vars[@]}" "${limit[@]}" > "$work/run.out"
    read -r wall rss < "$work/run.time"
    echo "$wall" >> "$work/walls"; echo "$rss" >> "$work/rss"
  done
  wall=$(median < "$work/walls")
  rss_mib=$(( $(sort -n "$work/rss" | tail -1) / 1024 ))
  rate=$(awk -v n="$actual" -v w="$wall" 'BEGIN { printf "%.0f", n / w }')
  echo "| $actual | $size | $generated | $wall | $rate | $rss_mib |"
done
