"""A weather MCP server (the official SDK's MCPServer) with tools that misbehave on purpose.

stdio by default; ``--http PORT`` serves streamable HTTP on 127.0.0.1 and answers 401 unless
the request carries ``X-Weather-Key`` equal to ``$WEATHER_KEY`` (a credential corral injects).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from typing import Any

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("weather")


@server.tool()
def get_weather(city: str, ctx: Context) -> str:
    """The weather in a city, and the idempotency key the call carried."""
    meta: Any = ctx.request_context.meta or {}
    return f"sunny in {city}; key={meta.get('corral/idempotencyKey')}"


@server.tool()
def secret_fingerprint() -> str:
    """sha256 of the injected WEATHER_TOKEN (proves injection without showing it)."""
    return hashlib.sha256(os.environ.get("WEATHER_TOKEN", "").encode()).hexdigest()


@server.tool()
def leak_secret() -> str:
    """Returns the injected WEATHER_TOKEN as is: corral must redact it."""
    print(f"leaking {os.environ.get('WEATHER_TOKEN', '')}", file=sys.stderr, flush=True)
    return f"the token is {os.environ.get('WEATHER_TOKEN', '')}"


@server.tool()
def pid() -> int:
    """The server's process id (tests check it is gone after shutdown)."""
    return os.getpid()


@server.tool()
def hang() -> str:
    """Never answers in time."""
    time.sleep(3600)
    return "late"


@server.tool()
def crash() -> str:
    """The process dies mid-call."""
    print("weather: crashing on purpose", file=sys.stderr, flush=True)
    os._exit(3)


def serve_http(port: int) -> None:
    import uvicorn
    from starlette.responses import PlainTextResponse
    from starlette.types import ASGIApp, Receive, Scope, Send

    app = server.streamable_http_app(host="127.0.0.1")
    expected = os.environ["WEATHER_KEY"].encode()

    def guarded(inner: ASGIApp) -> ASGIApp:
        async def guard(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and dict(scope["headers"]).get(b"x-weather-key") != expected:
                await PlainTextResponse("missing X-Weather-Key", status_code=401)(
                    scope, receive, send
                )
                return
            await inner(scope, receive, send)

        return guard

    uvicorn.run(guarded(app), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        serve_http(int(sys.argv[2]))
    else:
        server.run("stdio")
