"""The Tool controller: connect to each Tool's MCP server, list its tools, report them.

For every Tool it resolves the credentials (Secrets in the Tool's namespace), hands the
resulting :class:`~corral.agents.mcp_config.ServerConfig` to the shared
:class:`~corral.agents.mcp_client.McpToolCaller` (which spawns and supervises a stdio server,
or connects over streamable HTTP, and restarts the connection when the spec or a Secret
changes), lists the server's tools and writes what users and the agent runtime read:

- ``status.tools``: ``[{name, description, inputSchema}]``, as the server lists them;
- ``Connected``: the MCP session is up (reasons: ``Connected``, ``CommandNotFound``,
  ``ServerExited``, ``Unreachable``, ``InitializeTimeout``, ``SecretNotFound``, ``Connecting``);
- ``Ready``: connected and listed (``Listed``), or why not.

The connection's own changes (a crash, a reconnect) come back through a :class:`KeyChannel`,
so a crashed server shows in status without waiting for the resync. A deleted Tool's
connection (and process) is closed. The connections are the controller's own, living while
this process leads, unless it is handed the process's shared ones (``tools``: the agents
runtime's, in a process with both roles): then one server per Tool serves both the listing
and the agents' calls, and losing leadership leaves them to their owner, whose calls still
need them.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from corral.agents.mcp_client import McpConnection, McpToolCaller, Resolve, ToolCallError
from corral.agents.mcp_config import CredentialError, ServerConfig, server_config
from corral.api.errors import Conflict, NotFound
from corral.api.kinds.secret import SECRET
from corral.api.kinds.tool import TOOL, ToolSpec
from corral.api.objects import Object, ObjectKey
from corral.controlplane import Controller, KeyChannel, Manager, Result, Watch, set_condition
from corral.store.protocol import Store

logger = logging.getLogger(__name__)

SECRET_INDEX = "tools-by-secret"


class ToolReconciler:
    """Reconciles one Tool at a time against the shared MCP connections."""

    def __init__(
        self,
        store: Store,
        tools: McpToolCaller,
        *,
        connect_seconds: float = 2.0,
        resync_seconds: float = 60.0,
        retry_seconds: float = 5.0,
        owns_connections: bool = True,
    ) -> None:
        self._store = store
        self._tools = tools
        self._owns_connections = owns_connections
        self._connect_seconds = connect_seconds
        self._resync_seconds = resync_seconds
        self._retry_seconds = retry_seconds

    async def __call__(self, key: ObjectKey) -> Result:
        qualified = f"{key.namespace}/{key.name}"
        try:
            tool = await self._store.get(TOOL.kind, key.namespace, key.name)
        except NotFound:
            await self._tools.remove(qualified)
            return Result()
        if tool["metadata"].get("deletionTimestamp"):
            await self._tools.remove(qualified)
            return Result()
        spec: ToolSpec = TOOL.parse_spec(tool)
        generation = int(tool["metadata"].get("generation") or 0)
        status: dict[str, Any] = copy.deepcopy(tool.get("status") or {})
        status["transport"] = "stdio" if spec.mcp.stdio is not None else "http"
        try:
            secrets = await secret_lookup(self._store, key.namespace, spec)
            config = server_config(key.namespace, key.name, spec, secrets)
        except CredentialError as error:
            await self._tools.remove(qualified)
            self._not_connected(status, "SecretNotFound", str(error), generation)
            return await self._write(tool, status, self._retry_seconds)
        connection = await self._tools.ensure(config)
        # A slow server is not waited for here: its connection reports back on the channel.
        await connection.wait_ready(self._connect_seconds)
        if not connection.connected:
            self._not_connected(status, connection.reason, connection.message, generation)
            return await self._write(tool, status, self._retry_seconds)
        set_condition(status, "Connected", True, "Connected", connection.message, generation)
        try:
            listed = await connection.list_tools()
        except ToolCallError as error:
            set_condition(status, "Ready", False, "ListFailed", str(error), generation)
            return await self._write(tool, status, self._retry_seconds)
        status["tools"] = listed
        set_condition(status, "Ready", True, "Listed", _listed(listed), generation)
        return await self._write(tool, status, self._resync_seconds)

    async def reset(self) -> None:
        """Leadership lost, or shutdown: close every connection (stdio servers are stopped)
        when they are this controller's own; shared ones are their owner's to close."""
        if self._owns_connections:
            await self._tools.close()

    def _not_connected(
        self, status: dict[str, Any], reason: str, message: str, generation: int
    ) -> None:
        # The last listing stays (agents may still be configured from it); Ready says it's stale.
        set_condition(status, "Connected", False, reason, message, generation)
        set_condition(status, "Ready", False, reason, message, generation)

    async def _write(self, tool: Object, status: dict[str, Any], requeue: float) -> Result:
        status["observedGeneration"] = int(tool["metadata"].get("generation") or 0)
        if status != (tool.get("status") or {}):
            try:
                await self._store.update_status({**tool, "status": status})
            except (Conflict, NotFound):
                return Result(requeue_after=0.2)  # the newer version's event may not come
        return Result(requeue_after=requeue)


async def secret_lookup(
    store: Store, namespace: str, spec: ToolSpec
) -> Callable[[str], Mapping[str, str] | None]:
    """The data of the Secrets ``spec``'s credentials name (``None`` for a missing one)."""
    found: dict[str, Mapping[str, str] | None] = {}
    for credential in spec.credentials:
        if credential.secretRef in found:
            continue
        try:
            secret = await store.get(SECRET.kind, namespace, credential.secretRef)
        except NotFound:
            found[credential.secretRef] = None
            continue
        data = (secret.get("spec") or {}).get("data") or {}
        found[credential.secretRef] = {str(k): str(v) for k, v in data.items()}
    return found.get


