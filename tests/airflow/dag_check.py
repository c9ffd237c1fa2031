"""What Airflow recorded for the DAG runs tests/airflow/dag_check.sh made: each task instance's
state and number of tries, and the XCom of the successful run.

    python dag_check.py AIRFLOW_DB
"""

import json
import sqlite3
import sys

EXPECTED = {
    # logical date: (state, tries)
    "2026-10-31": ("success", 1),  # the summary goes to XCom
    "2026-12-01": ("skipped", 1),  # exit 99: no input for the ds
    "2026-10-30": ("failed", 1),  # exit 2: a broken pipeline is not retried
    "2026-10-29": ("failed", 3),  # exit 75: retried twice (LIFEMAP_RETRIES=2), then failed
}


def main(path: str) -> None:
    db = sqlite3.connect(path)
    rows = db.execute(
        "SELECT substr(dr.logical_date, 1, 10), ti.state, ti.try_number FROM task_instance ti "
        "JOIN dag_run dr ON dr.run_id = ti.run_id AND dr.dag_id = ti.dag_id "
        "WHERE ti.dag_id = 'lifemap_customer_lifecycle' AND ti.task_id = 'run_pipeline'"
    ).fetchall()
    found = {ds: (state, tries) for ds, state, tries in rows}
    problems = [f"{ds}: expected {want}, Airflow recorded {found.get(ds)}" for ds, want in EXPECTED.items()
                if found.get(ds) != want]
    (value,) = db.execute(
        "SELECT x.value FROM xcom x JOIN dag_run dr ON dr.id = x.dag_run_id "
        "WHERE x.task_id = 'run_pipeline' AND x.key = 'return_value' AND substr(dr.logical_date, 1, 10) = '2026-10-31'"
    ).fetchone() or (None,)
    summary = json.loads(value) if value else {}
    if isinstance(summary, str):
        summary = json.loads(summary)
    if summary.get("status") != "success" or summary.get("exit_code") != 0 or summary.get("ds") != "2026-10-31":
        problems.append(f"the XCom of 2026-10-31 is not lifemap's summary: {value}")
    if problems:
        sys.exit("\n".join(problems))
    print("Airflow 3.3.2 ran the example DAG: success with the summary in XCom, no input skipped, "
          "a broken pipeline failed after one try, a storage outage retried twice then failed")


if __name__ == "__main__":
    main(sys.argv[1])
