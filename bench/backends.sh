#!/usr/bin/env bash
# Non-streamed chat through the gateway on each backend, side by side in one
# run: SQLite, one replica on PostgreSQL, and two replicas sharing one
# PostgreSQL database. For c=1 and c=64: requests/s, p50 and p99, auth and
# usage recording on. On SQLite and one replica, also with a key that has a
# budget and rate limits (counted, never reached).
#
# Every gateway is pinned to core 0 (the two replicas share it, so they have
# the CPU of one), wrk and the mock to core 1; PostgreSQL, a service of the
# machine, is not pinned. With two replicas, c=64 is two wrk of 32
# connections, one on each replica: the req/s add up, and the p50 and p99
# shown are the worse of the two. At c=1 one connection reaches one replica.
# Each PostgreSQL run gets a database of its own, dropped afterwards.
# Needs a release build and wrk.
#
#   bench/backends.sh [DURATION_SECONDS]
#   LLM_GATEWAY_BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

duration=${1:-10}
bin=${BENCH_BIN:-target/release/llm-gateway}
[[ -x "$bin" ]] || { echo "build first: scripts/build.sh --release" >&2; exit 1; }
for tool in wrk psql; do
  command -v $tool >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
admin_url=${LLM_GATEWAY_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}

source bench/common.sh

mock_port=4651 sqlite_port=4652 one_port=4653 first_port=4654 second_port=4655
unset GATEWAY_HOST GATEWAY_PORT GATEWAY_DATABASE_URL GATEWAY_MASTER_KEY GATEWAY_CONFIG
RUST_LOG=warn taskset -c 1 "$bin" mock-provider --port $mock_port >/dev/null 2>&1 &
pids+=($!)
export MOCK_URL=http://127.0.0.1:$mock_port
wait_for "$MOCK_URL/v1/models"

databases=()
drop_databases() {
  for db in "${databases[@]}"; do
    psql "$admin_url" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  done
}
trap 'cleanup; drop_databases' EXIT

# Starts a gateway on PORT with DATABASE_URL, pinned to core 0; prints its pid.
start_gateway() {
  BENCH_GATEWAY_PORT=$1 BENCH_DATABASE_URL=$2 RUST_LOG=warn taskset -c 0 \
    "$bin" serve --config bench/config.yml >/dev/null 2>>"$work/gateway.$1.err" &
  echo $!
}

# Runs wrk with C connections on URL; prints "rps p50_us p99_us".
load() {
  local url=$1 connections=$2 out line
  out=$(BENCH_KEY=$key BENCH_MODEL=openai:gpt-4o-mini taskset -c 1 \
    wrk -t1 -c"$connections" -d"${duration}s" -s bench/chat.lua "$url/v1/chat/completions")
  line=$(grep '^RESULT' <<<"$out")
  if [[ "$line" != *"errors=0"* ]]; then
    echo "errors during the run: $line" >&2
    tail -n 5 "$work"/gateway.*.err >&2
    exit 1
  fi
  sed -E 's/.*rps=([0-9]+) p50_us=([0-9]+) p99_us=([0-9]+).*/\1 \2 \3/' <<<"$line"
}

# Loads every URL at once with C connections each; prints the summed req/s
# and the worst p50 and p99.
load_all() {
  local connections=$1 url i=0 loads=()
  shift
  for url in "$@"; do
    load "$url" "$connections" >"$work/load.$i" &
    loads+=($!)
    i=$((i + 1))
  done
  for pid in "${loads[@]}"; do
    wait "$pid" || { echo "a load failed" >&2; exit 1; }
  done
  cat "$work"/load.* | awk '{ rps += $1; if ($2 > p50) p50 = $2; if ($3 > p99) p99 = $3 }
    END { print rps, p50, p99 }'
  rm -f "$work"/load.*
}

# Measures the gateways at URLs (one or two); prints a table row for LABEL.
measure() {
  local label=$1
  shift
  load_all 8 "$@" >/dev/null # warm-up
  read -r rps1 p50_1 p99_1 < <(load "$1" 1)
  read -r rps64 p50_64 p99_64 < <(load_all $((64 / $#)) "$@")
  printf '| %s | %s | %s µs | %s µs | %s | %s µs | %s µs |\n' \
    "$label" "$rps1" "$p50_1" "$p99_1" "$rps64" "$p50_64" "$p99_64" >>"$work/table"
}

# Stops the gateways (not this shell's children: they were started in a
# subshell) and waits until they are gone.
stop() {
  kill "$@" 2>/dev/null || true
  for pid in "$@"; do
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  done
}

# A fresh PostgreSQL database, its URL in $database_url.
new_database() {
  local name="llm_gateway_bench_$$_$1"
  psql "$admin_url" -qc "CREATE DATABASE $name" >/dev/null
  databases+=("$name")
  database_url="${admin_url%/*}/$name"
}

first=http://127.0.0.1:$first_port
second=http://127.0.0.1:$second_port

# Measures one gateway on PORT with DATABASE_URL, labelled LABEL: a plain
# key, then a key with a budget and rate limits.
one_gateway() {
  local label=$1 port=$2 url=$3 gateway pid
  echo "$label" >&2
  rm -f "$work/cookies"
  gateway=http://127.0.0.1:$port
  pid=$(start_gateway "$port" "$url")
  pids+=("$pid")
  wait_for "$gateway/health"
  key=$(bench_key "$gateway")
  measure "$label" "$gateway"
  key=$(limited_key "$gateway")
  measure "$label, a key with a budget and rate limits" "$gateway"
  stop "$pid"
}

one_gateway "SQLite" $sqlite_port "sqlite://$work/bench.db"
new_database one
one_gateway "PostgreSQL, one replica" $one_port "$database_url"

echo "PostgreSQL, two replicas" >&2
rm -f "$work/cookies"
new_database two
pid1=$(start_gateway $first_port "$database_url")
pids+=("$pid1")
wait_for "$first/health"
pid2=$(start_gateway $second_port "$database_url")
pids+=("$pid2")
wait_for "$second/health"
key=$(bench_key "$first")
measure "PostgreSQL, two replicas" "$first" "$second"
stop "$pid1" "$pid2"

printf '\n| backend | req/s, c=1 | p50, c=1 | p99, c=1 | req/s, c=64 | p50, c=64 | p99, c=64 |\n'
printf '|---|---|---|---|---|---|---|\n'
cat "$work/table"
