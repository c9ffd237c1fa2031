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

# Generated exports of about $1 events in $work/exports-$1 (made once; the generator's seconds
# and stats are kept beside them).
ensure_exports() {
  local events="$1" data="$work/exports-$1"
  if [ ! -f "$data/.complete" ]; then
    rm -rf "$data"
    /usr/bin/time -f "%e" -o "$work/generate.time" "$bin" sample-data --events "$events" --out "$data" > "$work/stats-$events.json"
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
