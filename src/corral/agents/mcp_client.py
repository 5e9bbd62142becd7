"""MCP connections to Tools through the official ``mcp`` SDK, and the runtime's ``ToolCaller``.

Where it sits: the agent runtime's executor calls :meth:`McpToolCaller.call` for every tool
activity (``corral.agents.activities``); the Tool controller (``corral.controllers.tool``)
uses the same :class:`McpToolCaller` to connect and list each Tool's tools into its status.

One :class:`McpConnection` per Tool is a supervisor task that owns the SDK session (the SDK's
contexts must be entered and left by one task) while callers send requests through it from
their own tasks. A stdio server is spawned by the supervisor, its stderr captured to a log
file, and respawned with exponential backoff when it exits; an idle connection is pinged so a
dead server is noticed before the next call. Each ``tools/call`` carries the activity's
idempotency key (and the session's workload token for the tool) in the request ``_meta``.
Errors name the Tool and what went wrong, with credential values redacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, cast

import httpx2
from mcp import ClientSession, MCPError, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT, PaginatedRequestParams, RequestParamsMeta

from corral.agents.mcp_config import ServerConfig

logger = logging.getLogger(__name__)

IDEMPOTENCY_META = "corral/idempotencyKey"
TOKEN_META = "corral/token"
STDERR_TAIL_BYTES = 2_000


class ToolCallError(RuntimeError):
    """A tool call that failed: ``reason`` is a short code, the message says what happened."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class McpConnection:
    """A supervised connection to one MCP server; start it once, close it once."""

    def __init__(
        self,
        config: ServerConfig,
        log_dir: Path,
        *,
        on_change: Callable[[str], None] | None = None,
        connect_timeout: float = 15.0,
        ping_interval: float = 5.0,
        backoff: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        self.config = config
        self.restarts = 0
        self.reason = "Connecting"
        self.message = "not connected yet"
        self._log = log_dir / (config.key.replace("/", "_") + ".stderr.log")
        self._on_change = on_change
        self._connect_timeout = connect_timeout
        self._ping_interval = ping_interval
        self._backoff = backoff
        self._session: ClientSession | None = None
        self._ready = asyncio.Event()
        self._lost = asyncio.Event()
        self._failed = asyncio.Event()  # replaced after each failed attempt to connect
        self._task: asyncio.Task[None] | None = None
        self._http_status = ""

    @property
    def connected(self) -> bool:
        return self._session is not None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._supervise(), name=f"mcp {self.config.key}")

    async def close(self) -> None:
        """Stop the supervisor: the SDK closes the session and kills the server's process tree."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_ready(self, seconds: float) -> bool:
        """Wait until connected, for at most ``seconds`` or until the next connection attempt
        fails (a caller then learns why at once instead of waiting out the backoff)."""
        if self._ready.is_set():
            return True
        failed = asyncio.ensure_future(self._failed.wait())
        ready = asyncio.ensure_future(self._ready.wait())
        try:
            await asyncio.wait((failed, ready), timeout=seconds, return_when="FIRST_COMPLETED")
        finally:
            failed.cancel()
            ready.cancel()
        return self._ready.is_set()

    def stderr_tail(self) -> str:
        """The end of what the server wrote on stderr (credentials redacted)."""
        try:
            with self._log.open("rb") as file:
                file.seek(0, 2)
                file.seek(max(0, file.tell() - STDERR_TAIL_BYTES))
                text = file.read().decode(errors="replace")
        except OSError:
            return ""
        return self.config.redact(text.strip())

    async def list_tools(self, seconds: float | None = None) -> list[dict[str, Any]]:
        """``[{name, description, inputSchema}]``, every page (each within ``seconds``)."""
        limit = seconds or self.config.timeout_seconds
        session = await self._session_within(limit)
        tools: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(100):  # a server whose cursor never ends cannot hang us
            try:
                async with asyncio.timeout(limit):
                    page = await (
                        session.list_tools(params=_page(cursor)) if cursor else session.list_tools()
                    )
            except TimeoutError:
                raise ToolCallError(
                    "timeout", f"tool {self.config.key}: tools/list timed out"
                ) from None
            except MCPError as error:
                raise self._mcp_error("tools/list", error) from None
            for tool in page.tools:
                tools.append(
                    {
                        "name": tool.name,
                        "description": tool.description or "",
                        "inputSchema": dict(tool.input_schema),
                    }
                )
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    async def call(
        self,
        name: str,
        arguments: Mapping[str, Any],
        idempotency_key: str,
        token: str = "",
        seconds: float | None = None,
    ) -> dict[str, Any]:
        """The MCP result as a dict (``content``, ``structuredContent``, ``isError``)."""
        limit = seconds or self.config.timeout_seconds
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        session = await self._session_within(limit)
        fields: dict[str, Any] = {IDEMPOTENCY_META: idempotency_key}
        if token:
            fields[TOKEN_META] = token
        meta = cast(RequestParamsMeta, fields)  # an open map (PEP 728), beyond mypy
        remaining = max(0.001, deadline - loop.time())
        try:
            async with asyncio.timeout(remaining):
                result = await session.call_tool(
                    name, dict(arguments), read_timeout_seconds=remaining, meta=meta
                )
        except TimeoutError:
            raise self._timeout(name, limit) from None
        except MCPError as error:
            if error.code == REQUEST_TIMEOUT:
                raise self._timeout(name, limit) from None
            raise self._mcp_error(f"{name}", error) from None
        except Exception as error:  # the SDK could not parse what the server answered
            raise ToolCallError(
                "malformed_result",
                self.config.redact(
                    f"tool {self.config.key}: {name} answered a malformed result: "
                    f"{_first_line(error)}"
                ),
            ) from None
        dumped = result.model_dump(mode="json", by_alias=True, exclude_none=True)
        dumped.pop("resultType", None)
        return _redacted(dumped, self.config)

    # -- supervision ---------------------------------------------------------------------------

    async def _session_within(self, seconds: float) -> ClientSession:
        if not await self.wait_ready(seconds) or self._session is None:
            raise ToolCallError(
                "unavailable",
                f"tool {self.config.key} is not connected ({self.reason}): {self.message}",
            )
        return self._session

    def _timeout(self, name: str, limit: float) -> ToolCallError:
        return ToolCallError(
            "timeout", f"tool {self.config.key}: {name} did not answer within {limit:g}s"
        )

    def _mcp_error(self, what: str, error: MCPError) -> ToolCallError:
        if error.code == CONNECTION_CLOSED:
            # Callers from now on wait for the supervisor's new session, not this dead one.
            self._lost.set()
            self._ready.clear()
            self._session = None
            tail = self.stderr_tail()
            detail = f"; stderr: {tail[-500:]}" if tail else ""
            return ToolCallError(
                "server_exited",
                f"tool {self.config.key}: the server closed the connection during {what}{detail}",
            )
        return ToolCallError(
            "tool_error", self.config.redact(f"tool {self.config.key}: {what}: {error.message}")
        )

    def _set(self, reason: str, message: str) -> None:
        changed = (reason, message) != (self.reason, self.message)
        self.reason, self.message = reason, self.config.redact(message)
        if changed and self._on_change is not None:
            self._on_change(self.config.key)

    async def _supervise(self) -> None:
        delay = self._backoff[0]
        while True:
            started = asyncio.get_running_loop().time()
            try:
                await self._run_once()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the server failed: say why, back off, try again
                was_connected = self._ready.is_set() or self._lost.is_set()
                self._set(*self._failure(error))
                if not was_connected:  # waiting callers give up; after a loss they wait on
                    self._failed.set()
                    self._failed = asyncio.Event()
            finally:
                self._session = None
                self._ready.clear()
            if asyncio.get_running_loop().time() - started > 30.0:
                delay = self._backoff[0]  # it ran a good while: a fresh crash, not a loop
            self.restarts += 1
            logger.info("tool %s: %s; retrying in %.1fs", self.config.key, self.message, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._backoff[1])

    async def _run_once(self) -> None:
        config = self.config
        async with AsyncExitStack() as stack:
            if config.command is not None:
                if shutil.which(config.command) is None:
                    raise FileNotFoundError(config.command)
                self._log.parent.mkdir(parents=True, exist_ok=True)
                errlog = stack.enter_context(self._log.open("a", encoding="utf-8"))
                params = StdioServerParameters(
                    command=config.command, args=list(config.args), env=dict(config.env),
                    cwd=config.cwd,
                )  # fmt: skip
                streams = await stack.enter_async_context(stdio_client(params, errlog=errlog))
            else:
                assert config.url is not None
                self._http_status = ""
                client = await stack.enter_async_context(
                    httpx2.AsyncClient(
                        headers=dict(config.headers),
                        timeout=httpx2.Timeout(30.0, read=300.0),
                        event_hooks={"response": [self._note_status]},
                    )
                )
                streams = await stack.enter_async_context(
                    streamable_http_client(config.url, http_client=client)
                )
            session = await stack.enter_async_context(ClientSession(*streams))
            async with asyncio.timeout(self._connect_timeout):
                await session.initialize()
            self._lost.clear()
            self._session = session
            self._ready.set()
            self._set("Connected", f"{config.transport} server initialized")
            await self._watch(session)

    async def _note_status(self, response: httpx2.Response) -> None:
        # The SDK reports any non-2xx answer as one generic error; the status says why.
        if response.status_code >= 400:
            self._http_status = f"HTTP {response.status_code} {response.reason_phrase}".strip()

    async def _watch(self, session: ClientSession) -> None:
        """Return when the server is gone: a call saw the connection close, or a ping failed."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._ping_interval):
                    await self._lost.wait()
            if self._lost.is_set():
                raise ConnectionError("the server closed the connection")
            try:
                async with asyncio.timeout(self._connect_timeout):
                    await session.send_ping()
            except (MCPError, TimeoutError) as error:
                raise ConnectionError(f"the server stopped answering pings ({error})") from None

    def _failure(self, error: BaseException) -> tuple[str, str]:
        tail = self.stderr_tail()
        detail = f"; stderr: {tail[-500:]}" if tail else ""
        if isinstance(error, FileNotFoundError) and self.config.command is not None:
            return "CommandNotFound", f"command {self.config.command!r} was not found on PATH"
        if self.config.command is not None:
            return "ServerExited", f"{_first_line(error)}{detail}"
        if isinstance(error, TimeoutError):
            return "InitializeTimeout", f"{self.config.url} did not initialize in time"
        status = f" ({self._http_status})" if self._http_status else ""
        return "Unreachable", f"{self.config.url}: {_first_line(error)}{status}"


