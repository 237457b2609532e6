#!/usr/bin/env bash
# The launch smoke suite against a running deployment (docs/ops/SMOKE_TESTS.md).
#
#   ./scripts/smoke-test.sh                                    # http://127.0.0.1:8080
#   API_URL=https://staging.clinic.example ./scripts/smoke-test.sh
#   API_URL=https://clinic.example ./scripts/smoke-test.sh --ca-cert /etc/amal/ca.pem
#
# Needs SMOKE_ADMIN_EMAIL and SMOKE_ADMIN_PASSWORD (an active admin account);
# SMOKE_METRICS_TOKEN (the deployment's METRICS_TOKEN) is optional. Extra
# arguments go to `amal smoke`. Uses $AMAL_BIN, else ./target/release/amal,
# else `amal` on PATH, else `cargo run --release --`. Exit code 0 only when
# every check passes.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

API_URL="${API_URL:-http://127.0.0.1:8080}"

if [ -n "${AMAL_BIN:-}" ]; then
  amal=("$AMAL_BIN")
elif [ -x "$root/target/release/amal" ]; then
  amal=("$root/target/release/amal")
elif command -v amal >/dev/null 2>&1; then
  amal=(amal)
else
  amal=(cargo run --manifest-path "$root/Cargo.toml" --release --quiet --bin amal --)
fi

exec "${amal[@]}" smoke --url "$API_URL" "$@"
