#!/usr/bin/env bash
# Sets everything up, builds a release, and runs the gateway on SQLite with
# config.example.yml (or $GATEWAY_CONFIG). Extra arguments go to `serve`,
# e.g. scripts/run.sh --port 8080.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh
source scripts/env.sh

scripts/build.sh --release

# The example config reads the master key from GATEWAY_MASTER_KEY; make one
# on first run and keep it beside the database.
if [[ -z "${GATEWAY_MASTER_KEY:-}" ]]; then
  mkdir -p data
  if [[ ! -s data/master_key ]]; then
    (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > data/master_key)
    echo "==> generated a master key in data/master_key" >&2
  fi
  GATEWAY_MASTER_KEY=$(cat data/master_key)
  export GATEWAY_MASTER_KEY
fi

echo "==> starting llm-gateway; open the URL below in a browser" >&2
exec target/release/llm-gateway serve --config "${GATEWAY_CONFIG:-config.example.yml}" "$@"
