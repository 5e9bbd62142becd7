"""nginx as the fake OpenAI upstream: fixed answers as fast as a C server gives them.

nginx cannot look inside a request body without a scripting module, so streaming is chosen by
the URL instead: the same API lives under two base URLs,

    http://127.0.0.1:PORT/v1         POST /chat/completions -> one chat.completion JSON (usage)
    http://127.0.0.1:PORT/stream/v1  POST /chat/completions -> a fixed SSE stream (usage, [DONE])

and ``GET {base}/models`` answers under both (corral's ``openai`` runtime probes it). A gateway
that routes by model name gets two models (``chat`` -> ``/v1``, ``chat-stream`` ->
``/stream/v1``); a bare pass-through forwards the path it was given. The answers are ``return``
directives (no files, no modules), so any stock ``nginx`` package serves them; the plain answer
carries nginx's ``$request_id``, so no two are alike.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import httpx
import orjson

from peers.processes import Process, answers, free_port, tool_path, wait_until

CHAT_MODEL = "chat"
STREAM_MODEL = "chat-stream"
STREAM_PREFIX = "/stream"

ANSWER_REFERENCE = "$request_id"
"""nginx fills this in per answer (32 random hex digits): every non-streamed answer differs, as
a model's do, so a gateway cannot serve its output screening from a cache of answers seen."""

CHAT_BODY = orjson.dumps(
    {
        "id": f"chatcmpl-{ANSWER_REFERENCE}",
        "object": "chat.completion",
        "created": 1700000000,
        "model": CHAT_MODEL,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": f"Hello! How can I help you today? (ref {ANSWER_REFERENCE})",
                },
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18},
    }
).decode()


def _stream_event(delta: dict[str, object], finish: str | None = None, **extra: object) -> str:
    chunk = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": STREAM_MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    return "data: " + orjson.dumps(chunk).decode() + "\n\n"


STREAM_BODY = (
    _stream_event({"role": "assistant", "content": ""})
    + "".join(
        _stream_event({"content": word}) for word in ("Hello!", " How", " can", " I", " help?")
    )
    + _stream_event({}, "stop")
    + "data: "
    + orjson.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": STREAM_MODEL,
            "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14},
        }
    ).decode()
    + "\n\ndata: [DONE]\n\n"
)

MODELS_BODY = orjson.dumps(
    {
        "object": "list",
        "data": [
            {"id": CHAT_MODEL, "object": "model", "created": 1700000000, "owned_by": "bench"},
            {"id": STREAM_MODEL, "object": "model", "created": 1700000000, "owned_by": "bench"},
        ],
    }
).decode()


def nginx_string(text: str) -> str:
    """``text`` as a single-quoted nginx config string (nginx reads \\n, \\\\ and \\' in it)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def nginx_config(port: int, workdir: Path) -> str:
    """One worker, no master, no access log, keep-alive without a request cap."""
    return f"""
worker_processes 1;
daemon off;
master_process off;
error_log {workdir}/error.log warn;
pid {workdir}/nginx.pid;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 600s;
  client_body_buffer_size 64k;
  client_body_temp_path {workdir}/body;
  proxy_temp_path {workdir}/proxy;
  fastcgi_temp_path {workdir}/fastcgi;
  uwsgi_temp_path {workdir}/uwsgi;
  scgi_temp_path {workdir}/scgi;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location = /v1/chat/completions {{
      default_type application/json; return 200 {nginx_string(CHAT_BODY)};
    }}
    location = {STREAM_PREFIX}/v1/chat/completions {{
      default_type text/event-stream; return 200 {nginx_string(STREAM_BODY)};
    }}
    location = /v1/models {{
      default_type application/json; return 200 {nginx_string(MODELS_BODY)};
    }}
    location = {STREAM_PREFIX}/v1/models {{
      default_type application/json; return 200 {nginx_string(MODELS_BODY)};
    }}
    location / {{ return 404; }}
  }}
}}
"""


class NginxUpstream:
    """A pinned nginx serving the fixed answers; ``url`` is its root (no ``/v1``)."""

    def __init__(self, cpu: int | None) -> None:
        self._workdir = tempfile.TemporaryDirectory(prefix="bench-nginx-")
        workdir = Path(self._workdir.name)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "nginx.conf"
        config.write_text(nginx_config(self.port, workdir))
        nginx = tool_path("nginx")
        self.process = Process([nginx, "-c", str(config), "-p", str(workdir)], "nginx", cpu)
        wait_until(self.process, lambda: answers(self.url + "/v1/models", status=200), 10, "ready")
        self._check()

    @property
    def chat_base(self) -> str:
        return self.url + "/v1"

    @property
    def stream_base(self) -> str:
        return self.url + STREAM_PREFIX + "/v1"

    def _check(self) -> None:
        body = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}]}
        chat = httpx.post(self.chat_base + "/chat/completions", json=body, timeout=5)
        stream = httpx.post(self.stream_base + "/chat/completions", json=body, timeout=5)
        if chat.json()["usage"]["total_tokens"] != 18 or not stream.text.endswith("[DONE]\n\n"):
            raise SystemExit(f"nginx fake upstream answers wrongly: {chat.text!r} {stream.text!r}")

    def version(self) -> str:
        import subprocess

        result = subprocess.run([tool_path("nginx"), "-v"], capture_output=True, text=True)
        return (result.stderr or result.stdout).strip().removeprefix("nginx version: ")

    def stop(self) -> None:
        self.process.stop()
        self._workdir.cleanup()
