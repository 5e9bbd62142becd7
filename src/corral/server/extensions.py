"""The governance pieces a server process runs beside its roles, and what they share.

Each piece (telemetry, audit, workload identity, usage, rate limits, budgets, guardrails) is an
:class:`Extension`: the composition root (``corral.server.serve``) builds them all over one
:class:`ServerContext`, lets each wrap the store (audit records control-plane writes that way),
starts them before the roles, puts their gateway stages into the request path in a fixed order,
mounts their HTTP routes, and closes them in reverse order on the way out.

Gateway stage order (outermost first), after authentication, body parsing and Endpoint
resolution: telemetry → audit → policy → usage → rate limits → budgets → guardrails → forward. Outer
stages see what inner ones decided: telemetry times and labels every outcome, audit records the
policy decision and the cost, and a budget hold is released when guardrails refuse.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry
from starlette.routing import BaseRoute

from corral.audit import AuditEvent
from corral.gateway import Stage
from corral.server.config import ServerConfig
from corral.server.http import App
from corral.store.protocol import Store

if TYPE_CHECKING:
    from corral.server.access_feed import AccessFeed
    from corral.server.workload_identity import WorkloadIdentity


class AuditSink(Protocol):
    """Where governance decisions go: ``record`` queues and returns at once (group commit)."""

    def record(self, event: AuditEvent) -> None: ...


@dataclass
class ServerContext:
    """What every extension of one process may use."""

    config: ServerConfig
    state_dir: Path
    store: Store
    """The store as the roles use it (after every extension's ``wrap_store``)."""
    store_url: str
    stop: asyncio.Event
    metrics: CollectorRegistry = field(default_factory=CollectorRegistry)
    """One registry per process: ``/metrics`` serves it (API server and gateway metrics)."""
    audit: AuditSink | None = None
    """Set by the audit extension when it starts; the others record through it."""
    access: AccessFeed | None = None
    """The gateway's key and policy feed; None in a process without the gateway role."""
    listen_url: str | None = None
    """``http://host:port`` this process listens on (set before the extensions start)."""
    admin_check: Callable[[str | None], bool] | None = None
    """Whether a bearer token is the admin token (set before the extensions start)."""
    workload: WorkloadIdentity | None = None
    """The workload-identity extension (token issuer, verifiers), once built."""


class Extension:
    """One governance piece. Subclasses override what they take part in."""

    name = "extension"

    def __init__(self, context: ServerContext) -> None:
        self.context = context

    def wrap_store(self, store: Store) -> Store:
        """The store the roles should use; called once, before ``start``."""
        return store

    async def start(self) -> None:
        """Open backends and start background work; raising stops the server's start."""

    def gateway_stages(self) -> Sequence[Stage]:
        """Stages for the gateway's inference path (only called in gateway processes)."""
        return ()

    def route_stages(self) -> Sequence[Stage]:
        """Stages that run before the Endpoint is resolved (only in gateway processes); they
        may answer a request themselves (the agents extension's ``model: "agent:NAME"``)."""
        return ()

    def api_routes(self) -> Sequence[BaseRoute]:
        """Routes under ``/corral/`` on the API server, behind the admin token."""
        return ()

    def public_routes(self) -> Sequence[BaseRoute]:
        """Routes anyone may call (``/.well-known/...``), on every process that listens."""
        return ()

    def surface_apps(self) -> Sequence[tuple[str, App]]:
        """ASGI apps that own a path prefix under ``/v1/`` beside the gateway (the sessions
        API's ``/v1/agents/``); they authenticate callers themselves."""
        return ()

    @property
    def ready(self) -> bool:
        return True

    async def aclose(self) -> None:
        """Flush and close what ``start`` opened (called even when ``start`` failed)."""
