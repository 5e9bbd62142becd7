"""The floor: a raw-ASGI pass-through on uvicorn + httptools + uvloop with a pooled client.

No auth, no JSON parsing, no routing: read the body, POST it to ``UPSTREAM + path``, stream the
answer back. Two pooled clients, chosen by ``--client``:

- ``aiohttp`` (the default, the issue's floor): aiohttp's ``ClientSession`` with one keep-alive
  pool, the pooled client a Python ASGI service would reach for. Runs with the benchmark venv's
  Python (it holds aiohttp; corral's own venv does not need it).
- ``corral``: corral's own HTTP/1.1 client (``corral.gateway.HttpTransport``: keep-alive pool
  over httptools), the one corral's gateway uses. A stricter floor: about twice the throughput
  of the first on this machine, so corral's ratio to it measures the gateway and its governance
  alone, with no difference between HTTP clients in it. Runs with corral's venv.

    python benchmarks/peers/raw_asgi_passthrough.py [--client aiohttp|corral] PORT UPSTREAM_ROOT
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
_DROPPED = (b"connection", b"transfer-encoding", b"date", b"server", b"keep-alive")
_JSON = (b"content-type", b"application/json")


async def _read_body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        piece: bytes = message.get("body", b"")
        body += piece
        if not message.get("more_body"):
            return body


def corral_client_app(upstream_root: str) -> App:
    from corral.gateway import Headers, HttpTransport  # corral's venv only

    transport = HttpTransport()
    headers: Headers = [_JSON]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        response = await transport.send("POST", upstream_root + scope["path"], headers, body)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": [pair for pair in response.headers if pair[0] not in _DROPPED],
                }
            )
            async for chunk in response.chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await response.aclose()

    return app


def aiohttp_client_app(upstream_root: str) -> App:
    import aiohttp  # the benchmark venv only

    sessions: list[Any] = []  # made on the server's loop, at the first request

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if not sessions:
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=600)
            sessions.append(aiohttp.ClientSession(connector=connector, auto_decompress=False))
        body = await _read_body(receive)
        async with sessions[0].post(
            upstream_root + scope["path"], data=body, headers={"content-type": "application/json"}
        ) as upstream:
            content_type = upstream.headers.get("content-type", "application/json")
            await send(
                {
                    "type": "http.response.start",
                    "status": upstream.status,
                    "headers": [(b"content-type", content_type.encode("latin-1"))],
                }
            )
            async for chunk in upstream.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

    return app


CLIENTS = {"aiohttp": aiohttp_client_app, "corral": corral_client_app}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--client", choices=sorted(CLIENTS), default="aiohttp")
    parser.add_argument("port", type=int)
    parser.add_argument("upstream_root")
    args = parser.parse_args()
    uvicorn.run(
        CLIENTS[args.client](args.upstream_root.rstrip("/")),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        log_level="warning",
        access_log=False,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
