"""DuckDB, the contender of benches/duckdb.sh: the bundled pipeline's marts from the same exports.

    python3 benches/tools/duckdb_marts.py run EXPORTS OUT [--ds 2026-10-31] [--timezone UTC] [--memory-limit 4GiB]
                                             [--events-format ndjson-gz|parquet]
        runs benches/duckdb/customer_lifecycle.sql and writes each mart to OUT/<mart>.parquet
    python3 benches/tools/duckdb_marts.py compare OUT LIFEMAP_MARTS [--ds 2026-10-31]
        exits 0 when every mart DuckDB computes holds the same rows as lifemap's (doubles to
        1e-9 relative), and 1 naming the mart and showing differing rows otherwise

The settings are the defaults of pipelines/customer_lifecycle.yaml; the comparison is what
catches one drifting from the other.
"""
import argparse
import datetime
import glob
import os
import string
import sys
from zoneinfo import ZoneInfo

import duckdb

SQL = os.path.join(os.path.dirname(__file__), "..", "duckdb", "customer_lifecycle.sql")

SETTINGS = {
    "awareness_events": ["ad_impression", "ad_click", "email_open", "social_engagement", "landing_page_view"],
    "consideration_events": ["product_view", "add_to_cart", "review_read", "webinar_join", "demo_request"],
    "advocacy_events": ["review_posted", "referral_sent", "social_mention"],
    "promoter_score": 9,
    "conversion_window_days": 30,
    "funnel_months": 12,
    "cohort_months": 12,
    "lifecycle_weeks": 12,
    "nps_months": 12,
    "heatmap_days": 28,
    "kpi_days": 30,
    "late_arrival_days": 2,
    "trend_weeks": 26,
    "new_customer_days": 30,
    "active_days": 90,
    "at_risk_days": 180,
}

# Each mart DuckDB computes, with the columns that identify a row.
MART_KEYS = {
    "customer_journey": ["person_id"],
    "lifecycle_funnel": ["entry_month", "breakdown", "breakdown_value", "step"],
    "cohort_retention": ["cohort_month", "period"],
    "lifecycle_status": ["week_start", "status"],
    "trend_series": ["dimension", "dimension_value", "metric", "week_start"],
    "activity_heatmap": ["day_of_week", "hour"],
    "nps_monthly": ["month"],
    "kpi_summary": ["metric"],
}
# lifemap columns DuckDB does not compute: the partition column and the k-means persona.
NOT_COMPARED = {"ds", "persona_id", "persona_name"}


def sql_text(literal: str) -> str:
    return "'" + literal.replace("'", "''") + "'"


# How each export format's events are read: the FROM clause (no mart reads `properties`).
EVENTS = {
    "ndjson-gz": (
        "read_ndjson('$exports/events/*/*', hive_partitioning = true, ignore_errors = true,\n"
        "    columns = {event_id: 'VARCHAR', occurred_at: 'VARCHAR', customer_id: 'VARCHAR', anonymous_id: 'VARCHAR',\n"
        "               event_type: 'VARCHAR', channel: 'VARCHAR'})"
    ),
    "parquet": (
        "read_parquet('$exports/events/*/*.parquet', hive_partitioning = true)"
    ),
}


def render(exports: str, ds: str, timezone: str, events_format: str = "ndjson-gz") -> str:
    day = datetime.date.fromisoformat(ds)
    as_of = (
        datetime.datetime.combine(day + datetime.timedelta(days=1), datetime.time(), ZoneInfo(timezone))
        .astimezone(datetime.timezone.utc)
        .replace(tzinfo=None)
    )
    suppressions = glob.glob(os.path.join(exports, "suppressions", "*"))
    values = {
        key: ", ".join(sql_text(v) for v in value) if isinstance(value, list) else str(value)
        for key, value in SETTINGS.items()
    }
    events_source = EVENTS[events_format]
    values.update(
        events_source=string.Template(events_source).substitute(exports=exports.replace("'", "''")),
        exports=exports.replace("'", "''"),
        ds=ds,
        as_of=as_of.isoformat(sep=" "),
        # A UTC report needs no conversion, and the time-zone conversion costs seconds at 100M events.
        local_time="ts" if timezone == "UTC" else f"(ts AT TIME ZONE 'UTC') AT TIME ZONE {sql_text(timezone)}",
        suppressions=(
            f"SELECT customer_id FROM read_csv({sql_text(exports + '/suppressions/*')}, header = true, all_varchar = true)"
            if suppressions
            else "SELECT CAST(NULL AS VARCHAR) AS customer_id WHERE false"
        ),
    )
    with open(SQL, encoding="utf-8") as f:
        return string.Template(f.read()).substitute(values)


