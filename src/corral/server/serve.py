"""The composition root: one process running the roles a :class:`ServerConfig` names.

``serve`` opens the store, makes sure the built-in namespaces exist, and runs the API server
(uvicorn, embedded) and the controller Manager (garbage collector, Model and Endpoint
controllers with their model-server supervisor) side by side in one event loop. Once every role
is ready it publishes ``STATE_DIR/server.json`` so the CLI finds it; SIGINT/SIGTERM stop every
role gracefully, and whatever happens the file is removed and the store closed on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from corral.apiserver import create_app, ensure_builtin_namespaces, load_or_create_admin_token
from corral.client.discovery import TOKEN_FILE, remove_server_info, write_server_info
from corral.controllers import add_model_serving
from corral.controlplane import GarbageCollector, Manager
from corral.runtimes import Supervisor
from corral.server.config import (
    APISERVER,
    CONTROLLERS,
    ServerConfig,
    prepare_state_dir,
    redact_url,
)
from corral.store import Store, open_store

GRACEFUL_SHUTDOWN_S = 3
"""How long open requests (watch streams) may run on after a stop before they are cut."""
_READY_POLL_S = 0.01
_ON_READY = "on-ready hook"
_FORCED = "stopped at once on a second signal; work in flight was cut"

_log = logging.getLogger(__name__)
_UVICORN_LOG = logging.getLogger("uvicorn.error")


class ServerError(Exception):
    """The server could not start or a role failed; the message says which and why."""


@dataclass(frozen=True)
class ServerInfo:
    """What a started server tells its caller (``corral up`` prints it)."""

    url: str | None
    """None when the process does not run the API server."""
    pid: int
    state_dir: Path
    store: str
    """The store URL with any password redacted."""
    roles: frozenset[str]
    identity: str
    token_path: Path | None
    new_token: str | None
    """The admin token, only when this start created it (show it once)."""


OnReady = Callable[[ServerInfo], Coroutine[Any, Any, None]]


def run(config: ServerConfig, *, on_ready: OnReady | None = None) -> None:
    """Run :func:`serve` on a uvloop event loop until a signal stops it."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        try:
            runner.run(serve(config, on_ready=on_ready))
        except asyncio.CancelledError:
            # A second signal before the roles started (say, while the store connects).
            raise ServerError(_FORCED) from None


