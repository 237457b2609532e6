#!/usr/bin/env bash
# Audited read throughput (W1, GET /api/patients/{id}) of two amal builds,
# with the same client (the AFTER build's amal-bench) and the same command,
# interleaved twice. Usage: scripts/bench-two-builds.sh BEFORE_BIN_DIR AFTER_BIN_DIR
set -u
BEFORE=${1:?usage: bench-two-builds.sh BEFORE_BIN_DIR AFTER_BIN_DIR}
AFTER=${2:?usage: bench-two-builds.sh BEFORE_BIN_DIR AFTER_BIN_DIR}
CLIENT=$AFTER/amal-bench
run_one() {
  local name=$1 bin=$2 port=$3
  local dir; dir=$(mktemp -d)
  AMAL_RATE_LIMIT_READ=10000000/60s AMAL_RATE_LIMIT_AUTH=100000/60s AMAL_RATE_LIMIT_WRITE=1000000/60s \
    "$bin" demo --patients 2000 --bind 127.0.0.1:$port --password 'bench-password-123' --data-dir "$dir" > "$dir/demo.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 240); do curl -sf http://127.0.0.1:$port/api/health >/dev/null && break; sleep 1; done
  echo "== $name ($bin)"
  "$CLIENT" run --url http://127.0.0.1:$port --password 'bench-password-123' --scenario read --concurrency 8 --duration 20 --warmup 3 2>&1 | tail -4
  kill $pid; wait $pid 2>/dev/null; rm -rf "$dir"
}
for round in 1 2; do
  run_one before "$BEFORE/amal" 18081
  run_one after "$AFTER/amal" 18082
done
