"""A counting MCP server: each call appends the idempotency key it received to $COUNTER_FILE.

Tests read the file to check that every key arrived (and, after a crash, at most once as a side
effect: the tool skips a key it has already recorded, as an idempotent tool would).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("counter")


@server.tool()
def count(label: str, ctx: Context) -> str:
    """Count one call; a repeated idempotency key is not counted again."""
    meta: Any = ctx.request_context.meta or {}
    key = str(meta.get("corral/idempotencyKey") or "")
    path = Path(os.environ["COUNTER_FILE"])
    # Several server processes (one per corral worker) may share the file: check-and-append
    # under an exclusive lock, so a key is recorded once.
    with path.open("a+") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        file.seek(0)
        seen = file.read().split()
        if key and key in seen:
            return f"{label}: already counted {key}"
        file.write(key + "\n")
    return f"{label}: counted {key} ({len(seen) + 1})"


if __name__ == "__main__":
    server.run("stdio")
