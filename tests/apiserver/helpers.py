"""Objects and paths the API server tests share."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from starlette.types import ASGIApp

TOKEN = "test-admin-token"
API = "/apis/corral.dev/v1alpha1"


def model(name: str, namespace: str | None = "default", **metadata: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Model",
        "metadata": {"name": name, **metadata},
        "spec": {"source": f"file:///models/{name}.gguf"},
    }
    if namespace is not None:
        obj["metadata"]["namespace"] = namespace
    return obj


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "corral.dev/v1alpha1", "kind": "Namespace", "metadata": {"name": name}}


def models_path(namespace: str = "default", name: str = "") -> str:
    path = f"{API}/namespaces/{namespace}/models"
    return f"{path}/{name}" if name else path


@asynccontextmanager
async def running_uvicorn(
    app: ASGIApp, **options: Any
) -> AsyncIterator[tuple[str, uvicorn.Server]]:
    """``app`` under real uvicorn (httptools) on a free loopback port: (base URL, server)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, lifespan="off", ws="none", http="httptools", log_level="warning", **options
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        while not server.started:
            if serving.done():
                serving.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", server
    finally:
        server.should_exit = True
        await serving
        listener.close()
