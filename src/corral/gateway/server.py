"""How to run the gateway under uvicorn at full speed.

uvloop and httptools instead of asyncio and h11; no access log (a formatted record per request
is a visible share of the per-request budget, and the gateway's own telemetry replaces it); no
websocket protocol and no ASGI-version sniffing. Used by the composition root, the tests and
the benchmark.
"""

from __future__ import annotations

from typing import Any

import uvicorn

from corral.gateway.app import Gateway


def gateway_server_config(
    app: Gateway, *, host: str = "127.0.0.1", port: int = 8080, **overrides: Any
) -> uvicorn.Config:
    """A ``uvicorn.Config`` for ``app``; keyword ``overrides`` replace any setting."""
    settings: dict[str, Any] = {
        "loop": "uvloop",
        "http": "httptools",
        "lifespan": "on",
        "interface": "asgi3",
        "ws": "none",
        "access_log": False,
        "server_header": False,
    }
    settings.update(overrides)
    return uvicorn.Config(app, host=host, port=port, **settings)
