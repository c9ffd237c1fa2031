#!/usr/bin/env bash
# How well the personas find the behaviours the sample generator planted.
#
#   benches/personas.sh                  # 20,000 customers
#   benches/personas.sh 100000 5000      # other sizes
#
# For each size: `lifemap sample-data --customers N --archetypes FILE` writes exports and every
# customer's archetype (loyal, bargain hunter, one-time, browser, lapsed, store-only); the bundled
# pipeline runs on them; benches/tools/persona_scores.py prints the k the silhouette search chose,
# every silhouette tried, and the adjusted Rand index of the buyers' personas against their
# archetypes (1 = the same partition, 0 = no better than chance).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=benches/common.sh
source benches/common.sh
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(20000)
ds=2026-10-31

machine
echo "$("$bin" --version)"
echo
echo "| customers | buyers scored | k chosen | silhouettes (k: score) | adjusted Rand vs archetypes |"
echo "|---:|---:|---:|---|---:|"
for customers in "${sizes[@]}"; do
  data="$work/personas-exports-$customers"
  marts="$work/personas-marts-$customers"
  rm -rf "$data" "$marts"
  "$bin" sample-data --customers "$customers" --out "$data" --archetypes "$data.archetypes.csv" > /dev/null
  "$bin" -q run pipelines/customer_lifecycle.yaml --ds "$ds" --no-report \
    --var "exports_uri=$data" --var "marts_uri=$marts" > /dev/null
  "$python" benches/tools/persona_scores.py "$data.archetypes.csv" "$marts" --ds "$ds" --customers "$customers"
done
