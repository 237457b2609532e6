#!/usr/bin/env python3
"""Serves a GGUF model over llama.cpp's OpenAI-compatible HTTP API (xllamacpp).

Used by scripts/ai-model.sh for the ai crate's real-model tests. Binds to
loopback only, on a port the OS picks (port 0), with one CPU thread so the
tests share a small machine politely. Writes "<address>/v1" to --url-file
once the server object exists, then serves until SIGTERM/SIGINT.
"""

import argparse
import os
import signal
import sys
import threading

import xllamacpp as xlc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True, help="path to a .gguf file")
    ap.add_argument("--url-file", required=True, help="where to write the base URL")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ctx", type=int, default=2048, help="context window (tokens)")
    ap.add_argument("--alias", default="smollm2-135m-instruct")
    args = ap.parse_args()

    params = xlc.CommonParams()
    params.model.path = args.model
    params.model_alias = args.alias
    params.n_ctx = args.ctx
    params.n_parallel = 1
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.n_threads_http = 2
    params.hostnames = ["127.0.0.1"]
    params.port = 0  # let the OS choose a free port
    params.warmup = False

    server = xlc.Server(params)
    base = server.listening_address.rstrip("/")
    tmp = args.url_file + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(base + "/v1\n")
    os.replace(tmp, args.url_file)
    print(f"serving {args.alias} at {base}/v1", flush=True)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    del server
    return 0


if __name__ == "__main__":
    sys.exit(main())
