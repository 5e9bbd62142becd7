"""A bare aiohttp pass-through: aiohttp's server and its pooled ClientSession, on uvloop.

Read the body, POST it to ``UPSTREAM + path`` with one shared ``ClientSession`` (keep-alive,
no connection cap), stream the answer back. Runs with the benchmark venv's Python (the one
that holds LiteLLM, which depends on aiohttp), so corral's own venv needs no aiohttp.

    python benchmarks/peers/aiohttp_passthrough.py PORT UPSTREAM_ROOT
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp
import uvloop
from aiohttp import web


def make_app(upstream_root: str) -> web.Application:
    app = web.Application()
    sessions: list[aiohttp.ClientSession] = []

    async def open_session(_app: web.Application) -> None:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=600)
        sessions.append(aiohttp.ClientSession(connector=connector, auto_decompress=False))

    async def close_session(_app: web.Application) -> None:
        await sessions[0].close()

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        async with sessions[0].post(
            upstream_root + request.path,
            data=body,
            headers={"content-type": "application/json"},
        ) as upstream:
            response = web.StreamResponse(status=upstream.status)
            response.content_type = upstream.content_type
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    app.router.add_route("POST", "/{tail:.*}", forward)
    return app


def main() -> None:
    port, upstream_root = int(sys.argv[1]), sys.argv[2].rstrip("/")
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(
        make_app(upstream_root),
        host="127.0.0.1",
        port=port,
        access_log=None,
        print=None,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
