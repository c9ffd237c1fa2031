#!/usr/bin/env bash
# examples/airflow/lifemap_dag.py in a real Airflow (3.3.2, from PyPI, in a cached venv) against
# the real lifemap binary, with `airflow dags test`: success (the summary in XCom), no input
# (skipped), a broken pipeline (failed after one try), a storage outage (retried, then failed).
# Run by .ci/run.
#
#   LIFEMAP_BIN=target/debug/lifemap tests/airflow/dag_check.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
repo="$(pwd)"

bin="$(realpath "${LIFEMAP_BIN:?set LIFEMAP_BIN to a lifemap binary}")"
venv="${LIFEMAP_AIRFLOW_VENV:-$HOME/.cache/lifemap/airflow-venv}"
if ! "$venv/bin/airflow" version 2>/dev/null | grep -qx '3.3.2'; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "apache-airflow==3.3.2"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export AIRFLOW_HOME="$work/airflow" AIRFLOW__CORE__LOAD_EXAMPLES=False
mkdir -p "$AIRFLOW_HOME/dags"
cp examples/airflow/lifemap_dag.py "$AIRFLOW_HOME/dags/"
"$venv/bin/airflow" db migrate > "$work/migrate.log" 2>&1 || { tail -n 40 "$work/migrate.log"; exit 1; }

export LIFEMAP_BIN="$bin" LIFEMAP_PROJECT="$repo" LIFEMAP_OUTBOX="$work/outbox" LIFEMAP_RETRIES=2 LIFEMAP_RETRY_DELAY=1
# dags_test DS [ENV=VALUE...]: one DAG run for DS; its log is kept for the check.
dags_test() {
  local ds="$1"
  shift
  env "$@" "$venv/bin/airflow" dags test lifemap_customer_lifecycle "$ds" > "$work/dag-$ds.log" 2>&1 || true
}
dags_test 2026-10-31 LIFEMAP_RUN_ARGS="--var marts_uri=$work/marts"
dags_test 2026-12-01 LIFEMAP_RUN_ARGS="--var marts_uri=$work/marts"
printf 'name: broken\nsteps: []\nmarts: {}\nunknown_key: 1\n' > "$work/broken.yaml"
dags_test 2026-10-30 LIFEMAP_PIPELINE="$work/broken.yaml"
# Storage that refuses every connection: exit 75, retried.
dags_test 2026-10-29 LIFEMAP_RUN_ARGS="--var marts_uri=s3://nowhere/marts" AWS_ENDPOINT=http://127.0.0.1:9 \
  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_ALLOW_HTTP=true AWS_REGION=us-east-1

if ! "$venv/bin/python" tests/airflow/dag_check.py "$AIRFLOW_HOME/airflow.db"; then
  for log in "$work"/dag-*.log; do echo "== $log"; tail -n 30 "$log"; done
  exit 1
fi
