"""Read lifemap's Delta marts with delta-rs for Python (`deltalake`), an engine lifemap does not
share code with at this level, and check them against the Parquet files each partition's
`_SUCCESS` lists: every mart, every partition, row for row; then read one table at the version a
run_results.json names (time travel across a rerun).

    python reader_check.py MARTS_DIR FIRST_RESULTS_JSON [PURGED_MART ...]

PURGED_MART: a mart with a `forget` condition, whose replaced files are deleted at once: reading it
at the earlier version must fail for want of them.
"""

import datetime
import json
import os
import pathlib
import sys

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable


def rows(table: pa.Table) -> list:
    table = table.select(sorted(c for c in table.column_names if c != "ds"))
    return sorted(map(repr, table.to_pylist()))


def listed_rows(partition: pathlib.Path) -> list:
    manifest = json.loads((partition / "_SUCCESS").read_text())
    tables = [pq.read_table(partition / f["name"]) for f in manifest["files"]]
    return rows(pa.concat_tables(tables)) if tables else []


def main(marts: pathlib.Path, first_results: pathlib.Path, purged: list) -> None:
    checked = 0
    for mart in sorted(p for p in marts.iterdir() if (p / "_delta_log").is_dir()):
        table = DeltaTable(str(mart))
        for partition in sorted(mart.glob("ds=*")):
            ds = partition.name.removeprefix("ds=")
            read = table.to_pyarrow_table(filters=[("ds", "=", datetime.date.fromisoformat(ds))])
            if rows(read) != listed_rows(partition):
                sys.exit(f"{mart.name} ds={ds}: the Delta table and _SUCCESS disagree")
            checked += 1
    if checked == 0:
        sys.exit(f"no Delta mart under {marts}")
    # The run before a rerun, read at its own version: the rows it published then.
    results = json.loads(first_results.read_text())
    ds = results["ds"]
    for mart in results["marts"]:
        version = mart["delta_version"]
        old = DeltaTable(str(marts / mart["name"]), version=version)
        day = datetime.date.fromisoformat(ds)
        if mart["name"] in purged:
            try:
                old.to_pyarrow_table(filters=[("ds", "=", day)])
            except FileNotFoundError:
                continue
            sys.exit(f"{mart['name']} at version {version}: the replaced files of a mart with `forget` are still there")
        count = old.to_pyarrow_table(filters=[("ds", "=", day)]).num_rows
        if count != mart["rows"]:
            sys.exit(f"{mart['name']} at version {version}: {count} rows, the run published {mart['rows']}")
    print(f"delta-rs for Python read {checked} partitions of lifemap's Delta marts as _SUCCESS lists them, "
          f"and {len(results['marts']) - len(purged)} marts at the versions of a run before its rerun "
          f"({len(purged)} with `forget` had their replaced files deleted, as documented)")


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3:])
    # deltalake's background threads abort the interpreter's teardown here ("terminate called
    # without an active exception"): the check is done, leave without it.
    sys.stdout.flush()
    os._exit(0)