def run(args: argparse.Namespace) -> None:
    os.makedirs(args.out, exist_ok=True)
    db = duckdb.connect()
    db.execute(f"SET temp_directory = {sql_text(os.path.join(args.out, '.spill'))}")
    if args.memory_limit:
        # lifemap's sizes are binary (GiB); DuckDB reads GiB the same way.
        db.execute(f"SET memory_limit = {sql_text(args.memory_limit)}")
    db.execute(render(args.exports, args.ds, args.timezone, args.events_format))
    for mart in MART_KEYS:
        db.execute(f"COPY {mart} TO {sql_text(os.path.join(args.out, mart + '.parquet'))} (FORMAT parquet)")


def compare(args: argparse.Namespace) -> None:
    db = duckdb.connect()
    failed = []
    for mart, keys in MART_KEYS.items():
        ours = os.path.join(args.out, mart + ".parquet")
        theirs = os.path.join(args.lifemap_marts, mart, f"ds={args.ds}", "*.parquet")
        columns = [
            (name, kind)
            for name, kind, *_ in db.execute(
                f"DESCRIBE SELECT * FROM read_parquet({sql_text(theirs)}, hive_partitioning = false)"
            ).fetchall()
            if name not in NOT_COMPARED
        ]
        names = [name for name, _ in columns]
        duck_names = [row[0] for row in db.execute(f"DESCRIBE SELECT * FROM {sql_text(ours)}").fetchall()]
        if duck_names != names:
            failed.append(mart)
            print(f"{mart}: columns differ\n  lifemap {names}\n  duckdb  {duck_names}", file=sys.stderr)
            continue

        def same(name: str, kind: str) -> str:
            if kind in ("DOUBLE", "FLOAT"):
                return (
                    f"((l.{name} IS NULL AND d.{name} IS NULL) OR "
                    f"abs(l.{name} - d.{name}) <= 1e-9 * greatest(1, abs(l.{name})))"
                )
            return f"l.{name} IS NOT DISTINCT FROM d.{name}"

        on = " AND ".join(f"l.{k} = d.{k}" for k in keys)
        equal = " AND ".join(same(name, kind) for name, kind in columns if name not in keys)
        selected = ", ".join(names)
        differing = f"""
            WITH l AS (SELECT {selected} FROM read_parquet({sql_text(theirs)}, hive_partitioning = false)),
                 d AS (SELECT {selected} FROM {sql_text(ours)})
            SELECT l.*, d.* FROM l FULL JOIN d ON {on}
            WHERE l.{keys[0]} IS NULL OR d.{keys[0]} IS NULL OR NOT ({equal or 'true'})"""
        count = db.execute(f"SELECT count(*) FROM ({differing})").fetchone()[0]
        rows = db.execute(f"SELECT count(*) FROM {sql_text(ours)}").fetchone()[0]
        if count:
            failed.append(mart)
            print(f"{mart}: {count} of {rows} rows differ (lifemap columns, then DuckDB's):", file=sys.stderr)
            for row in db.execute(f"{differing} ORDER BY ALL LIMIT 5").fetchall():
                print(f"  {row}", file=sys.stderr)
        else:
            print(f"{mart}: {rows} rows equal", file=sys.stderr)
    if failed:
        sys.exit(f"DuckDB and lifemap differ in: {', '.join(failed)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run")
    run_parser.add_argument("exports")
    run_parser.add_argument("out")
    run_parser.add_argument("--ds", default="2026-10-31")
    run_parser.add_argument("--timezone", default="UTC")
    run_parser.add_argument("--memory-limit", help="DuckDB's memory_limit, e.g. 4GiB")
    run_parser.add_argument("--events-format", choices=sorted(EVENTS), default="ndjson-gz")
    compare_parser = commands.add_parser("compare")
    compare_parser.add_argument("out")
    compare_parser.add_argument("lifemap_marts")
    compare_parser.add_argument("--ds", default="2026-10-31")
    args = parser.parse_args()
    run(args) if args.command == "run" else compare(args)


if __name__ == "__main__":
    main()
