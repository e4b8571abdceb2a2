#!/usr/bin/env bash
# Builds the gateway and its site with cargo, site-tool (tools/site-tool:
# wasm-bindgen and wasm-split) and wasm-opt directly (no cargo-leptos, which
# takes 12 minutes to build itself):
#
#   scripts/build.sh            target/debug/llm-gateway and target/site
#   scripts/build.sh --release  target/release/llm-gateway and a size-optimised site
#
# The site's built files go to a content-hashed folder (pkg/<hash>/: the
# script, module, stylesheet and lazily loaded chunks), with a .br and a .gz
# beside each compressible file, and site.json naming the folder; the binary
# finds it at ../site from its own folder (see src/server/site.rs). Run
# scripts/setup.sh first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh

release=false
case "${1:-}" in
  "") ;;
  --release) release=true ;;
  *) echo "usage: scripts/build.sh [--release]" >&2; exit 2 ;;
esac

output_name=llm-gateway
pkg_dir=pkg
site=target/site
say() { printf '==> [%ss] %s\n' "$SECONDS" "$*" >&2; }

if $release; then
  server_profile=release wasm_profile=wasm-release wasm_out=wasm-release
else
  server_profile=dev wasm_profile=dev wasm_out=debug
fi

# The server and the client build at once, each in its own target folder
# (cargo locks a folder for a whole build): while one compiles a large crate
# on one core, the other uses the second.
say "building the server ($server_profile) and the WASM client ($wasm_profile)"
cargo build --profile "$server_profile" --features ssr --bin llm-gateway &
server_build=$!
cargo build --profile "$wasm_profile" --lib --target wasm32-unknown-unknown \
  --target-dir target/client --no-default-features --features hydrate &
client_build=$!
server_ok=true client_ok=true
wait "$server_build" || server_ok=false
wait "$client_build" || client_ok=false
$server_ok || { echo "the server build failed" >&2; exit 1; }
$client_ok || { echo "the WASM client build failed" >&2; exit 1; }

say "assembling the site in $site"
staging=$(mktemp -d target/site.XXXXXX)
chmod 755 "$staging"   # mktemp makes it 0700; the site is read by whoever serves it
trap 'rm -rf "$staging"' EXIT
cp -R public/. "$staging/"
# Lazily loaded pages (`lazy_page!` in src/app/mod.rs) become chunks of
# their own beside their loader and manifest; the rest is the main module.
site-tool split "target/client/wasm32-unknown-unknown/$wasm_out/llm_gateway.wasm" \
  "$staging/$pkg_dir" "./$output_name.js"
site-tool bindgen "$staging/$pkg_dir/main.wasm" "$staging/$pkg_dir" "$output_name" --split
rm "$staging/$pkg_dir/main.wasm"
if $release; then
  # The main module only: the chunks, already stripped of their custom
  # sections, would shrink 4 % more for a minute of wasm-opt.
  wasm=$staging/$pkg_dir/${output_name}_bg.wasm
  wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-mutable-globals --enable-reference-types --enable-multivalue \
    --strip-debug --strip-producers "$wasm" -o "$wasm"
fi
cp style/main.css "$staging/$pkg_dir/$output_name.css"
node scripts/pack-site.mjs "$staging" "$pkg_dir" "$($release && echo best || echo fast)"

rm -rf "$site"
mv "$staging" "$site"
trap - EXIT
say "built $site"
