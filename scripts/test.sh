#!/usr/bin/env bash
# Sets everything up and runs every test: formatting and lints, the ssr and
# hydrate unit tests, the integration suite (SQLite and PostgreSQL), the
# Playwright end-to-end suite in Debian's chromium, and the official SDKs on
# both databases; `llm-gateway audit` checks the books each of those runs
# kept. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh --test
source scripts/env.sh

step() { printf '\n==> %s\n' "$*" >&2; }

# The integration suite runs on PostgreSQL as well; it must be there.
export LLM_GATEWAY_REQUIRE_POSTGRES=1
export LLM_GATEWAY_TEST_POSTGRES_URL=${LLM_GATEWAY_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (ssr, all targets)"
cargo clippy --all-targets --features ssr -- -D warnings

step "unit and integration tests (ssr), then unit tests (hydrate, native)"
# cargo-leptos builds with the same LEPTOS_* variables as the end-to-end run,
# so the two share one build cache.
cargo leptos test

step "end-to-end tests (Playwright)"
e2e_dir=target/e2e
rm -rf "$e2e_dir" && mkdir -p "$e2e_dir"
export E2E_PORT=${E2E_PORT:-3107}
export E2E_MOCK_PORT=${E2E_MOCK_PORT:-3108}
# Like config.example.yml, with every provider pointed at the mock provider
# that the Playwright setup starts.
export GATEWAY_CONFIG=end2end/config.yml
export GATEWAY_PORT=$E2E_PORT
export GATEWAY_DATABASE_URL="sqlite://$e2e_dir/gateway.db"
export GATEWAY_MASTER_KEY=e2e-master-key-0123456789
cargo leptos end-to-end

step "llm-gateway audit of the books the end-to-end run kept (SQLite)"
target/debug/llm-gateway audit --database-url "$GATEWAY_DATABASE_URL" >"$e2e_dir/audit.txt" ||
  { cat "$e2e_dir/audit.txt" >&2; exit 1; }
head -n 2 "$e2e_dir/audit.txt"

step "official OpenAI SDKs (Python and JS) against the gateway and the mock, on SQLite, then audited"
scripts/sdk-tests.sh target/debug/llm-gateway

step "the same on PostgreSQL, then audited"
sdk_pg_db="llm_gateway_sdk_$$"
psql "$LLM_GATEWAY_TEST_POSTGRES_URL" -qc "CREATE DATABASE $sdk_pg_db"
trap 'psql "$LLM_GATEWAY_TEST_POSTGRES_URL" -qc "DROP DATABASE IF EXISTS $sdk_pg_db WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
scripts/sdk-tests.sh target/debug/llm-gateway "${LLM_GATEWAY_TEST_POSTGRES_URL%/*}/$sdk_pg_db"

step "all tests passed"
