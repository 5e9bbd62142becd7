"""The pooled HTTP/1.1 client: framing, keep-alive reuse, and which failures may be retried."""

import asyncio

import pytest
from gateway_harness import closed_port, raw_server, read_request

from corral.gateway import HttpTransport, UpstreamError, UpstreamUnreachable

OK = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"ok":true}'


async def collect(response):
    try:
        return [chunk async for chunk in response.chunks]
    finally:
        await response.aclose()


async def answer_each_request_with(raw: bytes, reader, writer):
    while await read_request(reader) is not None:
        writer.write(raw)
        await writer.drain()


async def test_request_is_written_as_given_and_content_length_body_read():
    seen: list[bytes] = []

    async def handler(reader, writer):
        seen.append(await read_request(reader))
        writer.write(OK)

    async with raw_server(handler) as server:
        transport = HttpTransport()
        response = await transport.send(
            "POST", f"{server.url}/v1/chat/completions?x=1", [(b"content-type", b"a/b")], b"BODY"
        )
        assert response.status == 200
        assert (b"content-type", b"application/json") in response.headers
        assert b"".join(await collect(response)) == b'{"ok":true}'
        await transport.aclose()
    host = server.url.removeprefix("http://").encode()
    assert seen == [
        b"POST /v1/chat/completions?x=1 HTTP/1.1\r\nhost: " + host + b"\r\n"
        b"content-length: 4\r\ncontent-type: a/b\r\n\r\nBODY"
    ]


async def test_keep_alive_reuses_one_connection():
    async with raw_server(lambda r, w: answer_each_request_with(OK, r, w)) as server:
        transport = HttpTransport()
        for _ in range(3):
            assert b"".join(await collect(await transport.send("GET", server.url, [], b""))) == (
                b'{"ok":true}'
            )
        await transport.aclose()
    assert server.connections == 1


async def test_connection_close_response_is_not_reused():
    closing = OK.replace(b"content-length", b"connection: close\r\ncontent-length")
    async with raw_server(lambda r, w: answer_each_request_with(closing, r, w)) as server:
        transport = HttpTransport()
        for _ in range(2):
            await collect(await transport.send("GET", server.url, [], b""))
        await transport.aclose()
    assert server.connections == 2


async def test_chunked_body_is_yielded_as_each_chunk_arrives():
    client_got_first = asyncio.Event()

    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await client_got_first.wait()
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
        await answer_each_request_with(OK, reader, writer)

    async with raw_server(handler) as server:
        transport = HttpTransport()
        response = await transport.send("POST", server.url, [], b"{}")
        async with asyncio.timeout(10):
            assert await anext(response.chunks) == b"first"
            client_got_first.set()
            assert await collect(response) == [b"second"]
        await collect(await transport.send("POST", server.url, [], b"{}"))
        await transport.aclose()
    assert server.connections == 1


async def test_body_until_close_is_read_to_the_end():
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nno framing at all")

    async with raw_server(handler) as server:
        transport = HttpTransport()
        response = await transport.send("GET", server.url, [], b"")
        assert b"".join(await collect(response)) == b"no framing at all"
        await transport.aclose()


async def test_pooled_connection_closed_by_the_server_is_retried_on_a_fresh_one():
    async def handler(reader, writer):
        await read_request(reader)
        if server.connections == 1:
            writer.write(OK)
            await writer.drain()
            await read_request(reader)  # the reused connection: hang up without answering
            return
        writer.write(OK)

    async with raw_server(handler) as server:
        transport = HttpTransport()
        await collect(await transport.send("GET", server.url, [], b""))
        response = await transport.send("GET", server.url, [], b"")
        assert b"".join(await collect(response)) == b'{"ok":true}'
        await transport.aclose()
    assert server.connections == 2


async def test_fresh_connection_closed_before_any_byte_is_unreachable():
    async def handler(reader, _writer):
        await read_request(reader)

    async with raw_server(handler) as server:
        transport = HttpTransport()
        with pytest.raises(UpstreamUnreachable, match="closed the connection before responding"):
            await transport.send("GET", server.url, [], b"")
        await transport.aclose()


