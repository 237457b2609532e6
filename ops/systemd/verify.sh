#!/usr/bin/env bash
# Check ops/systemd/amal.service with `systemd-analyze verify`. The unit's
# ExecStart points at /usr/local/bin/amal; the check uses a copy pointing at
# the binary given here, so it also proves the command line is executable.
# Any complaint about the unit fails (systemd-analyze itself exits 0 on
# "Unknown key ... ignoring"). Skipped, saying so, only when systemd-analyze
# is not installed (Debian package `systemd`).
#   ops/systemd/verify.sh target/debug/amal
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$(realpath "${1:?usage: ops/systemd/verify.sh PATH-TO-AMAL-BINARY}")"
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "SKIPPED: systemd-analyze is not available in this container (install the Debian package systemd)"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
sed "s#/usr/local/bin/amal#${bin}#" "$here/amal.service" >"$tmp/amal.service"
status=0
out="$(systemd-analyze verify "$tmp/amal.service" 2>&1)" || status=$?
problems="$(printf '%s\n' "$out" | grep 'amal\.service' || true)"
if [ "$status" -ne 0 ] || [ -n "$problems" ]; then
  printf '%s\n' "$out" >&2
  echo "ops/systemd/amal.service: systemd-analyze verify found problems" >&2
  exit 1
fi
echo "ops/systemd/amal.service: systemd-analyze verify OK"