def store_tool_configs(store: Store) -> Resolve:
    """A ``resolve`` for :class:`McpToolCaller` in a process without this controller (an
    agents-only worker): reads the Tool and its Secrets from the store when asked."""

    async def resolve(qualified: str) -> ServerConfig | None:
        namespace, _, name = qualified.partition("/")
        try:
            tool = await store.get(TOOL.kind, namespace, name)
        except NotFound:
            return None
        spec: ToolSpec = TOOL.parse_spec(tool)
        return server_config(namespace, name, spec, await secret_lookup(store, namespace, spec))

    return resolve


def _listed(tools: list[dict[str, Any]]) -> str:
    names = ", ".join(tool["name"] for tool in tools[:10])
    more = f" and {len(tools) - 10} more" if len(tools) > 10 else ""
    return f"{len(tools)} tool(s): {names}{more}" if tools else "the server lists no tools"


def _secrets_of(tool: Object) -> list[str]:
    namespace = tool["metadata"].get("namespace", "")
    credentials = (tool.get("spec") or {}).get("credentials") or []
    return sorted({f"{namespace}/{c.get('secretRef')}" for c in credentials if c.get("secretRef")})


def tool_controller(
    manager: Manager, log_dir: Path, *, tools: McpToolCaller | None = None
) -> tuple[Controller, McpToolCaller]:
    """The controller definition and the MCP connections it keeps (one per Tool): its own, or
    ``tools``, the process's shared connections (see the module docstring).

    Its own stdio servers' stderr goes to ``log_dir/<namespace>_<name>.stderr.log``.
    """
    channel = KeyChannel()

    def changed(qualified: str) -> None:
        namespace, _, name = qualified.partition("/")
        channel.send(ObjectKey(TOOL.kind, namespace, name))

    owned = tools is None
    if tools is None:
        tools = McpToolCaller(log_dir, on_change=changed)
    else:
        tools.add_listener(changed)  # a no-op while the controller does not run (no receiver)
    informer = manager.informer(TOOL.kind)
    if not informer.has_index(SECRET_INDEX):
        informer.add_index(SECRET_INDEX, _secrets_of)

    def referencing(secret: Object) -> Iterable[ObjectKey]:
        meta = secret["metadata"]
        return informer.by_index(SECRET_INDEX, f"{meta.get('namespace', '')}/{meta['name']}")

    reconciler = ToolReconciler(manager.store, tools, owns_connections=owned)
    controller = Controller(
        "tools",
        for_kind=TOOL.kind,
        reconciler=reconciler,
        watches=(Watch(SECRET.kind, referencing),),
        channels=(channel,),
        on_stop=reconciler.reset,
        max_concurrent_reconciles=4,
    )
    return controller, tools


def add_tools(
    manager: Manager, log_dir: Path, *, tools: McpToolCaller | None = None
) -> McpToolCaller:
    """Add the Tool controller to ``manager``; returns its connections (a ``ToolCaller``):
    ``tools`` when given (shared with the agents runtime), else its own."""
    controller, tools = tool_controller(manager, log_dir, tools=tools)
    manager.add(controller)
    return tools


__all__ = [
    "McpConnection",
    "ToolReconciler",
    "add_tools",
    "secret_lookup",
    "store_tool_configs",
    "tool_controller",
]
