"""corral's own HTTP/1.1 server (``corral.server.http_server``) over real sockets: keep-alive,
pipelining, chunked bodies both ways, 100-continue, flow control, the timeouts that protect it
from idle and slow-loris clients, errors in the app, and the graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from corral.server.http_server import MAX_HEAD_BYTES, HttpServer

pytestmark = pytest.mark.timeout(30)

Scope = dict[str, Any]
App = Callable[[Any, Any, Any], Awaitable[None]]


async def echo(scope: Any, receive: Any, send: Any) -> None:
    """Answers ``METHOD PATH?QUERY client body`` with a Content-Length."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    text = f"{scope['method']} {scope['path']}?{scope['query_string'].decode()} "
    text += f"{scope['client'][0]} {scope['scheme']} "
    answer = text.encode() + body
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(answer))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


@contextlib.asynccontextmanager
async def running(app: App, **options: Any) -> AsyncIterator[tuple[HttpServer, int]]:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = HttpServer(app, **options)
    task = asyncio.create_task(server.serve([listener]))
    await server.listening.wait()
    try:
        yield server, port
    finally:
        server.should_exit = True
        await task
        listener.close()


async def raw_exchange(port: int, data: bytes, *, until: bytes | None = None) -> bytes:
    """Send ``data`` and read until the server closes (or ``until`` has arrived)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    received = b""
    try:
        while until is None or until not in received:
            piece = await reader.read(65536)
            if not piece:
                break
            received += piece
    finally:
        writer.close()
    return received


class TestKeepAliveAndPipelining:
    async def test_one_connection_answers_many_requests_with_date_and_length(self) -> None:
        async with running(echo) as (_, port), httpx.AsyncClient() as client:
            for n in range(3):
                url = f"http://127.0.0.1:{port}/a%20b/{n}"
                response = await client.post(url, params={"q": "1"}, content=b"hi")
                assert response.status_code == 200
                assert response.text == f"POST /a b/{n}?q=1 127.0.0.1 http hi"
                assert response.headers["content-length"] == str(len(response.content))
                assert "GMT" in response.headers["date"]

    async def test_pipelined_requests_are_answered_in_order(self) -> None:
        requests = b"".join(
            b"POST /%d HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n%d" % (n, n)
            for n in range(5)
        )
        requests += b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        async with running(echo) as (_, port):
            received = await raw_exchange(port, requests)
        bodies = [part.split(b"\r\n\r\n", 1)[1] for part in received.split(b"HTTP/1.1 ")[1:]]
        assert [body.split(b" ")[1] for body in bodies] == [
            b"/0?",
            b"/1?",
            b"/2?",
            b"/3?",
            b"/4?",
            b"/last?",
        ]
        assert b"connection: close" in received.rsplit(b"HTTP/1.1 ", 1)[1]

    async def test_http10_without_keep_alive_is_closed_after_the_answer(self) -> None:
        async with running(echo) as (_, port):
            received = await raw_exchange(port, b"GET /old HTTP/1.0\r\n\r\n")
        assert received.startswith(b"HTTP/1.1 200 OK\r\n")
        assert received.endswith(b"GET /old? 127.0.0.1 http ")


class TestBodies:
    async def test_a_chunked_upload_reaches_the_app_whole(self) -> None:
        upload = (
            b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
        )
        async with running(echo) as (_, port):
            received = await raw_exchange(port, upload)
        assert received.endswith(b"POST /up? 127.0.0.1 http abcdefg")

    async def test_an_answer_without_length_is_chunked_and_head_gets_no_body(self) -> None:
        async def streamed(_scope: Any, _receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for word in (b"one ", b"two"):
                await send({"type": "http.response.body", "body": word, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

        async with running(streamed) as (_, port):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                response = await client.get("/")
                assert response.headers["transfer-encoding"] == "chunked"
                assert response.text == "one two"
            received = await raw_exchange(
                port, b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
        assert received.endswith(b"\r\n\r\n")
        assert b"one" not in received

    async def test_an_answer_sent_whole_without_length_gets_one(self) -> None:
        async def whole(scope: Any, _receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            body = b"" if scope["path"] == "/empty" else b"all at once"
            await send({"type": "http.response.body", "body": body})

        async with running(whole) as (_, port):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                for path, text in (("/", "all at once"), ("/empty", "")):
                    response = await client.get(path)
                    assert response.headers["content-length"] == str(len(text))
                    assert "transfer-encoding" not in response.headers
                    assert response.text == text
            received = await raw_exchange(
                port, b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
        assert received.endswith(b"\r\n\r\n")
        assert b"all at once" not in received

    async def test_expect_100_continue_is_answered_before_the_body_is_read(self) -> None:
        async with running(echo) as (_, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
            )
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(b"body")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK")
            writer.close()

    async def test_a_big_answer_to_a_slow_reader_arrives_whole(self) -> None:
        piece = b"x" * 65536
        count = 160  # 10 MiB: far more than the socket buffers, so send() must wait

        async def big(_scope: Any, _receive: Any, send: Any) -> None:
            length = b"%d" % (len(piece) * count)
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", length)],
                }
            )
            for _ in range(count):
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

        async with running(big) as (_, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**20)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await reader.readuntil(b"\r\n\r\n")
            received = 0
            while received < len(piece) * count:
                received += len(await reader.read(65536))
                if received < 2**20:
                    await asyncio.sleep(0.001)  # slow at first, so the server's writes back up
            assert received == len(piece) * count
            writer.close()

    async def test_the_server_says_when_the_whole_body_is_already_here(self) -> None:
        seen: list[tuple[bool, bool]] = []

        async def reports(_scope: Any, receive: Any, send: Any) -> None:
            before = receive.__self__.whole_body_buffered
            while (await receive()).get("more_body"):
                pass
            seen.append((before, receive.__self__.whole_body_buffered))
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        async with running(reports) as (_, port):
            await raw_exchange(
                port,
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
            )
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
            )
            await asyncio.sleep(0.2)  # the app starts before the body arrives
            writer.write(b"hi")
            await reader.read()
            writer.close()
        assert seen == [(True, False), (False, False)]


class TestStreamsAndDisconnects:
    async def test_a_head_sent_alone_reaches_the_client_before_any_body(self) -> None:
        release = asyncio.Event()

        async def watch(_scope: Any, _receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await release.wait()
            await send({"type": "http.response.body", "body": b"event"})

        async with running(watch) as (_, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /watch HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200 OK")
            release.set()
            assert b"event" in await reader.readuntil(b"0\r\n\r\n")
            writer.close()

    async def test_the_app_hears_the_client_leave(self) -> None:
        heard = asyncio.get_running_loop().create_future()

        async def waits(_scope: Any, receive: Any, send: Any) -> None:
            await receive()  # the (empty) body
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
            heard.set_result((await receive())["type"])

        async with running(waits) as (_, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await reader.readuntil(b"x\r\n")
            writer.close()
            assert await asyncio.wait_for(heard, 5) == "http.disconnect"


class TestBadClientsAndBadApps:
    async def test_garbage_is_answered_400_and_a_huge_head_431(self) -> None:
        async with running(echo) as (_, port):
            garbage = await raw_exchange(port, b"NOT HTTP AT ALL\r\n\r\n")
            huge = await raw_exchange(
                port, b"GET / HTTP/1.1\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 1) + b"\r\n\r\n"
            )
        assert garbage.startswith(b"HTTP/1.1 400 Bad Request")
        assert huge.startswith(b"HTTP/1.1 431 ")

    async def test_a_head_that_never_finishes_gets_408_and_idle_connections_close(self) -> None:
        async with running(echo, head_timeout_s=0.5, keep_alive_timeout_s=0.5) as (_, port):
            slow = await asyncio.wait_for(raw_exchange(port, b"GET / HTTP/1.1\r\nHost"), 5)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await reader.readuntil(b"http ")
            closed = await asyncio.wait_for(reader.read(), 5)  # the server closes it when idle
            writer.close()
        assert slow.startswith(b"HTTP/1.1 408 ")
        assert closed == b""

    async def test_an_app_that_fails_before_answering_gives_500_and_a_closed_connection(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        async def broken(_scope: Any, _receive: Any, _send: Any) -> None:
            raise ValueError("boom")

        async with running(broken) as (_, port):
            received = await raw_exchange(port, b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        assert received.startswith(b"HTTP/1.1 500 Internal Server Error")
        assert any("GET /x failed" in record.getMessage() for record in caplog.records)

    async def test_headers_given_as_any_iterable_are_written(self) -> None:
        async def generated(_scope: Any, _receive: Any, send: Any) -> None:
            pairs = ((b"content-type", b"text/plain"), (b"content-length", b"2"))
            headers = (pair for pair in pairs)  # ASGI allows any iterable
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"ok"})

        async with running(generated) as (_, port):
            received = await raw_exchange(
                port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
        assert received.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"content-type: text/plain\r\n" in received
        assert received.endswith(b"\r\n\r\nok")

    @pytest.mark.parametrize(
        "bad",
        [
            (b"location", b"/ok\r\nset-cookie: evil=1"),
            (b"location", b"/ok\nevil: 1"),
            (b"location", b"/ok\revil: 1"),
            (b"x-evil\r\nset-cookie", b"1"),
            (b"set-cookie: evil", b"1"),
        ],
        ids=["crlf-in-value", "lf-in-value", "cr-in-value", "crlf-in-name", "colon-in-name"],
    )
    async def test_a_header_with_a_line_break_is_refused_and_the_connection_closed(
        self, bad: tuple[bytes, bytes]
    ) -> None:
        async def injects(_scope: Any, _receive: Any, send: Any) -> None:
            headers = [(b"content-type", b"text/plain"), bad, (b"x-after", b"fine")]
            await send({"type": "http.response.start", "status": 302, "headers": headers})

        async with running(injects) as (_, port):
            received = await raw_exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"evil" not in received
        assert received.startswith(b"HTTP/1.1 500 ")

    async def test_forwarded_headers_are_believed_from_a_loopback_proxy(self) -> None:
        async with running(echo) as (_, port):
            received = await raw_exchange(
                port,
                b"GET /f HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.9, 127.0.0.1\r\n"
                b"X-Forwarded-Proto: https\r\nConnection: close\r\n\r\n",
            )
        assert received.endswith(b"GET /f? 203.0.113.9 https ")


class TestGracefulStop:
    async def test_requests_in_flight_finish_and_endless_streams_are_cut(self) -> None:
        finished = asyncio.Event()

        async def app(scope: Any, _receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            if scope["path"] == "/endless":
                while True:
                    await send({"type": "http.response.body", "body": b".", "more_body": True})
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)
            await send({"type": "http.response.body", "body": b"done"})
            finished.set()

        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        server = HttpServer(app, graceful_shutdown_s=1.0)
        serving = asyncio.create_task(server.serve([listener]))
        await server.listening.wait()
        short = asyncio.create_task(
            raw_exchange(port, b"GET /short HTTP/1.1\r\nHost: x\r\n\r\n", until=b"done")
        )
        endless = asyncio.create_task(
            raw_exchange(port, b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
        )
        await asyncio.sleep(0.1)
        server.should_exit = True
        await asyncio.wait_for(serving, 5)
        assert finished.is_set()
        assert (await short).endswith(b"done\r\n0\r\n\r\n")
        assert (await asyncio.wait_for(endless, 5)).startswith(b"HTTP/1.1 200 OK")
        assert server.tasks() == [] or all(task.done() for task in server.tasks())
        listener.close()
