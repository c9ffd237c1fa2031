#!/usr/bin/env bash
# How long the bundled pipeline takes to stop after SIGTERM at each stage, and how long the next
# run takes to take over the lock of a run that was SIGKILLed (same host), on generated exports.
#
#   bash benches/signals.sh              # 1M events, 3 signals per stage
#   RUNS=5 bash benches/signals.sh 10000000
#
# A stage is reached when the run logs its marker on stderr; the signal follows at once. "sending"
# delivers to a mail server that accepts the connection and never answers. Prints a Markdown
# table: the median and largest milliseconds from the signal to the exit.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=benches/common.sh
source benches/common.sh
events="${1:-1000000}"
ensure_exports "$events"
data="$(exports_dir "$events")"
ds=2026-10-31

# A mail server that never greets.
silent_port_file="$work/silent.port"
"$python" -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(64)
open(sys.argv[1], "w").write(str(s.getsockname()[1])); time.sleep(3600)' "$silent_port_file" &
silent=$!
trap 'kill $silent 2>/dev/null || true' EXIT
while [ ! -s "$silent_port_file" ]; do sleep 0.1; done

marts="$work/signals-marts-$events"
run() {
  LIFEMAP_OUTBOX="$work/signals-outbox" "$bin" run pipelines/customer_lifecycle.yaml --ds "$ds" \
    --var "exports_uri=$data" --var "marts_uri=$marts" "${format_vars[@]}" "$@"
}
run --no-report > /dev/null 2>&1 # what a stopped run must leave intact

# stop_after MARKER [ENV...]: start a run, SIGTERM it once its log shows MARKER; prints the
# milliseconds from the signal to the exit.
stop_after() {
  local marker="$1" log="$work/signals.log"
  shift
  : > "$log"
  env "$@" LIFEMAP_OUTBOX="$work/signals-outbox" "$bin" run pipelines/customer_lifecycle.yaml --ds "$ds" \
    --var "exports_uri=$data" --var "marts_uri=$marts" "${format_vars[@]}" --resend > /dev/null 2> "$log" &
  local pid=$!
  until grep -q -- "$marker" "$log" || ! kill -0 "$pid" 2>/dev/null; do sleep 0.01; done
  local start
  start=$(date +%s%N)
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" || true
  echo $(( ($(date +%s%N) - start) / 1000000 ))
}

smtp=(LIFEMAP_REPORT_TRANSPORT=smtp LIFEMAP_SMTP_HOST=127.0.0.1 "LIFEMAP_SMTP_PORT=$(cat "$silent_port_file")"
  LIFEMAP_SMTP_TLS=none LIFEMAP_SMTP_RETRIES=0)
machine
echo "$("$bin" --version), $events events, $runs signals per stage"
echo
echo "| stage (marker the signal follows) | ms to exit, median | largest |"
echo "|---|---:|---:|"
for stage in "reading|run starting" "computing|step=stg_events" "clustering|step=persona_features" \
  "publishing|publishing" "sending|published mart=quarantine"; do
  name="${stage%%|*}" marker="${stage#*|}"
  : > "$work/signals.ms"
  for _ in $(seq "$runs"); do
    stop_after "$marker" "${smtp[@]}" >> "$work/signals.ms"
  done
  echo "| $name (\`$marker\`) | $(median < "$work/signals.ms") | $(sort -n "$work/signals.ms" | tail -1) |"
done

# The lock of a SIGKILLed run: the next run finds its process gone and takes over at once.
LIFEMAP_OUTBOX="$work/signals-outbox" "$bin" run pipelines/customer_lifecycle.yaml --ds "$ds" \
  --var "exports_uri=$data" --var "marts_uri=$marts" "${format_vars[@]}" --no-report > /dev/null 2>&1 &
victim=$!
sleep 1
kill -KILL "$victim"; wait "$victim" 2>/dev/null || true
start=$(date +%s%N)
run --no-report > /dev/null 2>&1
after_kill=$(( ($(date +%s%N) - start) / 1000000 ))
start=$(date +%s%N)
run --no-report > /dev/null 2>&1
plain=$(( ($(date +%s%N) - start) / 1000000 ))
echo
echo "a run after a SIGKILLed one (taking over its lock): $after_kill ms; a run with no lock to take: $plain ms"
