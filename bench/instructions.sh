#!/usr/bin/env bash
# Counts the instructions the gateway spends per proxied request, under
# valgrind's callgrind: a figure that, unlike latency, does not move with
# what else the machine is doing, so builds can be compared on a noisy one.
#
# The gateway runs the bench config against the mock (auth and usage
# recording on); wrk sends non-streaming chat completions at c=1. After a
# warm-up the counters are zeroed, a measured run follows, and the script
# prints the instructions of the whole process (the usage writer included)
# and of the chat handler (`proxy::chat::chat`: from the body to the
# response, without the key check and the HTTP framing), per request. Needs a release build and
# valgrind and wrk (apt-get install valgrind wrk).
#
#   bench/instructions.sh [DURATION_SECONDS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

duration=${1:-10}
bin=${BENCH_BIN:-target/release/llm-gateway}
[[ -x "$bin" ]] || { echo "build first: scripts/build.sh --release" >&2; exit 1; }
for tool in valgrind callgrind_control callgrind_annotate wrk curl python3; do
  command -v $tool >/dev/null || { echo "missing $tool (apt-get install valgrind wrk)" >&2; exit 1; }
done

source bench/common.sh

mock_port=4631 gateway_port=4632
unset GATEWAY_HOST GATEWAY_PORT GATEWAY_DATABASE_URL GATEWAY_MASTER_KEY GATEWAY_CONFIG
RUST_LOG=warn "$bin" mock-provider --port $mock_port >/dev/null 2>&1 &
pids+=($!)
export MOCK_URL=http://127.0.0.1:$mock_port BENCH_GATEWAY_PORT=$gateway_port
export BENCH_DATABASE_URL="sqlite://$work/bench.db"
RUST_LOG=warn valgrind --tool=callgrind --instr-atstart=no \
  --callgrind-out-file="$work/callgrind.out" "$bin" serve --config bench/config.yml \
  >/dev/null 2>"$work/valgrind.err" &
gateway_pid=$!
pids+=($gateway_pid)
gateway=http://127.0.0.1:$gateway_port
wait_for "$MOCK_URL/v1/models"
wait_for "$gateway/health"

key=$(bench_key "$gateway")

# Prints the number of requests wrk completed, or nothing if any failed.
# Requests under callgrind are slow, the first ones very: a long timeout.
load() {
  BENCH_KEY=$key BENCH_MODEL=openai:gpt-4o-mini wrk -t1 -c1 -d"$1s" --timeout 30s \
    -s bench/chat.lua "$gateway/v1/chat/completions" |
    sed -nE 's/^RESULT .*requests=([0-9]+) errors=0.*/\1/p'
}

# Sends a command to the gateway's callgrind; fails unless it was taken.
control() {
  local out
  out=$(callgrind_control "$@" "$gateway_pid" 2>&1)
  [[ "$out" == *"OK."* ]] || { echo "callgrind_control $*: $out" >&2; exit 1; }
}

control -i on
[[ -n "$(load 3)" ]] || { echo "errors during the warm-up" >&2; exit 1; }
control -z
requests=$(load "$duration")
[[ "$requests" -gt 0 ]] 2>/dev/null || { echo "errors during the run" >&2; exit 1; }
sleep 1 # let the usage writer's last batch land
control -d
sleep 1
profile=$(ls "$work"/callgrind.out.* | head -1)
# The count on the first line that matches; awk reads to the end, so that
# callgrind_annotate never writes to a closed pipe.
first_count() { awk -v pattern="$1" '!done && index($0, pattern) { gsub(",", "", $1); print $1; done = 1 }'; }
total=$(callgrind_annotate "$profile" | first_count 'PROGRAM TOTALS')
# The handler from the body to the response: `proxy::chat::chat`, or where
# the optimiser inlined that into its caller, `proxy::spend::spend` (all of
# it but the request's description).
inclusive=$(callgrind_annotate --inclusive=yes "$profile")
handler=$(first_count 'llm_gateway::proxy::chat::chat::{{closure}}' <<<"$inclusive")
[[ -n "$handler" ]] ||
  handler=$(first_count 'llm_gateway::proxy::spend::spend::{{closure}}' <<<"$inclusive")
if [[ -z "$total" || -z "$handler" ]]; then
  echo "could not read the totals from $profile" >&2
  exit 1
fi

printf '\n| requests | instructions / request, whole process | of which in the chat handler |\n|---|---|---|\n'
printf '| %s | %s | %s |\n' "$requests" $((total / requests)) $((handler / requests))
