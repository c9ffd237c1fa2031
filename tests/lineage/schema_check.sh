#!/usr/bin/env bash
# lifemap's OpenLineage events, validated against the OpenLineage 2-0-2 JSON schemas: a
# successful run of the bundled pipeline (START, COMPLETE, with a parent run) and a run that
# fails after publishing (START, FAIL). Run by .ci/run when the spec's schemas are at hand
# (LIFEMAP_OPENLINEAGE_SPEC, default ../shared/vendor/openlineage-spec); they are not part of
# the project.
#
#   LIFEMAP_BIN=target/debug/lifemap tests/lineage/schema_check.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

bin="${LIFEMAP_BIN:?set LIFEMAP_BIN to a lifemap binary}"
spec="${LIFEMAP_OPENLINEAGE_SPEC:-../shared/vendor/openlineage-spec}"
if [ ! -f "$spec/OpenLineage.json" ]; then
  echo "no OpenLineage schemas at $spec: lineage events not validated"
  exit 0
fi
venv="${LIFEMAP_LINEAGE_VENV:-$HOME/.cache/lifemap/lineage-venv}"
if ! "$venv/bin/python" -c 'import jsonschema, referencing, rfc3339_validator' >/dev/null 2>&1; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "jsonschema[format]==4.26.0"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export OPENLINEAGE__TRANSPORT__TYPE=file LIFEMAP_OUTBOX="$work/outbox"
export OPENLINEAGE_PARENT_ID="airflow/lifemap_customer_lifecycle.run_pipeline/01932f6e-7f4b-7a9c-8d2e-3f4a5b6c7d8e"
OPENLINEAGE__TRANSPORT__LOG_FILE_PATH="$work/success.jsonl" \
  "$bin" -q run pipelines/customer_lifecycle.yaml --ds 2026-10-31 --var "marts_uri=$work/marts" > /dev/null
# A report over its size budget fails the run after the marts are published.
OPENLINEAGE__TRANSPORT__LOG_FILE_PATH="$work/fail.jsonl" LIFEMAP_REPORT_MAX_SIZE=1KB \
  "$bin" -q run pipelines/customer_lifecycle.yaml --ds 2026-10-30 --var "marts_uri=$work/marts" > /dev/null 2>&1 \
  && { echo "the run meant to fail succeeded"; exit 1; }
"$venv/bin/python" tests/lineage/schema_check.py "$spec" "$work/success.jsonl" START COMPLETE
"$venv/bin/python" tests/lineage/schema_check.py "$spec" "$work/fail.jsonl" START FAIL
