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

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
# --benches: the feature set `cargo bench` uses too, so one release build serves both.
cargo build --release --bins --benches --quiet
bin="$CARGO_TARGET_DIR/release/lifemap"
work="${LIFEMAP_BENCH_DIR:-${TMPDIR:-/tmp}/lifemap-bench}"
runs="${RUNS:-3}"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000000 10000000)
mkdir -p "$work"

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

limit=()
if [ -n "${MEMORY_LIMIT:-}" ]; then limit=(--memory-limit "$MEMORY_LIMIT"); fi

echo "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr)"
echo "memory limit: ${MEMORY_LIMIT:-none}"
echo
echo "| events | input files (MiB) | generate (s) | run wall (s, median of $runs) | events/s | peak RSS (MiB) |"
echo "|---:|---:|---:|---:|---:|---:|"
for events in "${sizes[@]}"; do
  data="$work/exports-$events"
  if [ ! -f "$data/.complete" ]; then
    rm -rf "$data"
    /usr/bin/time -f "%e" -o "$work/generate.time" "$bin" sample-data --events "$events" --out "$data" > "$work/stats-$events.json"
    cp "$work/generate.time" "$data/.generate-seconds"
    touch "$data/.complete"
  fi
  generated=$(cat "$data/.generate-seconds")
  actual=$(sed -E 's/.*"events":([0-9]+).*/\1/' "$work/stats-$events.json")
  size=$(du -sm "$data" | cut -f1)
  : > "$work/walls"; : > "$work/rss"
  for _ in $(seq "$runs"); do
    /usr/bin/time -f "%e %M" -o "$work/run.time" "$bin" -q run pipelines/customer_lifecycle.yaml --ds 2026-10-31 \
      --var "exports_uri=$data" --var "marts_uri=$work/marts-$events" "${limit[@]}" > "$work/run.out"
    read -r wall rss < "$work/run.time"
    echo "$wall" >> "$work/walls"; echo "$rss" >> "$work/rss"
  done
  wall=$(median < "$work/walls")
  rss_mib=$(( $(sort -n "$work/rss" | tail -1) / 1024 ))
  rate=$(awk -v n="$actual" -v w="$wall" 'BEGIN { printf "%.0f", n / w }')
  echo "| $actual | $size | $generated | $wall | $rate | $rss_mib |"
done
