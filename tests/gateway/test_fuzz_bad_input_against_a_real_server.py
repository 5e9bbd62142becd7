"""Hostile clients against a real ``corral up``, over raw sockets: slow-loris bodies, invalid
UTF-8, garbled Authorization headers, oversize declarations. Each gets a clear OpenAI-shaped
4xx, never a 5xx, never an upstream call, and the server keeps answering everyone else.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from corral.gateway.stages import BODY_READ_TIMEOUT_S
from serving.fake_upstream import FakeUpstream, fake_upstream
from serving.helpers import Corral, endpoint, is_ready

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

UPSTREAM_KEY = "sk-bad-input-upstream"
GOOD_BODY = json.dumps({"model": "hostile", "messages": [{"role": "user", "content": "hi"}]})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Corral, FakeUpstream]]:
    root = tmp_path_factory.mktemp("corral-bad-input")
    server = Corral(root / "state", root / "logs").start()
    try:
        with fake_upstream(UPSTREAM_KEY) as upstream:
            server.wait_ready()
            secret = {
                "apiVersion": "corral.dev/v1alpha1",
                "kind": "Secret",
                "metadata": {"name": "hostile-key"},
                "spec": {"type": "api-key", "data": {"apiKey": UPSTREAM_KEY}},
            }
            runtime = {"type": "openai", "baseURL": upstream.base_url, "secretRef": "hostile-key"}
            server.apply(secret, endpoint("hostile", {"up-model": 100}, runtime=runtime))
            server.wait_for("endpoints", "hostile", is_ready)
            deadline = time.monotonic() + 60
            while server.api().get("/v1/models/hostile").status_code != 200:
                assert time.monotonic() < deadline, "the gateway never routed the Endpoint"
                time.sleep(0.05)
            yield server, upstream
    finally:
        code = server.stop()
    assert code == 0, server.stderr


def connect(server: Corral) -> socket.socket:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=BODY_READ_TIMEOUT_S + 30)


def head(
    server: Corral,
    body_length: int,
    authorization: bytes | None = None,
    path: bytes = b"/v1/chat/completions",
) -> bytes:
    auth = authorization if authorization is not None else f"Bearer {server.token}".encode()
    return (
        b"POST " + path + b" HTTP/1.1\r\nHost: corral\r\nContent-Type: application/json\r\n"
        b"Authorization: "
        + auth
        + b"\r\nContent-Length: "
        + str(body_length).encode()
        + b"\r\n\r\n"
    )


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            raise AssertionError(f"connection closed before a response: {data!r}")
        data += piece
    header_block, _, rest = data.partition(b"\r\n\r\n")
    lines = header_block.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        piece = sock.recv(65536)
        if not piece:
            break
        rest += piece
    return status, headers, rest[:length]


def exchange(server: Corral, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with connect(server) as sock:
        sock.sendall(request)
        return read_response(sock)


def openai_error(status: int, headers: dict[str, str], body: bytes) -> str:
    assert 400 <= status < 500, (status, body)
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    return str(error["message"])


def test_slow_loris_bodies_end_in_408_while_others_are_served(
    served: tuple[Corral, FakeUpstream],
) -> None:
    server, upstream = served
    before = len(upstream.chats())
    stalled, trickling = connect(server), connect(server)
    answers: dict[str, tuple[int, dict[str, str], bytes]] = {}

    def trickle() -> None:
        trickling.sendall(head(server, len(GOOD_BODY)))
        # A byte every second: each arrives well within any per-read timeout.
        try:
            for byte in GOOD_BODY[:-1].encode():
                trickling.sendall(bytes([byte]))
                time.sleep(1)
        except OSError:
            pass  # the server gave up on us: that is the point

    started = time.monotonic()
    stalled.sendall(head(server, len(GOOD_BODY)) + GOOD_BODY[:10].encode())
    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    readers = [
        threading.Thread(target=lambda s=s, n=n: answers.update({n: read_response(s)}))
        for n, s in (("stalled", stalled), ("trickling", trickling))
    ]
    for reader in readers:
        reader.start()

    # Meanwhile the gateway answers a well-behaved client at once.
    status, _, body = exchange(server, head(server, len(GOOD_BODY)) + GOOD_BODY.encode())
    assert status == 200, body
    for reader in readers:
        reader.join(timeout=BODY_READ_TIMEOUT_S + 30)
    elapsed = time.monotonic() - started
    for name in ("stalled", "trickling"):
        status, headers, body = answers[name]
        assert status == 408, (name, body)
        assert "did not arrive within" in openai_error(status, headers, body)
        assert headers.get("connection") == "close"
    assert BODY_READ_TIMEOUT_S - 1 <= elapsed < BODY_READ_TIMEOUT_S + 20
    assert trickling.recv(1) == b""  # the server closed the connection
    stalled.close()
    trickling.close()
    assert len(upstream.chats()) == before + 1


def test_invalid_utf8_is_a_400_saying_where(served: tuple[Corral, FakeUpstream]) -> None:
    server, upstream = served
    before = len(upstream.chats())
    body = b'{"model": "hostile", "messages": [{"role": "user", "content": "\xc3\x28"}]}'
    status, headers, answer = exchange(server, head(server, len(body)) + body)
    assert "not valid UTF-8 (bad byte at offset" in openai_error(status, headers, answer)
    assert len(upstream.chats()) == before


@pytest.mark.parametrize(
    ("authorization", "expected"),
    [
        (b"", "missing API key"),
        (b"Bearer", "missing API key"),
        (b"Bearer    ", "missing API key"),
        (b"Basic dXNlcjpwYXNz", "missing API key"),
        (b"Bearer \xff\xfe\x80garbage", "invalid API key"),
        (b"Bearer crl_" + b"A" * 8000, "invalid API key"),
        (b"Bearer a.b.c", "invalid workload token (malformed)"),
        (b"Bearer ..", "invalid workload token (malformed)"),
        (b"Bearer eyJhbGciOiJub25lIn0.e30.", "invalid workload token (algorithm)"),
        (b"Bearer eyJ\xc3\xa9.\xc3\xa9.\xc3\xa9", "invalid workload token (malformed)"),
        (b"bearer  " + b"x" * 64 + b"  ", "invalid API key"),
    ],
    ids=[
        "empty",
        "scheme-only",
        "blank-token",
        "basic",
        "non-ascii",
        "huge",
        "three-garbage-parts",
        "only-dots",
        "alg-none",
        "non-ascii-jwt",
        "padded",
    ],
)
def test_garbled_authorization_headers_are_401(
    served: tuple[Corral, FakeUpstream], authorization: bytes, expected: str
) -> None:
    server, upstream = served
    before = len(upstream.chats())
    request = head(server, len(GOOD_BODY), authorization=authorization) + GOOD_BODY.encode()
    status, headers, body = exchange(server, request)
    assert status == 401, body
    assert expected in openai_error(status, headers, body)
    assert headers["www-authenticate"] == "Bearer"
    assert len(upstream.chats()) == before


def test_a_declared_huge_body_is_413_before_it_is_sent(served: tuple[Corral, FakeUpstream]) -> None:
    server, _ = served
    with connect(server) as sock:
        sock.sendall(head(server, 10**10))  # nothing of the body follows
        status, headers, body = read_response(sock)
    assert status == 413
    assert "larger than the limit" in openai_error(status, headers, body)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"model": "hostile", "messages": 26994}', "messages: must be an array"),
        (
            b'{"model": "hostile", "messages": "hi", "max_tokens": "9"}',
            "messages: must be an array",
        ),
        (b'{"model": "hostile", "messages": {}}', "messages: must be an array"),
        (b'{"model": "hostile", "messages": [1]}', "messages[0]: expected an object"),
        (b'{"model": "hostile",', "not valid JSON"),
        (b'{"model": 7, "messages": []}', "model: must be a non-empty string"),
        (b'{"model": "nobody", "messages": []}', "does not exist"),
    ],
    ids=["int", "string", "object", "int-item", "truncated", "model-int", "unknown-model"],
)
def test_malformed_requests_are_4xx_before_any_upstream_call(
    served: tuple[Corral, FakeUpstream], body: bytes, message: str
) -> None:
    # Found by the schemathesis run: a non-list 'messages' used to crash token estimation (500).
    server, upstream = served
    before = len(upstream.chats())
    status, headers, answer = exchange(server, head(server, len(body)) + body)
    assert message in openai_error(status, headers, answer)
    assert len(upstream.chats()) == before
