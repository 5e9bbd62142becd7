"""``corral traces``: bad filters fail before any round trip (exit 2, naming the option), and
a server that cannot answer says why (exit 1, no traceback). The listing itself, against a
real server, is in tests/serving/test_telemetry_end_to_end.py."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from .helpers import Cli, clean_env


@pytest.fixture
def offline(tmp_path: Path) -> Cli:
    return Cli(clean_env(CORRAL_STATE_DIR=str(tmp_path / "state")), tmp_path)


@contextmanager
def answering(status: int, body: bytes, content_type: str) -> Iterator[tuple[str, list[str]]]:
    """A server that answers every GET with ``status`` and ``body``; yields its URL and paths."""
    paths: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: object) -> None:
            pass

        def do_GET(self) -> None:
            paths.append(self.path)
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", paths
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--status", "99"), "--status"),
        (("list", "--status", "fine"), "--status"),
        (("--since", "yesterday"), "--since"),
        (("--since", "2026-01-01T00:00:00"), "no time zone"),
        (("--limit", "0"), "--limit"),
        (("show", "not-a-trace"), "TRACE_ID"),
        (("-o", "yaml"), "--output"),
    ],
)
def test_bad_arguments_are_usage_errors(offline: Cli, args: tuple[str, ...], named: str) -> None:
    result = offline("traces", *args, "--server", "http://127.0.0.1:9")
    assert result.returncode == 2, result.stderr
    assert named in result.stderr


def test_help_lists_the_subcommands(offline: Cli) -> None:
    shown = offline.ok("traces", "--help")
    assert "list" in shown
    assert "show" in shown


def test_unreachable_server_says_where(offline: Cli) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    result = offline("traces", "--server", url, "--token", "t")
    assert result.returncode == 1
    assert f"cannot reach corral at {url}" in result.stderr


def test_filters_travel_as_query_parameters_and_server_errors_are_shown(offline: Cli) -> None:
    status = {"kind": "Status", "code": 400, "reason": "BadRequest", "message": "since: nope"}
    with answering(400, json.dumps(status).encode(), "application/json") as (url, paths):
        result = offline(
            "traces", "--endpoint", "team-a/chat", "--team", "ads", "--status", "error",
            "--since", "2h", "-n", "5", "--server", url, "--token", "t",
        )  # fmt: skip
    assert result.returncode == 1
    assert "since: nope" in result.stderr
    assert paths == [
        "/corral/v1/traces?limit=5&endpoint=team-a%2Fchat&team=ads&status=error&since=2h"
    ]


def test_a_server_without_the_trace_api_is_named(offline: Cli) -> None:
    with answering(404, b"Not Found", "text/plain") as (url, _paths):
        result = offline("traces", "show", "0" * 32, "--server", url, "--token", "t")
    assert result.returncode == 1
    assert "not found" in result.stderr
    assert url in result.stderr
