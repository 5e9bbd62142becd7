"""The floor: a raw-ASGI pass-through on uvicorn + httptools + uvloop with a pooled client.

No auth, no JSON parsing, no routing: read the body, POST it to ``UPSTREAM + path``, stream the
answer back. The pooled client is corral's own HTTP/1.1 client (``corral.gateway.HttpTransport``:
keep-alive pool over httptools), the same one corral's gateway uses, so corral's ratio to this
floor measures the gateway and its governance, not a difference between HTTP clients.

    python benchmarks/peers/raw_asgi_passthrough.py PORT UPSTREAM_ROOT
"""

from __future__ import annotations

import sys
from typing import Any

import uvicorn

from corral.gateway import Headers, HttpTransport

_DROPPED = (b"connection", b"transfer-encoding", b"date", b"server", b"keep-alive")


def passthrough_app(upstream_root: str) -> Any:
    transport = HttpTransport()
    headers: Headers = [(b"content-type", b"application/json")]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
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


def main() -> None:
    port, upstream_root = int(sys.argv[1]), sys.argv[2].rstrip("/")
    uvicorn.run(
        passthrough_app(upstream_root),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        log_level="warning",
        access_log=False,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
