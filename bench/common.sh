# Shared by the bench scripts (sourced, not run): a scratch directory and
# the processes to stop on exit, waiting for a server, and a bench API key.

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Waits up to 60 s for URL to answer.
wait_for() {
  for _ in $(seq 1 300); do
    curl -sf -o /dev/null "$1" && return
    sleep 0.2
  done
  echo "no answer from $1" >&2
  exit 1
}

# Calls the dashboard's server function NAME on the gateway at URL with a
# form body, keeping the session cookie: rpc URL NAME DATA.
rpc() {
  curl -sf -b "$work/cookies" -c "$work/cookies" -H 'Accept: application/json' \
    --data "$3" "$1/rpc/$2"
}

# Signs a bench user up on the gateway at URL and prints a new API key.
bench_key() {
  rpc "$1" sign_up 'email=bench%40example.com&password=correct+horse+battery' >/dev/null
  rpc "$1" create_key 'name=bench' | python3 -c 'import json, sys; print(json.load(sys.stdin)["secret"])'
}

# Creates, with the operator's API on the gateway at URL, a funded user and
# a key that has a budget and rate limits, all too large to be reached
# (they are counted, not hit); prints the key.
limited_key() {
  local master=(-H "Authorization: Bearer bench-master-key-0123456789" -H 'Content-Type: application/json')
  curl -sf "${master[@]}" "$1/v1/users" -d '{"user_id":"bench-limited"}' >/dev/null
  curl -sf "${master[@]}" "$1/v1/users/bench-limited/credits" -d '{"amount":"100000"}' >/dev/null
  curl -sf "${master[@]}" "$1/v1/keys" \
    -d '{"user_id":"bench-limited","max_budget":"100000","rpm_limit":100000000,"tpm_limit":10000000000}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])'
}

