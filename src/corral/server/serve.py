"""The composition root: one process running the roles a :class:`ServerConfig` names.

``serve`` opens the store, makes sure the built-in namespaces and Policy exist, and runs on one
event loop and one port (see ``corral.server.http``):

- ``apiserver``: the API server (``/apis/...``, ``/healthz``, ``/readyz``, ...);
- ``controllers``: the controller Manager (garbage collector, Model and Endpoint controllers
  with their model-server supervisor) and the Endpoint logs route;
- ``gateway``: the OpenAI-compatible gateway (``/v1/...``), fed by its own route feed and
  access feed from the store's watch; callers authenticate with the admin token, an API key or
  a workload token, and every request is a policy decision (see ``corral.server.governance``).

Beside the roles run the governance extensions (``corral.server.extensions``): telemetry,
audit, workload identity, usage records, rate limits, budgets and guardrails. They wrap the
store, start before the roles, add their stages to the gateway and their routes to the API
server, and close after the roles stopped.

A process without the API server answers ``/healthz`` and ``/readyz`` itself. Once every role is
ready it publishes ``STATE_DIR/server.json`` (when it runs the API server) so the CLI finds it;
SIGINT/SIGTERM stop every role gracefully, and whatever happens the file is removed, the
gateway's upstream connections and the store closed on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import logging
import os
import signal
import socket
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.routing import Router

from corral.api.kinds.deviceclass import use_selector_check
from corral.apiserver import create_app, ensure_builtin_namespaces, load_or_create_admin_token
from corral.client.discovery import TOKEN_FILE, remove_server_info, write_server_info
from corral.controllers import ReplicaDevices, add_model_serving
from corral.controllers.resourceclaim import resourceclaim_controller
from corral.controllers.tool import add_tools
from corral.controlplane import GarbageCollector, Manager
from corral.devices.cel_cache import device_predicate
from corral.devices.cel_checks import selector_problems
from corral.gateway import API_PREFIX, Gateway, RouteSource, Stage, create_gateway
from corral.metering.estimate import estimate_prompt_tokens
from corral.runtimes import Supervisor
from corral.server.access_feed import AccessFeed
from corral.server.agents_extension import AgentsExtension
from corral.server.audit_extension import AuditExtension
from corral.server.budget_extension import BudgetExtension
from corral.server.config import (
    APISERVER,
    CONTROLLERS,
    GATEWAY,
    ServerConfig,
    prepare_state_dir,
    redact_url,
)
from corral.server.endpoint_logs import EndpointLogs
from corral.server.extensions import Extension, ServerContext
from corral.server.governance import ensure_builtin_policies, policy_stage
from corral.server.guardrails_extension import GuardrailsExtension
from corral.server.http import GRACEFUL_SHUTDOWN_S, App, Dispatcher, HealthApp, listen, url_of
from corral.server.http_server import HttpServer
from corral.server.node_registration import (
    keep_this_node_registered,
    registration_enabled,
    this_node_name,
)
from corral.server.ratelimit_extension import RateLimitExtension
from corral.server.route_feed import RouteFeed
from corral.server.telemetry_extension import TelemetryExtension
from corral.server.usage_extension import UsageExtension
from corral.server.workload_identity import WorkloadIdentity
from corral.store import Store, open_store
from corral.store.encryption import EncryptingStore, SecretKeyError, load_or_create_key

SECRET_KEY_FILE = "secret.key"

_READY_POLL_S = 0.01
GC_THRESHOLDS = (50_000, 20, 100)
"""Young, middle and old generation thresholds once serving (see ``run``)."""
_HTTP = "http server"
_ON_READY = "on-ready hook"
_ACCESS = "gateway access feed"
_NODE = "node registration"
TOOL_LOGS_DIR = "tool-logs"
"""Where supervised stdio MCP servers write their stderr (``<ns>_<name>.stderr.log``)."""
_FORCED = "stopped at once on a second signal; work in flight was cut"

_log = logging.getLogger(__name__)

# DeviceClass and ResourceClaim selectors are CEL, compiled at the API server's write gate (the
# api layer cannot import the CEL engine, so the composition root installs the check).
use_selector_check(selector_problems)


class ServerError(Exception):
    """The server could not start or a role failed; the message says which and why."""


@dataclass(frozen=True)
class ServerInfo:
    """What a started server tells its caller (``corral up`` prints it)."""

    url: str | None
    """The API server's URL; None when the process does not run the API server."""
    pid: int
    state_dir: Path
    store: str
    """The store URL with any password redacted."""
    roles: frozenset[str]
    identity: str
    token_path: Path | None
    new_token: str | None
    """The admin token, only when this start created it (show it once)."""
    openai_base_url: str | None = None
    """``<listen_url>/v1``, what OpenAI clients take as ``base_url``; None without the gateway
    role. Clients authenticate with the admin token."""
    listen_url: str | None = None
    """Where this process listens, whatever its roles (health, logs, gateway, API server)."""


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
    try:
        secret_key = load_or_create_key(state_dir / SECRET_KEY_FILE)
    except SecretKeyError as error:
        raise ServerError(str(error)) from None
    with _Signals(stop).installed() as signals:
        try:
            # Secrets are sealed before the store sees them: disk, event log and history
            # hold ciphertext only.
            store: Store = EncryptingStore(await open_store(store_url), secret_key)
        except Exception as error:
            # Store errors may quote the URL they were given, password and all.
            shown = redact_url(store_url)
            reason = str(error).replace(store_url, shown)
            raise ServerError(f"cannot open the store {shown}: {reason}") from None
        context = ServerContext(
            config=config, state_dir=state_dir, store=store, store_url=store_url, stop=stop
        )
        try:
            await ensure_builtin_namespaces(store)
            await ensure_builtin_policies(store)
            await _run_roles(context, on_ready)
        except asyncio.CancelledError:
            if not signals.forced:
                raise
            raise ServerError(
                "stopped at once on a second signal; work in flight was cut"
            ) from None
        finally:
            remove_server_info(state_dir, os.getpid())
            await store.close()