Resolve = Callable[[str], Awaitable[ServerConfig | None]]
"""``namespace/name -> the Tool's config`` (``None``: no such Tool); raises ``CredentialError``."""


class McpToolCaller:
    """The runtime's ``ToolCaller`` over MCP: one supervised connection per Tool.

    ``tool`` is ``namespace/name`` (a bare name is looked up in ``default_namespace``).
    Connections follow the Tool objects two ways: the Tool controller calls :meth:`ensure` and
    :meth:`remove` where it runs; ``resolve`` (e.g. ``corral.controllers.tool.store_tool_configs``)
    is asked on a call at most every ``resolve_seconds`` per Tool, so a changed spec or Secret
    reaches the connection where the controller does not run (or does not lead). Both may drive
    one caller: they build equal configs from the same objects, so neither restarts what the
    other started, and a process with both roles runs one server per Tool.

    Every connection's state changes (connected, exited, restarted) go to each listener
    (``on_change`` and :meth:`add_listener`) with the Tool's ``namespace/name``.
    """

    def __init__(
        self,
        log_dir: Path,
        *,
        default_namespace: str = "default",
        on_change: Callable[[str], None] | None = None,
        resolve: Resolve | None = None,
        resolve_seconds: float = 30.0,
        **connection_options: Any,
    ) -> None:
        self._log_dir = log_dir
        self._default_namespace = default_namespace
        self._listeners: list[Callable[[str], None]] = [on_change] if on_change else []
        self._resolve = resolve
        self._resolve_seconds = resolve_seconds
        self._resolved: dict[str, float] = {}
        self._resolving: dict[str, asyncio.Lock] = {}
        self._options = connection_options
        self._connections: dict[str, McpConnection] = {}

    def _key(self, tool: str) -> str:
        return tool if "/" in tool else f"{self._default_namespace}/{tool}"

    def get(self, key: str) -> McpConnection | None:
        return self._connections.get(self._key(key))

    def add_listener(self, on_change: Callable[[str], None]) -> None:
        """Also tell ``on_change`` of every connection's state changes from now on."""
        self._listeners.append(on_change)

    def _changed(self, key: str) -> None:
        for listener in self._listeners:
            listener(key)

    async def ensure(self, config: ServerConfig) -> McpConnection:
        """The connection for ``config.key``, (re)started when the config changed."""
        current = self._connections.get(config.key)
        if current is not None and current.config == config:
            return current
        if current is not None:
            await current.close()
        connection = McpConnection(config, self._log_dir, on_change=self._changed, **self._options)
        self._connections[config.key] = connection
        connection.start()
        return connection

    async def remove(self, key: str) -> None:
        connection = self._connections.pop(key, None)
        if connection is not None:
            await connection.close()

    async def close(self) -> None:
        for key in list(self._connections):
            await self.remove(key)

    async def call(
        self,
        tool: str,
        name: str,
        arguments: dict[str, Any],
        idempotency_key: str,
        token: str,
    ) -> Any:
        connection = await self._connection(self._key(tool))
        if connection is None:
            raise ToolCallError("unknown_tool", f"tool {tool!r} is not configured here")
        return await connection.call(name, arguments, idempotency_key, token)

    async def _connection(self, key: str) -> McpConnection | None:
        if self._resolve is None:
            return self._connections.get(key)
        async with self._resolving.setdefault(key, asyncio.Lock()):
            now = asyncio.get_running_loop().time()
            if key in self._connections and now - self._resolved.get(key, now) < (
                self._resolve_seconds
            ):
                return self._connections[key]
            try:
                config = await self._resolve(key)
            except LookupError as error:  # a credential's Secret or key is missing
                await self.remove(key)
                raise ToolCallError("unavailable", f"tool {key}: {error}") from None
            self._resolved[key] = now
            if config is None:
                await self.remove(key)
                return None
            return await self.ensure(config)


def _page(cursor: str) -> PaginatedRequestParams:
    return PaginatedRequestParams(cursor=cursor)


def _first_line(error: BaseException) -> str:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]  # the SDK's task groups wrap the one error that matters
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300]}" if text else type(error).__name__


def _redacted(result: dict[str, Any], config: ServerConfig) -> dict[str, Any]:
    """A result that echoes a credential has it replaced (the model must never see one)."""
    if not config.secrets:
        return result
    return {key: _redact_strings(value, config) for key, value in result.items()}


def _redact_strings(value: Any, config: ServerConfig) -> Any:
    if isinstance(value, str):
        return config.redact(value)
    if isinstance(value, list):
        return [_redact_strings(item, config) for item in value]
    if isinstance(value, dict):
        return {key: _redact_strings(item, config) for key, item in value.items()}
    return value
