#!/usr/bin/env bash
# The bundled pipeline's marts as Delta tables, read by another Delta reader (delta-rs for Python)
# and checked against lifemap's own manifests. Run by .ci/run; needs python3 and the registry.
#
#   LIFEMAP_BIN=target/debug/lifemap tests/delta/reader_check.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

bin="${LIFEMAP_BIN:?set LIFEMAP_BIN to a lifemap binary}"
venv="${LIFEMAP_DELTA_VENV:-$HOME/.cache/lifemap/delta-venv}"
if ! "$venv/bin/python" -c 'import deltalake, pyarrow' >/dev/null 2>&1; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q deltalake==1.6.6 pyarrow==26.0.1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
run() {
  LIFEMAP_MARTS_FORMAT=delta "$bin" -q run pipelines/customer_lifecycle.yaml --ds "$1" \
    --var "marts_uri=$work/marts" > /dev/null
}
export LIFEMAP_OUTBOX="$work/outbox"
run 2026-10-30
run 2026-10-31
cp "$work/marts/_runs/ds=2026-10-31/run_results.json" "$work/first.json"
run 2026-10-31 # a rerun: new versions of that partition
# customer_journey and quarantine have a `forget` condition: no time travel to replaced files.
"$venv/bin/python" tests/delta/reader_check.py "$work/marts" "$work/first.json" customer_journey quarantine
