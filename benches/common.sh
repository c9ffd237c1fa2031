# Shared by the benchmark scripts (sourced from the repository root): a release build, where
# benchmark data lives, and generated exports that are made once per size and then reused.

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
# --benches: the feature set `cargo bench` uses too, so one release build serves both.
cargo build --release --bins --benches --quiet
bin="$CARGO_TARGET_DIR/release/lifemap"
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