EXTENSIONS: tuple[type[Extension], ...] = (
    TelemetryExtension,
    AuditExtension,
    WorkloadIdentity,
    UsageExtension,
    RateLimitExtension,
    BudgetExtension,
    GuardrailsExtension,
    AgentsExtension,
)
"""Built, started and asked for stages in this order (telemetry outermost); closed reversed."""


async def _run_roles(context: ServerContext, on_ready: OnReady | None) -> None:
    extensions = [kind(context) for kind in EXTENSIONS]
    for extension in extensions:
        context.store = extension.wrap_store(context.store)
    try:
        await _run_roles_with(context, extensions, on_ready)
    finally:
        for extension in reversed(extensions):
            try:
                await extension.aclose()
            except Exception:
                _log.exception("closing the %s extension failed", extension.name)


async def _start_extensions(extensions: list[Extension]) -> None:
    for extension in extensions:
        try:
            await extension.start()
        except ServerError:
            raise
        except Exception as error:
            raise ServerError(f"the {extension.name} extension cannot start: {error}") from error


async def _run_roles_with(
    context: ServerContext, extensions: list[Extension], on_ready: OnReady | None
) -> None:
    config, store, state_dir, stop = (
        context.config,
        context.store,
        context.state_dir,
        context.stop,
    )
    workers: dict[str, asyncio.Task[Any]] = {}
    http: HttpServer | None = None
    listener: socket.socket | None = None
    manager: Manager | None = None
    supervisor: Supervisor | None = None
    feed: RouteFeed | None = None
    access: AccessFeed | None = None
    gateway: Gateway | None = None
    ended_by: str | None = None
    identity = config.resolved_identity
    try:
        # Every role that listens authenticates callers with the admin token.
        token, created = load_or_create_admin_token(state_dir)
        authenticate = admin_token_check(token)
        listener = _listen(config.host, config.port)
        context.listen_url = url_of(listener)
        context.admin_check = authenticate
        if GATEWAY in config.roles:
            access = context.access = AccessFeed(store, authenticate)
        await _start_extensions(extensions)
        logs: App | None = None
        if CONTROLLERS in config.roles:
            manager = Manager(store, identity=identity, leader_election=config.uses_leader_election)
            manager.add(GarbageCollector(manager))
            devices = ReplicaDevices(store, device_predicate, local_node=this_node_name())
            supervisor = add_model_serving(manager, state_dir, devices=devices)
            # One MCP server per Tool: the controller lists through the agents' connections.
            agents = next((e for e in extensions if isinstance(e, AgentsExtension)), None)
            shared = agents.shared_mcp if agents is not None else None
            add_tools(manager, state_dir / TOOL_LOGS_DIR, tools=shared)
            manager.add(resourceclaim_controller(manager, device_predicate))
            if registration_enabled():
                workers[_NODE] = asyncio.create_task(keep_this_node_registered(store, stop))
            logs = EndpointLogs(store, supervisor, authenticate)
            workers[CONTROLLERS] = asyncio.create_task(manager.run(stop))
        if access is not None:
            routes = RouteSource()
            feed = RouteFeed(store, routes)
            gateway = create_gateway(
                routes,
                authenticate=access.authenticate,
                stages=_gateway_stages(extensions, access),
                route_stages=[stage for e in extensions for stage in e.route_stages()],
                estimate_prompt_tokens=estimate_prompt_tokens,
            )
            workers[GATEWAY] = asyncio.create_task(feed.start(stop))
            workers[_ACCESS] = asyncio.create_task(access.start(stop))
        # A replica in an election may stand by for good: its serving is readiness enough.
        awaited = None if config.uses_leader_election else manager
        ready = _readiness(awaited, feed, access, extensions)
        rest: App = (
            create_app(
                store,
                admin_token=token,
                registry=context.metrics,
                extra_routes=[route for e in extensions for route in e.api_routes()],
            )
            if APISERVER in config.roles
            else HealthApp(ready, context.metrics)
        )
        public_routes = [route for e in extensions for route in e.public_routes()]
        public = Router(routes=public_routes) if public_routes else None
        mounts = tuple(mount for e in extensions for mount in e.surface_apps())
        http = HttpServer(
            Dispatcher(rest=rest, gateway=gateway, logs=logs, public=public, mounts=mounts),
            graceful_shutdown_s=GRACEFUL_SHUTDOWN_S,
        )
        workers[_HTTP] = asyncio.create_task(http.serve(sockets=[listener]))

        if not await _until_ready(http, ready, workers, stop):
            return
        # What start-up built lives as long as the process: moving it out of the collector's
        # view makes a full collection under load take ~2 ms instead of ~40 ms (a p99 spike).
        gc.collect()
        gc.freeze()
        # Requests allocate and free containers in bursts, and the young generation's counter
        # (allocations minus frees, floored at zero after each collection) then reaches
        # CPython's default 700 every few requests: ~9% of a saturated gateway's CPU went to
        # collections that found no garbage (the request path makes no reference cycles).
        gc.set_threshold(*GC_THRESHOLDS)
        listen_url = url_of(listener)
        url = listen_url if APISERVER in config.roles else None
        info = ServerInfo(
            url=url,
            pid=os.getpid(),
            state_dir=state_dir,
            store=redact_url(config.resolved_store_url),
            roles=config.roles,
            identity=identity,
            token_path=state_dir / TOKEN_FILE,
            new_token=token if created else None,
            openai_base_url=listen_url + API_PREFIX if gateway is not None else None,
            listen_url=listen_url,
        )
        if url is not None:
            write_server_info(state_dir, url, info.pid)
        _log.info(
            "corral ready: roles %s, listening at %s, store %s, identity %s",
            ",".join(sorted(config.roles)),
            listen_url,
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
                await asyncio.gather(*http.tasks(), return_exceptions=True)
        finally:
            if gateway is not None:
                await gateway.aclose()
            if supervisor is not None:
                # Model servers are this process's children: none outlives it.
                await supervisor.stop_all()
            if listener is not None:
                listener.close()
    _raise_failure(dict(zip(workers, outcomes, strict=True)), ended_by)


def admin_token_check(token: str) -> Callable[[str | None], bool]:
    """Whether a presented bearer token is the admin token, compared in constant time."""
    expected = token.encode()

    def check(presented: str | None) -> bool:
        if presented is None:
            return False
        try:
            candidate = presented.encode()
        except UnicodeEncodeError:
            return False
        return hmac.compare_digest(candidate, expected)

    return check


def _gateway_stages(extensions: list[Extension], access: AccessFeed) -> list[Stage]:
    """Each extension's stages in order, the policy decision after telemetry and audit."""
    stages: list[Stage] = []
    for extension in extensions:
        stages.extend(extension.gateway_stages())
        if isinstance(extension, AuditExtension):
            stages.append(policy_stage(access))
    return stages


def _readiness(
    manager: Manager | None,
    feed: RouteFeed | None,
    access: AccessFeed | None,
    extensions: list[Extension],
) -> Callable[[], bool]:
    def ready() -> bool:
        return (
            (manager is None or manager.ready)
            and (feed is None or feed.ready)
            and (access is None or access.ready)
            and all(extension.ready for extension in extensions)
        )

    return ready


async def _until_ready(
    http: HttpServer,
    roles_ready: Callable[[], bool],
    workers: dict[str, asyncio.Task[Any]],
    stop: asyncio.Event,
) -> bool:
    """True once every role serves; False when stopped first. A role that dies raises."""
    while not stop.is_set():
        for role, task in workers.items():
            if task.done():
                error = None if task.cancelled() else task.exception()
                raise ServerError(f"{role} stopped while starting: {error or 'it exited'}")
        if http.started and roles_ready():
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


def _listen(host: str, port: int) -> socket.socket:
    try:
        return listen(host, port)
    except OSError as error:
        reason = error.strerror or str(error)
        raise ServerError(f"cannot listen on {host}:{port}: {reason}") from None


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
