#!/usr/bin/env bash
# Reading from S3 against reading locally: the bundled pipeline on the same generated exports,
# from local files and from a Garage server on loopback (marts written locally in both, so the
# difference is the reading), runs alternating.
#
#   benches/s3.sh                      # 1M events, 3 runs of each
#   RUNS=5 benches/s3.sh 10000000
#
# Garage is a release build made once in ~/.cache/lifemap/garage-release (about 25 minutes on 2
# cores; GARAGE=/path/to/garage to use another): the debug build .ci/run installs for the tests
# spends about 3 ms of CPU per request, a third of a 1M-event run's CPU. Python packages come from
# benches/requirements.txt. Exports are generated as by benches/lifecycle.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=benches/common.sh
source benches/common.sh
events="${1:-1000000}"
data="$(exports_dir "$events")"
ensure_exports "$events"

garage="${GARAGE:-$HOME/.cache/lifemap/garage-release/bin/garage}"
if [ ! -x "$garage" ]; then
  echo "building Garage 2.5.0 (release) into ~/.cache/lifemap/garage-release, once" >&2
  cargo install garage --locked --version 2.5.0 --root "$HOME/.cache/lifemap/garage-release" >&2
fi
PATH="$(dirname "$garage"):$PATH"

state="$(mktemp -d)"
trap 'tests/garage.sh stop "$state" >/dev/null 2>&1 || true; rm -rf "$state"' EXIT
# Garage's layout is sized for tests; the exports fit easily below a gigabyte at 10M events.
# shellcheck disable=SC1090
source <(tests/garage.sh start "$state" 2>/dev/null)
export AWS_ACCESS_KEY_ID="$LIFEMAP_TEST_S3_KEY_ID" AWS_SECRET_ACCESS_KEY="$LIFEMAP_TEST_S3_SECRET"
export AWS_ENDPOINT="$LIFEMAP_TEST_S3_ENDPOINT" AWS_REGION="$LIFEMAP_TEST_S3_REGION" AWS_ALLOW_HTTP=true
"$python" benches/tools/upload.py "$data" "s3://$LIFEMAP_TEST_S3_BUCKET/exports"

run() { # where exports_uri marts
  /usr/bin/time -f "%e %U %M" -o "$work/s3bench.time" "$bin" -q run pipelines/customer_lifecycle.yaml \
    --ds 2026-10-31 --no-report --var "exports_uri=$2" --var "marts_uri=$3" "${format_vars[@]}" > /dev/null
  cat "$work/s3bench.time" >> "$work/s3bench-$1"
}
: > "$work/s3bench-local"; : > "$work/s3bench-s3"
for _ in $(seq "$runs"); do
  run local "$data" "$work/s3bench-marts-local"
  run s3 "s3://$LIFEMAP_TEST_S3_BUCKET/exports" "$work/s3bench-marts-s3"
done
"$python" benches/tools/same_marts.py "$work/s3bench-marts-local" "$work/s3bench-marts-s3"

echo "$(machine); $events events ($events_format), $(du -sm "$data" | cut -f1) MiB of exports; $("$garage" --version 2>/dev/null | head -1)"
echo
echo "| exports read from | wall (s, median of $runs) | user CPU (s) | peak RSS (MiB) |"
echo "|---|---:|---:|---:|"
for where in local s3; do
  wall=$(cut -d' ' -f1 "$work/s3bench-$where" | median)
  user=$(cut -d' ' -f2 "$work/s3bench-$where" | median)
  rss=$(( $(cut -d' ' -f3 "$work/s3bench-$where" | sort -n | tail -1) / 1024 ))
  echo "| $where | $wall | $user | $rss |"
  eval "wall_$where=$wall"
done
echo
awk -v s="$wall_s3" -v l="$wall_local" 'BEGIN { printf "S3 / local wall time: %.2f\n", s / l }'
