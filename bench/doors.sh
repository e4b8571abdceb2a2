#!/usr/bin/env bash
# What each door adds over the upstream it calls, beside chat's: Anthropic's
# `/v1/messages` translated to an OpenAI-compatible upstream and passed to an
# Anthropic one as it came, and OpenAI's `/v1/responses`. Non-streamed, auth
# and usage recording on, pinned as in run.sh (the gateway on core 0, wrk
# and the mock on core 1). For each door: requests/s at c=64, and at c=1
# the p50 and p99 through the gateway and straight to the mock in the
# upstream's own format, and their difference. Needs a release build and wrk.
#
#   bench/doors.sh [DURATION_SECONDS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

duration=${1:-10}
bin=${BENCH_BIN:-target/release/llm-gateway}
[[ -x "$bin" ]] || { echo "build first: scripts/build.sh --release" >&2; exit 1; }
command -v wrk >/dev/null || { echo "install wrk: apt-get install wrk" >&2; exit 1; }

source bench/common.sh

mock_port=4621 gateway_port=4622
unset GATEWAY_HOST GATEWAY_PORT GATEWAY_DATABASE_URL GATEWAY_MASTER_KEY GATEWAY_CONFIG
RUST_LOG=warn taskset -c 1 "$bin" mock-provider --port $mock_port >/dev/null 2>&1 &
pids+=($!)
mock=http://127.0.0.1:$mock_port
cat >"$work/doors.yml" <<EOF
host: 127.0.0.1
port: $gateway_port
database_url: sqlite://$work/bench.db
master_key: bench-master-key-0123456789
signup_credit: 1000
providers:
  openai: { api_key: sk-mock, api_base: "$mock/v1" }
  anthropic: { api_key: sk-mock, api_base: "$mock" }
pricing:
  "openai:gpt-4o-mini": { input_price_per_million: 0.15, output_price_per_million: 0.60 }
  "anthropic:claude-3-5-haiku": { input_price_per_million: 0.80, output_price_per_million: 4.00 }
EOF
RUST_LOG=warn taskset -c 0 "$bin" serve --config "$work/doors.yml" >/dev/null 2>"$work/gateway.err" &
pids+=($!)
gateway=http://127.0.0.1:$gateway_port
wait_for "$mock/v1/models"
wait_for "$gateway/health"
key=$(bench_key "$gateway")

# Runs wrk: load BASE PATH BODY KEY CONNECTIONS; prints "rps p50_us p99_us".
load() {
  local out line
  out=$(BENCH_KEY=$4 BENCH_BODY=$3 taskset -c 1 \
    wrk -t1 -c"$5" -d"${duration}s" -s bench/chat.lua "$1$2")
  line=$(grep '^RESULT' <<<"$out")
  if [[ "$line" != *"errors=0"* ]]; then
    echo "errors during the run ($2): $line" >&2
    exit 1
  fi
  sed -E 's/.*rps=([0-9]+) p50_us=([0-9]+) p99_us=([0-9]+).*/\1 \2 \3/' <<<"$line"
}

text='"Say hello to the benchmark."'
chat_body() { echo '{"model":"'"$1"'","messages":[{"role":"user","content":'"$text"'}]}'; }
messages_body() { echo '{"model":"'"$1"'","max_tokens":256,"messages":[{"role":"user","content":'"$text"'}]}'; }
responses_body() { echo '{"model":"'"$1"'","input":'"$text"',"store":false}'; }

# door | its path and body | the upstream's path and body
doors=(
  "chat, to OpenAI-compatible|/v1/chat/completions|$(chat_body openai:gpt-4o-mini)|/v1/chat/completions|$(chat_body gpt-4o-mini)"
  "messages, translated to OpenAI-compatible|/v1/messages|$(messages_body openai:gpt-4o-mini)|/v1/chat/completions|$(chat_body gpt-4o-mini)"
  "messages, as sent to Anthropic|/v1/messages|$(messages_body anthropic:claude-3-5-haiku)|/v1/messages|$(messages_body claude-3-5-haiku)"
  "responses, translated to OpenAI-compatible|/v1/responses|$(responses_body openai:gpt-4o-mini)|/v1/chat/completions|$(chat_body gpt-4o-mini)"
)

printf '\n| door | req/s at c=64 | p50 at c=1 | upstream p50 | added p50 | added p99 |\n|---|---|---|---|---|---|\n'
for door in "${doors[@]}"; do
  IFS='|' read -r name path body upstream_path upstream_body <<<"$door"
  load "$gateway" "$path" "$body" "$key" 8 >/dev/null # warm-up
  read -r rps _ _ < <(load "$gateway" "$path" "$body" "$key" 64)
  read -r _ g_p50 g_p99 < <(load "$gateway" "$path" "$body" "$key" 1)
  read -r _ m_p50 m_p99 < <(load "$mock" "$upstream_path" "$upstream_body" "" 1)
  printf '| %s | %s | %s µs | %s µs | %s µs | %s µs |\n' \
    "$name" "$rps" "$g_p50" "$m_p50" $((g_p50 - m_p50)) $((g_p99 - m_p99))
done
