"""A stand-in model server for supervisor tests: OpenAI-ish endpoints on the stdlib.

Run with the arguments the llamacpp provider renders (``--model --host --port
--model_alias ...``) or the vllm provider renders (``serve MODEL --host --port
--served-model-name ...``). Behaviour knobs arrive as runtime options, so they travel the
same path real options do: ``fake_crash_at_start CODE``, ``fake_crash_after SECONDS``,
``fake_ready_after SECONDS``, ``fake_ignore_sigterm``, ``fake_argv_file PATH`` (records argv),
``fake_clash_once PATH`` (first run reports "address already in use" and exits).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def _flag(value: str) -> bool:
    return value.lower() in ("1", "true", "yes", "on")


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model_alias", "--served-model-name", dest="alias", default="fake")
    parser.add_argument("--fake_crash_at_start", "--fake-crash-at-start", type=int)
    parser.add_argument("--fake_crash_after", "--fake-crash-after", type=float)
    parser.add_argument("--fake_ready_after", "--fake-ready-after", type=float, default=0.0)
    parser.add_argument(
        "--fake_ignore_sigterm", "--fake-ignore-sigterm", nargs="?", const="true", default="false"
    )
    parser.add_argument("--fake_argv_file", "--fake-argv-file")
    parser.add_argument("--fake_clash_once", "--fake-clash-once")
    options, _rest = parser.parse_known_args(argv)
    return options


def main() -> None:
    options = _parse(sys.argv[1:])
    if options.fake_argv_file:
        Path(options.fake_argv_file).write_text(json.dumps(sys.argv[1:]))
    if options.fake_clash_once and not Path(options.fake_clash_once).exists():
        Path(options.fake_clash_once).write_text("clashed")
        print("OSError: [Errno 98] Address already in use", flush=True)
        sys.exit(1)
    if options.fake_crash_at_start is not None:
        print("loading model ...", flush=True)
        print(f"fatal: cannot load {options.model}", flush=True)
        sys.exit(options.fake_crash_at_start)
    if _flag(options.fake_ignore_sigterm):
        signal.signal(signal.SIGTERM, lambda *_: print("ignoring SIGTERM", flush=True))
    else:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ready_at = time.monotonic() + options.fake_ready_after
    alias = options.alias

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path in ("/v1/models", "/health"):
                if time.monotonic() < ready_at:
                    self._send(503, {"error": "loading"})
                else:
                    self._send(200, {"object": "list", "data": [{"id": alias}]})
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
            answer = {"role": "assistant", "content": f"echo: {body['messages'][-1]['content']}"}
            self._send(200, {"object": "chat.completion", "model": alias, "choices": [answer]})

        def _send(self, code: int, payload: object) -> None:
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer((options.host, options.port), Handler)
    print(f"fake server for {alias} listening on {options.host}:{options.port}", flush=True)
    if options.fake_crash_after is not None:
        crash_after = options.fake_ready_after + options.fake_crash_after

        def crash() -> None:
            time.sleep(crash_after)
            print("fatal: simulated crash", flush=True)
            # os._exit: a crash the serving thread cannot catch.
            os._exit(3)

        threading.Thread(target=crash, daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