async def serve(
    config: ServerConfig,
    *,
    on_ready: OnReady | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until ``stop`` is set (or SIGINT/SIGTERM); raise ServerError when a role fails.

    ``on_ready`` runs once everything serves; if it raises, the server stops and the error
    propagates.
    """
    stop = stop or asyncio.Event()
    state_dir = prepare_state_dir(config.state_dir)
    store_url = config.resolved_store_url
    with _Signals(stop).installed() as signals:
        try:
            store = await open_store(store_url)
        except Exception as error:
            # Store errors may quote the URL they were given, password and all.
            shown = redact_url(store_url)
            reason = str(error).replace(store_url, shown)
            raise ServerError(f"cannot open the store {shown}: {reason}") from None
        try:
            await ensure_builtin_namespaces(store)
            await _run_roles(config, store, state_dir, stop, on_ready)
        except asyncio.CancelledError:
            if not signals.forced:
                raise
            raise ServerError(
                "stopped at once on a second signal; work in flight was cut"
            ) from None
        finally:
            remove_server_info(state_dir, os.getpid())
            await store.close()


async def _run_roles(
    config: ServerConfig,
    store: Store,
    state_dir: Path,
    stop: asyncio.Event,
    on_ready: OnReady | None,
) -> None:
    workers: dict[str, asyncio.Task[Any]] = {}
    http: _EmbeddedUvicorn | None = None
    listener: socket.socket | None = None
    manager: Manager | None = None
    supervisor: Supervisor | None = None
    token_path: Path | None = None
    new_token: str | None = None
    ended_by: str | None = None
    identity = config.resolved_identity
    try:
        if APISERVER in config.roles:
            token, created = load_or_create_admin_token(state_dir)
            token_path, new_token = state_dir / TOKEN_FILE, (token if created else None)
            listener = _listen(config.host, config.port)
            http = _EmbeddedUvicorn(_uvicorn_config(create_app(store, admin_token=token)))
            quiet_shutdown = _QuietShutdown(http)
            _UVICORN_LOG.addFilter(quiet_shutdown)
            workers[APISERVER] = asyncio.create_task(http.serve(sockets=[listener]))
        if CONTROLLERS in config.roles:
            manager = Manager(store, identity=identity, leader_election=config.uses_leader_election)
            manager.add(GarbageCollector(manager))
            supervisor = add_model_serving(manager, state_dir)
            workers[CONTROLLERS] = asyncio.create_task(manager.run(stop))

        # A replica in an election may stand by for good: its serving is readiness enough.
        awaited = None if config.uses_leader_election else manager
        if not await _until_ready(http, awaited, workers, stop):
            return
        url = _url_of(listener) if listener is not None else None
        info = ServerInfo(
            url=url,
            pid=os.getpid(),
            state_dir=state_dir,
            store=redact_url(config.resolved_store_url),
            roles=config.roles,
            identity=identity,
            token_path=token_path,
            new_token=new_token,
        )
        if url is not None:
            write_server_info(state_dir, url, info.pid)
        _log.info(
            "corral ready: roles %s, url %s, store %s, identity %s",
            ",".join(sorted(config.roles)),
            url or "-",
            info.store,
            identity,
        )
        if on_ready is not None:
            workers[_ON_READY] = asyncio.create_task(on_ready(info))
        ended_by = await _until_stopped(workers, stop)
    finally:
        stop.set()
        if http is not None:
            http.should_exit = True
        try:
            outcomes = await asyncio.gather(*workers.values(), return_exceptions=True)
            if http is not None:
                # Requests cut at the end of the grace period are cancelled, not yet finished:
                # let them unwind (closing their store watches) before the store closes.
                await asyncio.gather(*list(http.server_state.tasks), return_exceptions=True)
        finally:
            if supervisor is not None:
                # Model servers are this process's children: none outlives it.
                await supervisor.stop_all()
            if listener is not None:
                listener.close()
            if http is not None:
                _UVICORN_LOG.removeFilter(quiet_shutdown)
    _raise_failure(dict(zip(workers, outcomes, strict=True)), ended_by)


async def _until_ready(
    http: _EmbeddedUvicorn | None,
    manager: Manager | None,
    workers: dict[str, asyncio.Task[Any]],
    stop: asyncio.Event,
) -> bool:
    """True once every role serves; False when stopped first. A role that dies raises."""
    while not stop.is_set():
        for role, task in workers.items():
            if task.done():
                error = None if task.cancelled() else task.exception()
                raise ServerError(f"{role} stopped while starting: {error or 'it exited'}")
        http_ready = http is None or http.started
        manager_ready = manager is None or manager.ready
        if http_ready and manager_ready:
            return True
        await asyncio.sleep(_READY_POLL_S)
    return False


async def _until_stopped(workers: dict[str, asyncio.Task[Any]], stop: asyncio.Event) -> str | None:
    """Wait for the stop signal (None), or for a role to end by itself (its name).

    The on-ready hook ending well is no reason to stop; it failing is (its name is returned).
    """
    stop_waiter = asyncio.create_task(stop.wait())
    names = {task: name for name, task in workers.items()}
    pending: set[asyncio.Task[Any]] = {*workers.values(), stop_waiter}
    try:
        while True:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if stop_waiter in done:
                return None
            for task in done:
                if names[task] != _ON_READY or task.cancelled() or task.exception() is not None:
                    return names[task]
    finally:
        stop_waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stop_waiter


def _raise_failure(outcomes: dict[str, Any], ended_by: str | None) -> None:
    for name, outcome in outcomes.items():
        if isinstance(outcome, Exception) and not isinstance(outcome, asyncio.CancelledError):
            if name == _ON_READY:
                raise outcome
            raise ServerError(f"{name} failed: {outcome}") from outcome
    if ended_by is not None and ended_by != _ON_READY:
        raise ServerError(f"{ended_by} exited unexpectedly")


class _QuietShutdown(logging.Filter):
    """Open watch streams are cut when the shutdown grace period ends: expected, not an error.

    uvicorn reports that as an ERROR and a CancelledError traceback per stream; once this
    server is stopping, those become one INFO line.
    """

    def __init__(self, server: uvicorn.Server) -> None:
        super().__init__()
        self._server = server

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._server.should_exit:
            return True
        if record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError):
            return False
        if record.getMessage().startswith("Cancel ") and "graceful shutdown" in record.msg:
            _log.info("closed open requests (watch streams) after the shutdown grace period")
            return False
        return True


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without its own signal handlers: this process's signals belong to ``serve``."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _uvicorn_config(app: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        lifespan="auto",
        access_log=False,
        log_config=None,
        log_level="warning",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )


def _listen(host: str, port: int) -> socket.socket:
    """Bind here rather than in uvicorn: a busy port becomes a clear error, and port 0 works."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        reason = error.strerror or str(error)
        raise ServerError(f"cannot listen on {host}:{port}: {reason}") from None
    return listener


def _url_of(listener: socket.socket) -> str:
    host, port = listener.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _Signals:
    """SIGINT/SIGTERM: the first stops gracefully; a second cuts the wait short.

    A graceful stop waits for in-flight work (requests, reconciles); an impatient operator
    (or a busy process) gets out with a second Ctrl+C, and the clean-up that matters still
    runs: model servers stopped, ``server.json`` removed, the store closed.
    """

    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop
        self.forced = False
        self._main = asyncio.current_task()

    @contextlib.contextmanager
    def installed(self) -> Iterator[_Signals]:
        loop = asyncio.get_running_loop()
        handled = (signal.SIGINT, signal.SIGTERM)
        for signum in handled:
            loop.add_signal_handler(signum, self._on_signal, signum)
        try:
            yield self
        finally:
            for signum in handled:
                loop.remove_signal_handler(signum)

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if not self.stop.is_set():
            _log.info("%s received: stopping (send it again to stop at once)", name)
            self.stop.set()
        elif not self.forced and self._main is not None:
            _log.warning(
                "%s received again: stopping now, without waiting for work in flight", name
            )
            self.forced = True
            self._main.cancel()
