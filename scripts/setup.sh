#!/usr/bin/env bash
# Installs what building llm-gateway needs, and with --test what testing it
# needs too. Idempotent: anything already present at the right version is skipped.
#
#   scripts/setup.sh          wasm32 target, tools/site-tool, wasm-opt (npm binaryen)
#   scripts/setup.sh --test   + Debian's chromium, Playwright, the SDKs' packages
#   scripts/setup.sh --dev    + cargo-leptos, for `cargo leptos watch` (12 minutes to build)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CARGO_LEPTOS_VERSION=0.3.10
with_test=false
with_dev=false
for arg in "$@"; do
  case $arg in
    --test) with_test=true ;;
    --dev) with_dev=true ;;
    *) echo "usage: scripts/setup.sh [--test] [--dev]" >&2; exit 2 ;;
  esac
done

say() { printf '==> [%ss] %s\n' "$SECONDS" "$*" >&2; }
export PATH="$HOME/.cargo/bin:$PATH"

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# Installs an npm project from its lockfile unless node_modules already
# matches it (a copy of the lockfile is kept in node_modules as a stamp).
npm_ci() {
  local dir=$1 stamp="$1/node_modules/.llm-gateway-lock"
  if [[ -f "$stamp" ]] && cmp -s "$dir/package-lock.json" "$stamp"; then
    return
  fi
  say "npm ci in $dir"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$dir/package-lock.json" "$stamp"
}

# 1. The WASM target.
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

# 2. cargo-leptos, only for development (`cargo leptos watch`): the builds
#    themselves go through scripts/build.sh. Built without its binary downloads.
if $with_dev && [[ "$(cargo leptos --version 2>/dev/null || true)" != *" $CARGO_LEPTOS_VERSION" ]]; then
  say "installing cargo-leptos $CARGO_LEPTOS_VERSION (about 12 minutes on 2 cores)"
  cargo install cargo-leptos --version "$CARGO_LEPTOS_VERSION" --locked --features no_downloads
fi

# 3. site-tool (tools/site-tool): wasm-bindgen's code generator and
#    wasm-split in one small binary. Cargo skips it when it is up to date.
say "building tools/site-tool"
cargo build --quiet --release --locked --manifest-path tools/site-tool/Cargo.toml

# 4. wasm-opt, from npm's binaryen (Debian's is too old for current rustc output),
#    and Swagger UI for /docs, copied into public/ so every site build serves it.
npm_ci scripts/tools
mkdir -p public/api-docs
for asset in swagger-ui-bundle.js swagger-ui.css; do
  cp -u "scripts/tools/node_modules/swagger-ui-dist/$asset" public/api-docs/
done

if $with_test; then
  # 5. A browser for Playwright: Debian's chromium, never a downloaded one.
  if [[ ! -x /usr/bin/chromium ]]; then
    say "installing Debian's chromium"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
  # 6. Playwright and the end-to-end suite's packages.
  npm_ci end2end
  # 7. The official OpenAI SDKs: Python in a venv, JS from npm.
  if [[ ! -x .venv/bin/python ]]; then
    say "creating .venv"
    python3 -m venv .venv
  fi
  if ! cmp -s tests/sdk/requirements.txt .venv/.llm-gateway-requirements; then
    say "installing the Python SDK test requirements"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/sdk/requirements.txt
    cp tests/sdk/requirements.txt .venv/.llm-gateway-requirements
  fi
  npm_ci tests/sdk/js
  # 8. podman and debootstrap for scripts/container-check.sh (no image
  #    registry is reachable here, so the check makes its Debian base itself).
  if ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null; then
    say "installing Debian's podman and debootstrap"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman debootstrap >/dev/null
  fi
fi

say "setup complete"
