#!/usr/bin/env bash
# Benchmarks Conveyor as separate processes on a real stack: 2 api + 2 worker processes on Kafka
# (or RabbitMQ) with PostgreSQL and Redis, each run in a fresh namespace. Extra arguments go to the
# load generator, which spreads its connections over both api replicas.
#   bench/stack.sh kafka --jobs 20000 --connections 64
#   bench/stack.sh amqp --jobs 20000 --connections 64
# The services must be up (scripts/services).
set -euo pipefail
cd "$(dirname "$0")/.."
stack="${1:?usage: bench/stack.sh kafka|amqp [load generator arguments]}"
shift
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/conveyor/target}"
cargo build --quiet --release -p conveyor -p conveyor-bench
conveyor="${CONVEYOR_BIN:-$CARGO_TARGET_DIR/release/conveyor}"
ns="bench$(date +%s%N)"
case "$stack" in
    kafka) broker="kafka://127.0.0.1:9092" ;;
    amqp) broker="amqp://guest:guest@127.0.0.1:5672/%2f" ;;
    *) echo "unknown stack $stack" >&2; exit 2 ;;
esac
export CONVEYOR_BROKER_URL="$broker" CONVEYOR_JWT_SECRET=bench CONVEYOR_LOG=warn \
    CONVEYOR_DATABASE_URL="postgres://postgres@127.0.0.1:5432/test" CONVEYOR_DATABASE_SCHEMA="$ns" \
    CONVEYOR_CACHE_URL="redis://127.0.0.1:6379" CONVEYOR_TOPIC_PREFIX="$ns." \
    CONVEYOR_KAFKA_PARTITIONS=4
# The benchmark measures the system, not the per-tenant limits (its load is one tenant's).
export CONVEYOR_RATE_LIMIT="${CONVEYOR_RATE_LIMIT:-0}" CONVEYOR_READ_RATE_LIMIT="${CONVEYOR_READ_RATE_LIMIT:-0}" \
    CONVEYOR_MAX_INFLIGHT="${CONVEYOR_MAX_INFLIGHT:-0}" \
    CONVEYOR_TENANT_BACKLOG_AFTER="${CONVEYOR_TENANT_BACKLOG_AFTER:-0}"
logs="$(mktemp -d)"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; psql -q -h 127.0.0.1 -U postgres -d test -c "DROP SCHEMA $ns CASCADE" >/dev/null 2>&1 || true' EXIT
"$conveyor" migrate
for port in 18091 18092; do
    "$conveyor" api --listen "127.0.0.1:$port" >"$logs/api-$port" 2>&1 & pids+=($!)
done
for port in 18093 18094; do
    "$conveyor" worker --metrics-listen "127.0.0.1:$port" >"$logs/worker-$port" 2>&1 & pids+=($!)
done
for port in 18091 18092 18093 18094; do
    for _ in $(seq 300); do
        curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
        sleep 0.1
    done
done
token="$("$conveyor" token --scope 'jobs:write jobs:read')"
"$CARGO_TARGET_DIR/release/conveyor-bench" --token "$token" \
    --url http://127.0.0.1:18091 --url http://127.0.0.1:18092 \
    --metrics-url http://127.0.0.1:18093 --metrics-url http://127.0.0.1:18094 "$@"
