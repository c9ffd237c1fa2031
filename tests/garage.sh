#!/usr/bin/env bash
# Start or stop a single-node Garage (a production S3-compatible store) on loopback for the S3
# test suite.
#   source <(tests/garage.sh start STATE_DIR)   # prints `export LIFEMAP_TEST_S3_...=...` lines
#   tests/garage.sh stop STATE_DIR
# Needs the `garage` binary on PATH (`cargo install garage --locked`).
set -euo pipefail

command=${1:?usage: garage.sh start|stop STATE_DIR}
state=${2:?usage: garage.sh start|stop STATE_DIR}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }

case "$command" in
start)
  mkdir -p "$state/meta" "$state/data"
  s3_port=$(free_port); rpc_port=$(free_port); admin_port=$(free_port)
  cat > "$state/garage.toml" <<TOML
metadata_dir = "$state/meta"
data_dir = "$state/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin_port"
TOML
  g() { garage -c "$state/garage.toml" "$@"; }
  RUST_LOG=warn nohup garage -c "$state/garage.toml" server > "$state/server.log" 2>&1 &
  echo $! > "$state/pid"
  for _ in $(seq 1 100); do
    if g status >/dev/null 2>&1; then break; fi
    sleep 0.2
  done
  node=$(g node id -q 2>/dev/null | cut -d@ -f1)
  g layout assign -z dc1 -c 1G "$node" >&2
  g layout apply --version 1 >&2
  g bucket create lifemap-test >&2
  key_info=$(g key create lifemap-test-key)
  key_id=$(printf '%s\n' "$key_info" | awk -F': *' '/Key ID/ {print $2; exit}' | tr -d ' ')
  secret=$(printf '%s\n' "$key_info" | awk -F': *' '/Secret key/ {print $2; exit}' | tr -d ' ')
  g bucket allow --read --write --owner lifemap-test --key lifemap-test-key >&2
  # The S3 endpoint may need a moment after the layout is applied.
  for _ in $(seq 1 50); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$s3_port") 2>/dev/null; then break; fi
    sleep 0.2
  done
  cat <<ENV
export LIFEMAP_TEST_S3_ENDPOINT=http://127.0.0.1:$s3_port
export LIFEMAP_TEST_S3_REGION=garage
export LIFEMAP_TEST_S3_BUCKET=lifemap-test
export LIFEMAP_TEST_S3_KEY_ID=$key_id
export LIFEMAP_TEST_S3_SECRET=$secret
ENV
  ;;
stop)
  if [ -f "$state/pid" ]; then kill "$(cat "$state/pid")" 2>/dev/null || true; fi
  ;;
*)
  echo "usage: garage.sh start|stop STATE_DIR" >&2
  exit 2
  ;;
esac
