"""Exit 0 when two marts roots hold the same rows in every mart of ds 2026-10-31 (order aside).

    python3 benches/tools/same_marts.py MARTS_A MARTS_B

Compared in DuckDB (a multiset difference both ways), which spills: at 100M events
`customer_journey` holds tens of millions of rows, and comparing them as Python objects took more
than the machine's 24 GiB.
"""
import glob
import os
import sys

import duckdb


def marts(root: str) -> dict:
    found = {}
    for path in glob.glob(os.path.join(root, "*", "ds=2026-10-31", "*.parquet")):
        found.setdefault(os.path.relpath(path, root).split(os.sep)[0], []).append(path)
    return found


def scan(paths: list) -> str:
    # The files hold a `ds` column that Hive partitioning would also read from the path.
    files = ", ".join("'" + path.replace("'", "''") + "'" for path in sorted(paths))
    return f"read_parquet([{files}], hive_partitioning = false)"


def columns(con, paths: list) -> str:
    described = con.execute(f"DESCRIBE SELECT * FROM {scan(paths)}").fetchall()
    # Sums of floats may add up in another order on another partitioning (a cluster's).
    return ", ".join(
        f'round("{name}", 9) AS "{name}"' if kind in ("DOUBLE", "FLOAT") else f'"{name}"'
        for name, kind, *_ in described
    )


def differing_rows(con, a: list, b: list) -> int:
    select_a, select_b = columns(con, a), columns(con, b)
    if select_a != select_b:
        return -1
    one, other = f"SELECT {select_a} FROM {scan(a)}", f"SELECT {select_b} FROM {scan(b)}"
    return con.execute(
        f"SELECT COUNT(*) FROM (({one} EXCEPT ALL {other}) UNION ALL ({other} EXCEPT ALL {one}))"
    ).fetchone()[0]


def main() -> None:
    a, b = marts(sys.argv[1]), marts(sys.argv[2])
    if not a or a.keys() != b.keys():
        sys.exit(f"different marts: {sorted(a)} / {sorted(b)}")
    con = duckdb.connect()
    different = [name for name in sorted(a) if differing_rows(con, a[name], b[name]) != 0]
    if different:
        sys.exit(f"marts with different rows (or columns): {different}")
    print(f"all {len(a)} marts equal row for row", file=sys.stderr)


if __name__ == "__main__":
    main()
