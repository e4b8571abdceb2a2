#!/usr/bin/env bash
# Runs the official OpenAI, Anthropic and Stripe SDKs (Python and JS), unchanged, against a gateway
# whose providers all point at the mock provider, then stops the gateway and
# audits the books it kept (`llm-gateway audit`; any mismatch fails). Needs a
# built binary (default target/debug/llm-gateway) and `scripts/setup.sh --test`.
#
#   scripts/sdk-tests.sh [BIN] [DATABASE_URL]   (default: a fresh SQLite file)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bin=${1:-target/debug/llm-gateway}
work=$(mktemp -d)
database_url=${2:-"sqlite://$work/gateway.db"}
# Each server's pid goes in a file: `start` runs in a command substitution,
# whose variables the script never sees.
cleanup() {
  local pidfile
  for pidfile in "$work"/*.pid; do
    [[ -e "$pidfile" ]] && { kill "$(cat "$pidfile")" 2>/dev/null || true; }
  done
  rm -rf "$work"
}
trap cleanup EXIT

# Starts a server in the background and prints the URL it reports.
start() {
  local name=$1; shift
  "$@" >"$work/$name.out" 2>"$work/$name.err" &
  echo $! >"$work/$name.pid"
  for _ in $(seq 1 200); do
    if url=$(grep -o 'http://[0-9.:]*' "$work/$name.out" 2>/dev/null | head -n1) && [[ -n "$url" ]]; then
      echo "$url"
      return
    fi
    sleep 0.1
  done
  echo "$name did not start:" >&2
  cat "$work/$name.err" >&2
  return 1
}

# Only tests/sdk/config.yml configures this gateway.
unset GATEWAY_HOST GATEWAY_PORT GATEWAY_DATABASE_URL GATEWAY_MASTER_KEY GATEWAY_CONFIG
mock_url=$(start mock "$bin" mock-provider --port 0)
export MOCK_URL=$mock_url SDK_DATABASE_URL=$database_url STRIPE_WEBHOOK_SECRET=whsec_sdk_0123456789
gateway_url=$(start gateway "$bin" serve --config tests/sdk/config.yml)
echo "==> gateway $gateway_url, mock $mock_url" >&2

# A user and a key, made through the dashboard's own endpoints.
jar="$work/cookies"
rpc() {
  curl -sf -b "$jar" -c "$jar" -H 'Accept: application/json' \
    -H "Origin: $gateway_url" --data "$2" "$gateway_url/rpc/$1"
}
rpc sign_up 'email=sdk%40example.com&password=correct+horse+battery' >/dev/null
key=$(rpc create_key 'name=sdk' | python3 -c 'import json, sys; print(json.load(sys.stdin)["secret"])')

export GATEWAY_URL=$gateway_url GATEWAY_KEY=$key
# The mock Stripe sends its webhook events to this gateway.
curl -sf -H 'Content-Type: application/json' -o /dev/null \
  --data "{\"url\": \"$gateway_url/webhooks/stripe\", \"secret\": \"$STRIPE_WEBHOOK_SECRET\"}" \
  "$mock_url/mock/stripe/endpoint"
echo "==> Python SDKs (openai, anthropic and stripe on PyPI)" >&2
.venv/bin/python -m pytest -q tests/sdk/test_python_sdk.py tests/sdk/test_anthropic_sdk.py \
  tests/sdk/test_openapi.py tests/sdk/test_stripe.py
echo "==> JS SDKs (openai and @anthropic-ai/sdk on npm)" >&2
(cd tests/sdk/js && node --test)

# Stop the gateway (it settles and writes everything on SIGTERM), then audit.
pid=$(cat "$work/gateway.pid")
kill -TERM "$pid"
for _ in $(seq 1 300); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
echo "==> llm-gateway audit ($database_url)" >&2
"$bin" audit --database-url "$database_url" >"$work/audit.txt" || { cat "$work/audit.txt" >&2; exit 1; }
head -n 2 "$work/audit.txt" >&2
