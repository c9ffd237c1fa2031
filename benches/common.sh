# Shared by the benchmark scripts (sourced from the repository root): a release build, where
# benchmark data lives, and generated exports that are made once per size and then reused.

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
if [ -n "${LIFEMAP_BIN:-}" ]; then
  # A binary built elsewhere (CI's correctness check uses the test build's).
  bin="$LIFEMAP_BIN"
else
  # --benches: the feature set `cargo bench` uses too, so one release build serves both.
  cargo build --release --bins --benches --quiet
  bin="$CARGO_TARGET_DIR/release/lifemap"
fi
work="${LIFEMAP_BENCH_DIR:-${TMPDIR:-/tmp}/lifemap-bench}"
runs="${RUNS:-3}"
mkdir -p "$work"

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

machine() {
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr)"
}

# EVENTS_FORMAT=parquet: the event files are Parquet (`sample-data --events-format parquet`).
events_format="${EVENTS_FORMAT:-ndjson-gz}"
# format_vars: what the bundled pipeline is told about them.
case "$events_format" in
  ndjson-gz) exports_suffix="" format_vars=() ;;
  parquet) exports_suffix="-parquet" format_vars=(--var events_format=parquet) ;;
  *) echo "EVENTS_FORMAT is ndjson-gz or parquet, not $events_format" >&2; exit 2 ;;
esac

# Generated exports of about $1 events in $work/exports-$1 (-parquet-$1 for Parquet events; made
# once; the generator's seconds and stats are kept beside them).
exports_dir() { echo "$work/exports$exports_suffix-$1"; }
# The generator's stats of the exports of $1 events, as JSON.
stats_file() { echo "$work/stats$exports_suffix-$1.json"; }
ensure_exports() {
  local events="$1" data
  data="$(exports_dir "$1")"
  if [ ! -f "$data/.complete" ]; then
    rm -rf "$data"
    /usr/bin/time -f "%e" -o "$work/generate.time" "$bin" sample-data --events "$events" --out "$data" \
      --events-format "$events_format" > "$(stats_file "$events")"
    cp "$work/generate.time" "$data/.generate-seconds"
    touch "$data/.complete"
  fi
}

# A Python with the packages of benches/requirements.txt: the system one when it has them, else a
# virtualenv made once under ~/.cache/lifemap.
bench_python() {
  local check='import duckdb, pyarrow, boto3'
  if python3 -c "$check" 2>/dev/null; then
    echo python3
    return
  fi
  local venv="${LIFEMAP_BENCH_VENV:-$HOME/.cache/lifemap/bench-venv}"
  if ! "$venv/bin/python" -c "$check" 2>/dev/null; then
    echo "installing benches/requirements.txt into $venv" >&2
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet -r benches/requirements.txt >&2
  fi
  echo "$venv/bin/python"
}
python="$(bench_python)"
