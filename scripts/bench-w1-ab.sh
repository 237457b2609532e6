#!/usr/bin/env bash
# W1 (the audited patient read) of two builds with the suite's own command,
# interleaved before/after, each pair after any other benchmark has ended
# (waits up to 60 s), with the load average on every line.
# Usage: scripts/bench-w1-ab.sh BEFORE_BIN_DIR AFTER_BIN_DIR [ROUNDS]
# (each dir holds `amal` and `amal-bench` of one build).
set -u
BEFORE=${1:?usage: bench-w1-ab.sh BEFORE_BIN_DIR AFTER_BIN_DIR [ROUNDS]}
AFTER=${2:?usage: bench-w1-ab.sh BEFORE_BIN_DIR AFTER_BIN_DIR [ROUNDS]}
for i in $(seq 1 "${3:-2}"); do
  for v in before after; do
    for _ in $(seq 1 12); do
      pgrep -f "amal-bench suite" >/dev/null || pgrep -x hfs >/dev/null || break
      sleep 5
    done
    if [ "$v" = before ]; then D=$BEFORE; else D=$AFTER; fi
    echo "== $v run $i $(date +%T) $(uptime | sed 's/.*load/load/')"
    timeout 300 "$D/amal-bench" suite --amal-binary "$D/amal" --patients 2000 --engine sqlite \
      --only w1 --duration 15 2>&1 | grep -E "^\| Sqlite \| W1"
  done
done
