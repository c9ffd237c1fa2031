"""Exit 0 when two marts roots hold the same rows in every mart of ds 2026-10-31 (order aside).

    python3 benches/tools/same_marts.py MARTS_A MARTS_B
"""
import glob
import os
import sys

import pyarrow.parquet as pq


def marts(root: str) -> dict:
    found = {}
    for path in glob.glob(os.path.join(root, "*", "ds=2026-10-31", "*.parquet")):
        found.setdefault(os.path.relpath(path, root).split(os.sep)[0], []).append(path)
    return found


def rounded(row: dict) -> dict:
    # Sums of floats may add up in another order on another partitioning (a cluster's).
    return {key: round(value, 9) if isinstance(value, float) else value for key, value in row.items()}


def rows(paths: list) -> list:
    # File by file: the files hold a `ds` column that a dataset would also read from the path.
    return sorted(
        repr(rounded(row)) for path in paths for row in pq.read_table(path, partitioning=None).to_pylist()
    )


def main() -> None:
    a, b = marts(sys.argv[1]), marts(sys.argv[2])
    if not a or a.keys() != b.keys():
        sys.exit(f"different marts: {sorted(a)} / {sorted(b)}")
    different = [name for name in sorted(a) if rows(a[name]) != rows(b[name])]
    if different:
        sys.exit(f"marts with different rows: {different}")
    print(f"all {len(a)} marts equal row for row", file=sys.stderr)


if __name__ == "__main__":
    main()
