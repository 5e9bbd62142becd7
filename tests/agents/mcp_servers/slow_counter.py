"""A slow counting MCP server: every call is logged, its side effect happens once per key.

Each ``count`` call appends ``start <idempotency key> <parent pid>`` to ``$COUNTER_DIR/calls``
when it begins (the parent is the corral worker that spawned this server), waits
``$COUNTER_DELAY`` seconds (a slow tool, so a worker can be killed while calls are in flight),
then records the key in ``$COUNTER_DIR/seen`` unless it is already there (an idempotent side
effect) and appends ``done <key> <parent pid>`` to the log. Several servers (one per worker)
share the files: every read-and-append holds an exclusive lock.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("slow-counter")
PARENT = os.getppid()  # read at start: once the worker dies this process is re-parented


def _append(name: str, line: str) -> None:
    with (Path(os.environ["COUNTER_DIR"]) / name).open("a") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        file.write(line + "\n")


def _record_once(key: str) -> bool:
    with (Path(os.environ["COUNTER_DIR"]) / "seen").open("a+") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        file.seek(0)
        if key in file.read().split():
            return False
        file.write(key + "\n")
        return True


@server.tool()
async def count(label: str, ctx: Context) -> str:
    """Count one call, slowly; a repeated idempotency key is not counted again."""
    meta: Any = ctx.request_context.meta or {}
    key = str(meta.get("corral/idempotencyKey") or "")
    _append("calls", f"start {key} {PARENT}")
    await asyncio.sleep(float(os.environ.get("COUNTER_DELAY", "1")))
    counted = _record_once(key)
    _append("calls", f"done {key} {PARENT}")
    return f"{label}: {'counted' if counted else 'already counted'} {key}"


if __name__ == "__main__":
    server.run("stdio")
