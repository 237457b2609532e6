#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit tests, and every
# integration test on SQLite and again on PostgreSQL. Installs or starts
# whatever the tests need. Usage: ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PG_ADMIN_URL="${AMAL_TEST_PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

step() { printf '\n==> %s\n' "$*"; }

need_apt=()
# psql for setup; pg_dump and pg_restore for the backup tests (same package).
{ command -v psql && command -v pg_dump && command -v pg_restore; } >/dev/null 2>&1 || need_apt+=(postgresql-client)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
# systemd-analyze verifies the shipped unit (ops/systemd/amal.service).
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
# The web UI's browser test drives Debian's chromium through chromedriver.
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium chromium-driver)
# The encryption-at-rest tests show the plain sqlite3 CLI cannot read a keyed database.
command -v sqlite3 >/dev/null 2>&1 || need_apt+=(sqlite3)
export AMAL_REQUIRE_BROWSER=1
# The fault tests (crates/amal/tests/it/faults.rs) mount size-limited tmpfs
# and run a private PostgreSQL cluster: as root here, so they must not skip.
export AMAL_REQUIRE_FAULTS=1
if [ ${#need_apt[@]} -gt 0 ]; then
  step "installing ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "warning: cannot install ${need_apt[*]} without root" >&2
  fi
fi

step "PostgreSQL"
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432
# Drop databases left behind by earlier runs.
psql "$PG_ADMIN_URL" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'amal_t_%' OR datname LIKE 'amal_verify_%'" |
  while read -r db; do psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS \"$db\"" >/dev/null 2>&1 || true; done

if cargo nextest --version >/dev/null 2>&1; then
  run_tests() { cargo nextest run --workspace --no-fail-fast "$@"; }
else
  run_tests() { cargo test --workspace --no-fail-fast "$@"; }
fi

step "Prometheus alert rules: promtool check rules, promtool test rules"
promtool check rules ops/prometheus/alerts.yml
promtool test rules ops/prometheus/tests/*.yml

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (workspace lints, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

step "no module imports in a circle (every crate)"
python3 scripts/module-cycles.py crates/*/src

step "real local model for the ai crate (SmolLM2-135M via xllamacpp, 1 thread)"
# python3 -m venv needs Debian's python3-venv where the interpreter is Debian's.
AI_MODEL_ENV="$(scripts/ai-model.sh start)"
eval "$AI_MODEL_ENV"
trap 'scripts/ai-model.sh stop' EXIT
export AMAL_REQUIRE_LLM=1

step "FHIR validator: PyPI fhir.resources in a virtualenv"
mkdir -p "${CARGO_TARGET_DIR:-target}"
FHIR_VENV="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/fhir-venv"
if ! "$FHIR_VENV/bin/python" -c 'import fhir.resources.R4B.patient' 2>/dev/null; then
  python3 -m venv "$FHIR_VENV" 2>/dev/null || { apt-get install -y -qq python3-venv >/dev/null && python3 -m venv "$FHIR_VENV"; }
  "$FHIR_VENV/bin/pip" install -q 'fhir.resources==8.3.0'
fi
export AMAL_FHIR_PYTHON="$FHIR_VENV/bin/python" AMAL_REQUIRE_FHIR_VALIDATOR=1

step "tests on SQLite"
run_tests

step "integration tests on PostgreSQL"
# AMAL_REQUIRE_POSTGRES: a PostgreSQL-only test that finds no PostgreSQL fails.
AMAL_TEST_DATABASE_URL="$PG_ADMIN_URL" AMAL_REQUIRE_POSTGRES=1 run_tests -p amal

cargo build -q -p amal

step "contract fuzzing: schemathesis against a running server, SQLite and PostgreSQL"
# Zero 5xx, zero response-schema violations, zero undocumented status codes,
# content types or headers (docs/BENCHMARKS.md, "Contract fuzzing").
scripts/contract-fuzz.sh "${CARGO_TARGET_DIR:-target}/debug/amal" sqlite
scripts/contract-fuzz.sh "${CARGO_TARGET_DIR:-target}/debug/amal" postgres

step "systemd unit: systemd-analyze verify"
./ops/systemd/verify.sh "${CARGO_TARGET_DIR:-target}/debug/amal"

step "all tests passed on SQLite and PostgreSQL"
