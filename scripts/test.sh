#!/usr/bin/env bash
# Sets everything up and runs every test: formatting and lints, the ssr and
# hydrate unit tests, the integration suite (SQLite and PostgreSQL), the
# Playwright end-to-end suite in Debian's chromium (with axe-core), and the
# official SDKs on both databases; `llm-gateway audit` checks the books each
# of those runs kept. Then a release build: the WASM's size budget, and the
# container image built with podman and run from its exported filesystem.
# Exits non-zero on any failure.
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

step "cargo fmt and clippy of tools/site-tool"
cargo fmt --manifest-path tools/site-tool/Cargo.toml -- --check
cargo clippy --manifest-path tools/site-tool/Cargo.toml --release -- -D warnings

step "unit and integration tests (ssr)"
cargo test --features ssr

step "unit tests (hydrate, native)"
cargo test --lib --no-default-features --features hydrate

step "end-to-end tests (Playwright, with axe-core)"
scripts/e2e.sh

step "llm-gateway audit of the books the end-to-end run kept (SQLite)"
e2e_dir=target/e2e
target/debug/llm-gateway audit --database-url "sqlite://$e2e_dir/gateway.db" >"$e2e_dir/audit.txt" ||
  { cat "$e2e_dir/audit.txt" >&2; exit 1; }
head -n 2 "$e2e_dir/audit.txt"

step "official OpenAI SDKs (Python and JS) against the gateway and the mock, on SQLite, then audited"
scripts/sdk-tests.sh target/debug/llm-gateway

step "the same on PostgreSQL, then audited"
sdk_pg_db="llm_gateway_sdk_$$"
psql "$LLM_GATEWAY_TEST_POSTGRES_URL" -qc "CREATE DATABASE $sdk_pg_db"
trap 'psql "$LLM_GATEWAY_TEST_POSTGRES_URL" -qc "DROP DATABASE IF EXISTS $sdk_pg_db WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
scripts/sdk-tests.sh target/debug/llm-gateway "${LLM_GATEWAY_TEST_POSTGRES_URL%/*}/$sdk_pg_db"

step "release build: the WASM's size budget, then the container image"
scripts/build.sh --release
wasm_br=$(node -p 'const s = require("./target/site/site.json"); require("fs").statSync(`target/site/${s.pkg_dir}/llm-gateway_bg.wasm.br`).size')
# What a first visit downloads: the main module, the lazily loaded pages
# apart (bench/README.md).
wasm_budget=350000
echo "the WASM client's main module: $wasm_br bytes with brotli (budget: $wasm_budget)"
(( wasm_br <= wasm_budget )) || { echo "the WASM client is over its budget" >&2; exit 1; }
scripts/container-check.sh --release

step "all tests passed"