async def test_refused_connection_is_unreachable():
    transport = HttpTransport()
    with pytest.raises(UpstreamUnreachable, match=r"cannot connect to 127\.0\.0\.1:"):
        await transport.send("GET", f"http://127.0.0.1:{closed_port()}/v1/models", [], b"")
    await transport.aclose()


async def test_no_headers_in_time_is_unreachable():
    never = asyncio.Event()

    async def handler(reader, _writer):
        await read_request(reader)
        await never.wait()

    async with raw_server(handler) as server:
        transport = HttpTransport(header_timeout=0.05)
        with pytest.raises(UpstreamUnreachable, match=r"sent no response headers within 0\.05s"):
            await transport.send("GET", server.url, [], b"")
        await transport.aclose()


async def test_malformed_response_is_unreachable():
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"SMTP ready\r\n\r\n")

    async with raw_server(handler) as server:
        transport = HttpTransport()
        with pytest.raises(UpstreamUnreachable, match="malformed HTTP response"):
            await transport.send("GET", server.url, [], b"")
        await transport.aclose()


async def test_close_mid_body_is_an_error_that_is_not_retryable():
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b")

    async with raw_server(handler) as server:
        transport = HttpTransport()
        response = await transport.send("GET", server.url, [], b"")
        with pytest.raises(UpstreamError, match="closed the connection mid-body") as caught:
            await collect(response)
        assert not isinstance(caught.value, UpstreamUnreachable)
        await transport.aclose()


async def test_abandoned_body_drops_its_connection():
    async def handler(reader, writer):
        while await read_request(reader) is not None:
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n")
            await writer.drain()

    async with raw_server(handler) as server:
        transport = HttpTransport()
        for _ in range(2):
            response = await transport.send("GET", server.url, [], b"")
            assert await anext(response.chunks) == b"abc"
            await response.aclose()
        await transport.aclose()
    assert server.connections == 2


async def test_aclose_closes_idle_connections():
    closed = asyncio.Event()

    async def handler(reader, writer):
        await read_request(reader)
        writer.write(OK)
        await writer.drain()
        if await read_request(reader) is None:
            closed.set()

    async with raw_server(handler) as server:
        transport = HttpTransport()
        await collect(await transport.send("GET", server.url, [], b""))
        await transport.aclose()
        async with asyncio.timeout(10):
            await closed.wait()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://host/x", "must start with http:// or https://"),
        ("http://host:99999/x", "port '99999' is not 1..65535"),
        ("http://:80/x", "has no host"),
    ],
)
async def test_bad_upstream_url_is_a_clear_error(url, message):
    transport = HttpTransport()
    with pytest.raises(ValueError, match=message):
        await transport.send("GET", url, [], b"")


async def test_interim_response_is_skipped_for_the_final_one():
    async def handler(reader, writer):
        await answer_each_request_with(
            b"HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n" + OK, reader, writer
        )

    async with raw_server(handler) as server:
        transport = HttpTransport()
        for _ in range(2):
            response = await transport.send("GET", server.url, [], b"")
            assert response.status == 200
            assert (b"link", b"</x>") not in response.headers
            assert b"".join(await collect(response)) == b'{"ok":true}'
        await transport.aclose()
    assert server.connections == 1


async def test_a_lagging_reader_pauses_the_upstream_instead_of_buffering_it_all():
    piece = b"y" * 65536
    pieces = 128  # 8 MiB, sent as fast as the socket takes it

    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % (len(piece) * pieces))
        for _ in range(pieces):
            writer.write(piece)
            await writer.drain()

    async with raw_server(handler) as server:
        transport = HttpTransport()
        response = await transport.send("GET", server.url, [], b"")
        received = len(await anext(response.chunks))
        await asyncio.sleep(0.3)  # the upstream could send everything meanwhile
        state = response.chunks._state
        assert state.buffered < 2**20, f"{state.buffered} bytes buffered while the reader lagged"
        async for chunk in response.chunks:
            received += len(chunk)
        await response.aclose()
        await transport.aclose()
    assert received == len(piece) * pieces
