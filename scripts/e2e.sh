#!/usr/bin/env bash
# Builds the gateway and its site (debug), then runs the Playwright suite in
# Debian's chromium: end2end/global-setup.ts starts the gateway on
# end2end/config.yml and, beside it, the mock provider, mock Stripe and SMTP
# sink. Extra arguments go to `playwright test` (a spec, --grep, …).
# E2E_SKIP_BUILD=1 reuses the last build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh

[[ -n "${E2E_SKIP_BUILD:-}" ]] || scripts/build.sh

e2e_dir=target/e2e
rm -rf "$e2e_dir" && mkdir -p "$e2e_dir"
export E2E_PORT=${E2E_PORT:-3107}
export E2E_MOCK_PORT=${E2E_MOCK_PORT:-3108}
export E2E_SMTP_PORT=${E2E_SMTP_PORT:-3109}
export GATEWAY_CONFIG=end2end/config.yml
export GATEWAY_PORT=$E2E_PORT
export GATEWAY_DATABASE_URL="sqlite://$e2e_dir/gateway.db"
export GATEWAY_MASTER_KEY=${GATEWAY_MASTER_KEY:-e2e-master-key-0123456789}
cd end2end
npx playwright test "$@"
