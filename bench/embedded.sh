#!/usr/bin/env bash
# Benchmarks `conveyor dev` (the embedded default) on a fresh SQLite file: starts it, runs the load
# generator against it, stops it. Extra arguments go to the load generator.
#   bench/embedded.sh --jobs 100000 --connections 64
# CONVEYOR_BIN picks another build of conveyor (to compare two).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/conveyor/target}"
cargo build --quiet --release -p conveyor -p conveyor-bench
conveyor="${CONVEYOR_BIN:-$CARGO_TARGET_DIR/release/conveyor}"
# The benchmark measures the system, not the per-tenant limits (its load is one tenant's).
export CONVEYOR_RATE_LIMIT="${CONVEYOR_RATE_LIMIT:-0}" CONVEYOR_READ_RATE_LIMIT="${CONVEYOR_READ_RATE_LIMIT:-0}" \
    CONVEYOR_MAX_INFLIGHT="${CONVEYOR_MAX_INFLIGHT:-0}" \
    CONVEYOR_TENANT_BACKLOG_AFTER="${CONVEYOR_TENANT_BACKLOG_AFTER:-0}"
data="$(mktemp -d)"
port="${BENCH_PORT:-18090}"
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data"' EXIT

CONVEYOR_LOG=warn CONVEYOR_JWT_SECRET=bench "$conveyor" dev --listen "127.0.0.1:$port" \
    --database-url "sqlite://$data/conveyor.db?mode=rwc" >"$data/log" 2>&1 &
server=$!
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
    sleep 0.1
done
# `admin` registers the pull type of --pull-workers (and opens the HTTP workers' routes).
token="$("$conveyor" token --jwt-secret bench --scope 'jobs:write jobs:read admin')"
"$CARGO_TARGET_DIR/release/conveyor-bench" --url "http://127.0.0.1:$port" --token "$token" "$@"
