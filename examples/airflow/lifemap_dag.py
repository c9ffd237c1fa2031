"""A daily Airflow DAG that runs lifemap's bundled customer lifecycle pipeline for {{ ds }}.

lifemap's exit codes decide what Airflow does (docs/operations.md, "Exit codes"):

    0        success: the JSON summary (the last stdout line) is the task's XCom value
    99       no input for this ds: the task is skipped
    75, 130  temporary failure, or stopped by a signal: retried (reruns are idempotent)
    1, 2, 3  the run failed, a configuration error, a data-quality failure: failed at once, no
             retry (retrying cannot help; the summary says why)

BashOperator retries every non-zero exit, so the task is a small Python wrapper instead. Set
where lifemap is and what it reads with environment variables (or edit the defaults):

    LIFEMAP_BIN        the lifemap binary (default: lifemap on PATH)
    LIFEMAP_PROJECT    the folder holding pipelines/, sql/ and report-templates/
    LIFEMAP_PIPELINE   the pipeline file, relative to LIFEMAP_PROJECT
    LIFEMAP_RUN_ARGS   extra arguments, e.g. "--var exports_uri=s3://acme/exports --var marts_uri=s3://acme/marts"
    LIFEMAP_RETRIES, LIFEMAP_RETRY_DELAY   retries of exit 75/130 (default 3) and seconds between them (300)

Lineage: OPENLINEAGE_URL (and friends) in the worker's environment reach lifemap; with the
OpenLineage provider installed, the task passes its own run as lifemap's parent run.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from datetime import datetime, timedelta

from airflow.sdk import dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

RETRIED = {75, 130}
NOTHING_TO_DO = 99


def lifemap_command(ds: str) -> list[str]:
    pipeline = os.environ.get("LIFEMAP_PIPELINE", "pipelines/customer_lifecycle.yaml")
    extra = shlex.split(os.environ.get("LIFEMAP_RUN_ARGS", ""))
    return [os.environ.get("LIFEMAP_BIN", "lifemap"), "--log-format", "json", "run", pipeline, "--ds", ds, *extra]


def lineage_env() -> dict:
    """OPENLINEAGE_PARENT_ID for lifemap's lineage events: this task's run, as the OpenLineage
    provider names it (when apache-airflow-providers-openlineage is installed and configured)."""
    try:
        from airflow.providers.openlineage.plugins.macros import lineage_parent_id, lineage_root_parent_id
    except ImportError:
        return {}
    ti = get_current_context()["ti"]
    return {"OPENLINEAGE_PARENT_ID": lineage_parent_id(ti), "OPENLINEAGE_ROOT_PARENT_ID": lineage_root_parent_id(ti)}


def summary_of(stdout: str) -> dict:
    """The JSON summary lifemap prints last, whatever the exit."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        return {}
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        return {}


@dag(
    dag_id="lifemap_customer_lifecycle",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": int(os.environ.get("LIFEMAP_RETRIES", "3")),
        "retry_delay": timedelta(seconds=float(os.environ.get("LIFEMAP_RETRY_DELAY", "300"))),
    },
    tags=["lifemap"],
)
def lifemap_customer_lifecycle():
    @task(task_id="run_pipeline", multiple_outputs=False)
    def run_pipeline(ds: str | None = None) -> dict:
        command = lifemap_command(ds)
        print("running:", shlex.join(command))
        # stderr (JSON logs) goes to the task log as it comes; stdout ends with the summary.
        done = subprocess.run(
            command,
            cwd=os.environ.get("LIFEMAP_PROJECT") or None,
            env={**os.environ, **lineage_env()},
            stdout=subprocess.PIPE,
            text=True,
        )
        print(done.stdout)
        summary = summary_of(done.stdout)
        code = done.returncode
        why = summary.get("error") or f"exit code {code}"
        if code == 0:
            return summary
        if code == NOTHING_TO_DO:
            raise AirflowSkipException(f"no input for {ds}: {why}")
        if code in RETRIED:
            # A plain exception: Airflow retries it up to `retries` times.
            raise RuntimeError(f"lifemap exited {code} (temporary; retried): {why}")
        raise AirflowFailException(f"lifemap exited {code} (not retried): {why}")

    run_pipeline()


lifemap_customer_lifecycle()
