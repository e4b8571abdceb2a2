#!/usr/bin/env bash
# Benchmarks the gateway's overhead against the mock provider on loopback.
#
# The gateway is pinned to core 0; wrk and the mock share core 1. Auth (a
# real API key) and usage recording stay on. For c=1 and c=64 it measures
# requests/s through the gateway and directly against the mock, the added
# latency (p50, p99), the added time to first byte of streams, and the
# gateway's peak RSS. A second mock, on the gateway's core, shows what a
# request pays just for crossing between the cores, which the gateway does
# twice (client to gateway, gateway to mock) and the direct baseline never;
# and, at c=1, a byte relay (socat) on the gateway's core, which crosses
# exactly as the gateway does and does nothing else, shows the floor under
# any proxy placed so. Needs a release build (scripts/run.sh or
# `scripts/build.sh --release`), wrk and socat (apt-get install wrk socat;
# without socat the relay is left out).
#
#   bench/run.sh [DURATION_SECONDS]
#   bench/run.sh --backends [DURATION_SECONDS]   # SQLite, one PostgreSQL
#                                                # replica and two (bench/backends.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ "${1:-}" == "--backends" ]]; then
  shift
  exec bench/backends.sh "$@"
fi

duration=${1:-10}
bin=${BENCH_BIN:-target/release/llm-gateway}
[[ -x "$bin" ]] || { echo "build first: scripts/build.sh --release" >&2; exit 1; }
command -v wrk >/dev/null || { echo "install wrk: apt-get install wrk" >&2; exit 1; }

source bench/common.sh

mock_port=4611 gateway_port=4612 far_mock_port=4613 relay_port=4614
unset GATEWAY_HOST GATEWAY_PORT GATEWAY_DATABASE_URL GATEWAY_MASTER_KEY GATEWAY_CONFIG
RUST_LOG=warn taskset -c 1 "$bin" mock-provider --port $mock_port >/dev/null 2>&1 &
pids+=($!)
# A second mock on the gateway's core: what merely crossing between the two
# cores costs (the floor under any process pinned apart from its client).
RUST_LOG=warn taskset -c 0 "$bin" mock-provider --port $far_mock_port >/dev/null 2>&1 &
pids+=($!)
far_mock=http://127.0.0.1:$far_mock_port
relay=
if command -v socat >/dev/null; then
  # One process per connection, so c=1 only.
  taskset -c 0 socat TCP-LISTEN:$relay_port,fork,reuseaddr,nodelay \
    TCP:127.0.0.1:$mock_port,nodelay >/dev/null 2>&1 &
  pids+=($!)
  relay=http://127.0.0.1:$relay_port
fi
export MOCK_URL=http://127.0.0.1:$mock_port BENCH_GATEWAY_PORT=$gateway_port
export BENCH_DATABASE_URL="sqlite://$work/bench.db"
RUST_LOG=warn taskset -c 0 "$bin" serve --config bench/config.yml >/dev/null 2>"$work/gateway.err" &
gateway_pid=$!
pids+=($gateway_pid)
gateway=http://127.0.0.1:$gateway_port
wait_for "$MOCK_URL/v1/models"
wait_for "$far_mock/v1/models"
[[ -z "$relay" ]] || wait_for "$relay/v1/models"
wait_for "$gateway/health"

key=$(bench_key "$gateway")

# Runs wrk and prints "rps p50_us p99_us".
load() {
  local url=$1 connections=$2 bench_key=$3 model=$4
  local out
  out=$(BENCH_KEY=$bench_key BENCH_MODEL=$model taskset -c 1 \
    wrk -t1 -c"$connections" -d"${duration}s" -s bench/chat.lua "$url/v1/chat/completions")
  local line
  line=$(grep '^RESULT' <<<"$out")
  if [[ "$line" != *"errors=0"* ]]; then
    echo "errors during the run: $line" >&2
    exit 1
  fi
  sed -E 's/.*rps=([0-9]+) p50_us=([0-9]+) p99_us=([0-9]+).*/\1 \2 \3/' <<<"$line"
}

# Warm both paths up.
load "$gateway" 8 "$key" openai:gpt-4o-mini >/dev/null
load "$MOCK_URL" 8 "" gpt-4o-mini >/dev/null

printf '\n| concurrency | gateway req/s | mock req/s | gateway p50 | mock p50 | added p50 | gateway p99 | mock p99 | added p99 | mock across cores p50 / p99 |\n'
printf '|---|---|---|---|---|---|---|---|---|---|\n'
for c in 1 64; do
  read -r g_rps g_p50 g_p99 < <(load "$gateway" $c "$key" openai:gpt-4o-mini)
  read -r m_rps m_p50 m_p99 < <(load "$MOCK_URL" $c "" gpt-4o-mini)
  read -r _ f_p50 f_p99 < <(load "$far_mock" $c "" gpt-4o-mini)
  printf '| %s | %s | %s | %s µs | %s µs | %s µs | %s µs | %s µs | %s µs | %s µs / %s µs |\n' \
    "$c" "$g_rps" "$m_rps" "$g_p50" "$m_p50" $((g_p50 - m_p50)) "$g_p99" "$m_p99" $((g_p99 - m_p99)) "$f_p50" "$f_p99"
  if [[ $c == 1 && -n "$relay" ]]; then
    # Right after the gateway's run, so that both meet the same machine.
    read -r _ r_p50 r_p99 < <(load "$relay" 1 "" gpt-4o-mini)
    floor=$(printf '| byte relay (socat) on the gateway'"'"'s core: the floor | %s µs | %s µs |\n| the gateway | %s µs | %s µs |\n| the gateway beyond the relay | %s µs | %s µs |' \
      $((r_p50 - m_p50)) $((r_p99 - m_p99)) $((g_p50 - m_p50)) $((g_p99 - m_p99)) \
      $((g_p50 - r_p50)) $((g_p99 - r_p99)))
  fi
done

if [[ -n "$relay" ]]; then
  printf '\n| c=1, added to the mock direct | p50 | p99 |\n|---|---|---|\n%s\n' "$floor"
fi

read -r _ g_ttfb_p50 _ < <(taskset -c 1 python3 bench/ttfb.py "$gateway/v1/chat/completions" "$key" openai:gpt-4o-mini 500 | sed -E 's/RESULT p50_us=([0-9]+) p99_us=([0-9]+)/x \1 \2/')
read -r _ m_ttfb_p50 _ < <(taskset -c 1 python3 bench/ttfb.py "$MOCK_URL/v1/chat/completions" "" gpt-4o-mini 500 | sed -E 's/RESULT p50_us=([0-9]+) p99_us=([0-9]+)/x \1 \2/')
rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$gateway_pid/status")
records=$(python3 - "$work/bench.db" <<'PY'
import sqlite3, sys
print(sqlite3.connect(sys.argv[1]).execute("select count(*) from usage_records").fetchone()[0])
PY
)

batches=$(curl -sf -H 'Authorization: Bearer bench-master-key-0123456789' "$gateway/metrics" |
  sed -nE 's/^llm_gateway_usage_batches_total\{lane="([a-z]+)"\} ([0-9]+).*/\1 \2/p' | paste -sd, - | sed 's/,/, /g')

printf '\n| stream time to first byte (c=1, p50) | gateway | mock | added |\n|---|---|---|---|\n'
printf '| | %s µs | %s µs | %s µs |\n' "$g_ttfb_p50" "$m_ttfb_p50" $((g_ttfb_p50 - m_ttfb_p50))
printf '\ngateway peak RSS: %s MiB; usage records written: %s; usage batches by lane: %s\n' \
  $((rss_kb / 1024)) "$records" "$batches"
