#!/bin/bash
# Interleaved before/after W1 runs; waits (up to 60 s) while another benchmark runs.
cd /work/wt-fast
for i in $(seq 1 ${1:-2}); do
  for v in before after; do
    for w in $(seq 1 12); do
      pgrep -f "amal-bench suite" >/dev/null || pgrep -x hfs >/dev/null || break; sleep 5
    done
    if [ $v = before ]; then A=./amal-before; B=./amal-bench-before; else A=target/release/amal; B=target/release/amal-bench; fi
    others=$(pgrep -fa "amal-bench suite|rustc|hfs" | grep -v wt-fast | wc -l)
    echo "== $v run $i $(date +%T) $(uptime | sed 's/.*load/load/') others=$others"
    timeout 300 $B suite --amal-binary $A --patients 2000 --engine sqlite --only w1 --duration 15 2>&1 | grep -E "^\| Sqlite \| W1"
  done
done
