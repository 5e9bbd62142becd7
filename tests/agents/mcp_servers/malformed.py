"""A raw JSON-RPC stdio MCP server (no SDK) whose tools/call answers are malformed.

It answers initialize and tools/list properly, then ``content`` that is not a list: what a
buggy server sends, which the official client refuses to parse.
"""

from __future__ import annotations

import json
import sys

TOOLS = [{"name": "broken", "description": "answers garbage", "inputSchema": {"type": "object"}}]


def answer(request_id: object, result: object) -> None:
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": request_id, "result": result}) + "\n")
    sys.stdout.flush()


for line in sys.stdin:
    message = json.loads(line)
    method, request_id = message.get("method"), message.get("id")
    if request_id is None:
        continue  # notifications
    if method == "initialize":
        answer(
            request_id,
            {
                "protocolVersion": message["params"]["protocolVersion"],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "malformed", "version": "1"},
            },
        )
    elif method == "tools/list":
        answer(request_id, {"tools": TOOLS})
    elif method == "tools/call":
        answer(request_id, {"content": "not a list", "isError": "maybe"})
    else:
        answer(request_id, {})
