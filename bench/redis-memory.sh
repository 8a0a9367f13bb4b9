#!/usr/bin/env bash
# How much Redis memory large jobs take: runs `conveyor dev` on RabbitMQ + PostgreSQL + Redis in a
# fresh namespace, submits --jobs `echo` jobs of about a megabyte each (16 strings of 60,000
# characters: the largest a string may be is 64 KiB), and prints how much Redis's used_memory grew.
# An echo job's result is its payload, so each snapshot holds about 2 MB. Needs scripts/services.
#   bench/redis-memory.sh [--jobs 50]
# CONVEYOR_BIN picks another build of conveyor (to compare two).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=50
[[ "${1:-}" == --jobs ]] && jobs="$2"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/conveyor/target}"
cargo build --quiet --release -p conveyor
conveyor="${CONVEYOR_BIN:-$CARGO_TARGET_DIR/release/conveyor}"
hex="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
port="${BENCH_PORT:-18095}"
log="$(mktemp)"
export CONVEYOR_JWT_SECRET=bench CONVEYOR_LOG=warn \
    CONVEYOR_BROKER_URL="amqp://guest:guest@127.0.0.1:5672/%2f" \
    CONVEYOR_DATABASE_URL="postgres://postgres@127.0.0.1:5432/test" CONVEYOR_DATABASE_SCHEMA="t_$hex" \
    CONVEYOR_CACHE_URL="redis://127.0.0.1:6379" CONVEYOR_TOPIC_PREFIX="t$hex."
"$conveyor" migrate >"$log" 2>&1
"$conveyor" dev --listen "127.0.0.1:$port" >>"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -f "$log"
    psql -q -h 127.0.0.1 -U postgres -d test -c "DROP SCHEMA t_$hex CASCADE" >/dev/null 2>&1 || true' EXIT
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
    sleep 0.2
done
used() { redis-cli info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p'; }
token="$("$conveyor" token --scope 'jobs:write jobs:read')"
before="$(used)"
python3 - "$port" "$token" "$jobs" <<'PY'
import json, sys, urllib.request
port, token, jobs = sys.argv[1], sys.argv[2], int(sys.argv[3])
body = json.dumps({"type": "echo", "payload": {"blob": ["x" * 60_000] * 16}}).encode()
headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
for _ in range(jobs):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/jobs", data=body, headers=headers)
    urllib.request.urlopen(request).read()
PY
# Every job has ended and been written by then.
sleep 5
echo "Redis used_memory grew by $((($(used) - before) / 1024 / 1024)) MiB for $jobs jobs of about 1 MB"
