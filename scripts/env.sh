# Sourced by the other scripts: puts the project's tools on PATH.
# shellcheck shell=bash
_llm_gateway_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$_llm_gateway_root/tools/site-tool/target/release:$_llm_gateway_root/scripts/tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"
unset _llm_gateway_root
