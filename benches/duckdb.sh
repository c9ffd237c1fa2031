#!/usr/bin/env bash
# lifemap against DuckDB: the same generated exports, the same marts, the same machine.
#
#   benches/duckdb.sh                        # 1M and 10M events, 3 timed runs of each engine
#   RUNS=5 benches/duckdb.sh 100000000       # other sizes and run counts
#   MEMORY_LIMIT=4GiB benches/duckdb.sh ...  # both engines under a memory limit
#   CHECK_ONLY=1 benches/duckdb.sh 1000000   # correctness only, no timing (what .ci/run does)
#   EVENTS_FORMAT=parquet benches/duckdb.sh  # events exported as Parquet instead of NDJSON.gz
#
# For each size: generate the exports once (`lifemap sample-data --events N`), run each engine
# once and compare every mart DuckDB computes with lifemap's, row for row (the script stops if
# they differ), then run each engine until it has RUNS timed runs, alternating. DuckDB runs
# benches/duckdb/customer_lifecycle.sql from Python (benches/tools/duckdb_marts.py) and writes
# its marts to Parquet too. Prints a Markdown table: medians of wall and CPU (user + system)
# seconds, the largest peak RSS, events per second of the median wall time, and lifemap / DuckDB.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=benches/common.sh
source benches/common.sh
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000000 10000000)
ds=2026-10-31

limit=()
if [ -n "${MEMORY_LIMIT:-}" ]; then limit=(--memory-limit "$MEMORY_LIMIT"); fi

# timed LOG COMMAND...: one run, its "wall cpu peak_rss_kib" appended to LOG.
timed() {
  local log="$1"
  shift
  /usr/bin/time -f "%e %U %S %M" -o "$work/one.time" "$@" > /dev/null
  awk '{ printf "%s %.2f %s\n", $1, $2 + $3, $4 }' "$work/one.time" >> "$log"
}
column_median() { awk -v c="$1" '{ print $c }' "$2" | median; }

machine
echo "DuckDB $("$python" -c 'import duckdb; print(duckdb.__version__)'), $("$bin" --version)," \
  "memory limit: ${MEMORY_LIMIT:-none}, events: $events_format"
if [ -z "${CHECK_ONLY:-}" ]; then
  echo
  echo "| events | engine | wall (s, median of $runs) | CPU (s) | peak RSS (MiB) | events/s | wall lifemap / DuckDB |"
  echo "|---:|---|---:|---:|---:|---:|---:|"
fi
for events in "${sizes[@]}"; do
  data="$(exports_dir "$events")"
  ensure_exports "$events"
  actual=$(sed -E 's/.*"events":([0-9]+).*/\1/' "$(stats_file "$events")")

  lifemap=("$bin" -q run pipelines/customer_lifecycle.yaml --ds "$ds" --var "exports_uri=$data"
    --var "marts_uri=$work/duckdb-bench-lifemap-$events" "${format_vars[@]}" "${limit[@]}")
  duckdb=("$python" benches/tools/duckdb_marts.py run "$data" "$work/duckdb-bench-duckdb-$events" --ds "$ds"
    --events-format "$events_format" "${limit[@]}")

  # The first run of each engine is timed too, and checked before any other.
  : > "$work/lifemap.runs"
  : > "$work/duckdb.runs"
  timed "$work/lifemap.runs" "${lifemap[@]}"
  timed "$work/duckdb.runs" "${duckdb[@]}"
  "$python" benches/tools/duckdb_marts.py compare "$work/duckdb-bench-duckdb-$events" "$work/duckdb-bench-lifemap-$events" --ds "$ds" 2> "$work/compare.log" \
    || { cat "$work/compare.log" >&2; exit 1; }
  if [ -n "${CHECK_ONLY:-}" ]; then
    echo "$actual events: every mart DuckDB computes equals lifemap's ($(wc -l < "$work/compare.log") marts)"
    continue
  fi

  for _ in $(seq 2 "$runs"); do
    timed "$work/lifemap.runs" "${lifemap[@]}"
    timed "$work/duckdb.runs" "${duckdb[@]}"
  done
  lifemap_wall=$(column_median 1 "$work/lifemap.runs")
  duckdb_wall=$(column_median 1 "$work/duckdb.runs")
  for engine in lifemap duckdb; do
    log="$work/$engine.runs"
    wall=$(column_median 1 "$log")
    cpu=$(column_median 2 "$log")
    rss_mib=$(( $(awk '{ print $3 }' "$log" | sort -n | tail -1) / 1024 ))
    rate=$(awk -v n="$actual" -v w="$wall" 'BEGIN { printf "%.0f", n / w }')
    if [ "$engine" = lifemap ]; then
      name=lifemap
      ratio=$(awk -v a="$lifemap_wall" -v b="$duckdb_wall" 'BEGIN { printf "**%.2f**", a / b }')
    else
      name=DuckDB
      ratio=""
    fi
    echo "| $actual | $name | $wall | $cpu | $rss_mib | $rate | $ratio |"
  done
done
