"""Waiting for an applied stack: is each Model and Endpoint ready, still coming, or stuck?

``corral up -f STACK`` applies the stack, then polls the server here until every Endpoint in it
serves (or cannot). :func:`assess` is the judgement, a pure function of the objects read:

- a Model is ready when its Ready condition is True for its current generation, and failed
  when it is False (every such reason — DigestMismatch, SourceNotFound, NotGGUF, … — needs a
  change to the Model or its file before the controller would try again);
- an Endpoint is ready when its Ready condition is True for its current generation, and failed
  when none of the Models it serves can become ready (failed or absent) or when no device could
  ever hold a replica (``NoDeviceClassFits``); a replica crashing or
  failing to start may still recover, so that waits for the timeout;
- at the timeout, whatever still waits has failed.

:func:`wait_for_stack` reads the objects, assesses, reports each assessment, and sleeps until
everything settles. A server that stops answering (Ctrl+C while waiting) just ends the wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corral.cli.manifests import ManifestSet
    from corral.client import CorralClient

Object = dict[str, Any]
MODEL = "Model"
ENDPOINT = "Endpoint"
POLL_INTERVAL_S = 0.25
_PROGRESSING_REASONS = ("Starting", "Progressing")


class Phase(StrEnum):
    WAITING = "waiting"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True, order=True)
class Target:
    kind: str
    namespace: str
    name: str

    @property
    def label(self) -> str:
        label = f"{self.kind.lower()}/{self.name}"
        return label if self.namespace == "default" else f"{label} (namespace {self.namespace})"

    @property
    def public_name(self) -> str:
        """How OpenAI clients name an Endpoint: ``name``, or ``namespace/name``."""
        return self.name if self.namespace == "default" else f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class EndpointTarget:
    target: Target
    models: tuple[Target, ...]
    needs_models: bool
    """False for an ``openai`` upstream, which serves without Model objects."""


@dataclass(frozen=True)
class Stack:
    """What to wait for: the stack's Endpoints and every Model they or the stack name."""

    models: tuple[Target, ...]
    endpoints: tuple[EndpointTarget, ...]

    @classmethod
    def of(cls, manifests: ManifestSet) -> Stack:
        models: dict[Target, None] = {}
        endpoints: list[EndpointTarget] = []
        for obj in manifests.objects:
            metadata = obj.get("metadata") or {}
            target = Target(
                str(obj.get("kind")), str(metadata.get("namespace") or "default"), metadata["name"]
            )
            spec = obj.get("spec") or {}
            if target.kind == MODEL:
                models[target] = None
            elif target.kind == ENDPOINT:
                refs = tuple(
                    Target(MODEL, target.namespace, str(ref.get("model")))
                    for ref in spec.get("models") or []
                )
                runtime = (spec.get("runtime") or {}).get("type")
                endpoints.append(EndpointTarget(target, refs, runtime != "openai"))
                if runtime != "openai":
                    models.update(dict.fromkeys(refs))
        return cls(tuple(models), tuple(endpoints))

    @property
    def empty(self) -> bool:
        return not self.models and not self.endpoints


@dataclass(frozen=True)
class Replica:
    name: str
    state: str
    ready: bool
    restarts: int = 0
    exit_code: int | None = None
    message: str = ""
    log_lines: tuple[str, ...] = ()


@dataclass(frozen=True)
class Progress:
    target: Target
    phase: Phase
    summary: str
    """One line: ``Ready``, ``verifying``, ``0/1 replicas ready``, ``DigestMismatch``."""
    details: tuple[str, ...] = ()
    """Why it failed: the conditions that are not True, ``Type=Status Reason: message``."""
    verification: tuple[int, int] | None = None
    """``(bytesDone, bytesTotal)`` while the Model's file is being hashed."""
    replicas: tuple[Replica, ...] = ()
    ready_replicas: int = 0
    desired_replicas: int = 0


@dataclass(frozen=True)
class StackState:
    items: tuple[Progress, ...] = field(default_factory=tuple)
    elapsed_s: float = 0.0
    timed_out: bool = False
    last_failures: Mapping[str, Replica] = field(default_factory=dict)
    """Per replica name, the last time it was seen crashed or failed, with its log lines: a
    replica restarting at the timeout shows ``Starting``, and the crash is what explains it."""

    @property
    def settled(self) -> bool:
        return all(item.phase is not Phase.WAITING for item in self.items)

    def of_kind(self, kind: str, phase: Phase | None = None) -> list[Progress]:
        return [
            item
            for item in self.items
            if item.target.kind == kind and (phase is None or item.phase is phase)
        ]


def assess(
    stack: Stack, objects: Mapping[Target, Object], *, elapsed_s: float = 0.0, timed_out: bool
) -> StackState:
    """Where each of the stack's objects stands, given what the server holds (``objects``)."""
    models = {target: _model_progress(target, objects.get(target)) for target in stack.models}
    items: list[Progress] = list(models.values())
    for endpoint in stack.endpoints:
        items.append(_endpoint_progress(endpoint, objects.get(endpoint.target), models))
    if timed_out:
        items = [_timed_out(item, elapsed_s) for item in items]
    return StackState(tuple(items), elapsed_s, timed_out)


def wait_for_stack(
    client: CorralClient,
    stack: Stack,
    *,
    timeout_s: float,
    on_update: Callable[[StackState], None],
    poll_interval_s: float = POLL_INTERVAL_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> StackState | None:
    """Poll until the stack settles (or ``timeout_s`` passes); None if the server went away."""
    from corral.client import ServerUnreachable

    started = clock()
    last_failures: dict[str, Replica] = {}
    while True:
        try:
            objects = read_stack(client, stack)
        except ServerUnreachable:
            return None
        elapsed = clock() - started
        state = assess(stack, objects, elapsed_s=elapsed, timed_out=elapsed >= timeout_s)
        for item in state.items:
            last_failures.update(
                (replica.name, replica) for replica in item.replicas if replica.log_lines
            )
        state = replace(state, last_failures=dict(last_failures))
        on_update(state)
        if state.settled:
            return state
        sleep(min(poll_interval_s, max(0.0, timeout_s - elapsed)))


def read_stack(client: CorralClient, stack: Stack) -> dict[Target, Object]:
    """The stack's Models and Endpoints as the server holds them (two list calls)."""
    wanted = {*stack.models, *(endpoint.target for endpoint in stack.endpoints)}
    found: dict[Target, Object] = {}
    for kind in (MODEL, ENDPOINT):
        if not any(target.kind == kind for target in wanted):
            continue
        for obj in client.list(kind, namespace=None).items:
            metadata = obj.get("metadata") or {}
            target = Target(kind, str(metadata.get("namespace")), str(metadata.get("name")))
            if target in wanted:
                found[target] = obj
    return found


def _model_progress(target: Target, model: Object | None) -> Progress:
    if model is None:
        return Progress(target, Phase.FAILED, "absent", (f"Model {target.name} does not exist",))
    status = model.get("status") or {}
    verification = _verification(status.get("verification"))
    ready = _condition(model, "Ready")
    if verification is not None:
        return Progress(target, Phase.WAITING, "verifying sha256", verification=verification)
    if ready is None:
        return Progress(target, Phase.WAITING, "resolving")
    if ready.get("status") == "True":
        return Progress(target, Phase.READY, "Ready")
    reason = str(ready.get("reason") or "NotReady")
    return Progress(target, Phase.FAILED, reason, _unhealthy_conditions(model))


_NEVER_FITS_REASONS = frozenset({"NoDeviceClassFits", "DevicesUnavailable"})
"""Endpoint Ready reasons that waiting cannot change (``corral.controllers.endpoint_devices``)."""


def _endpoint_progress(
    endpoint: EndpointTarget, obj: Object | None, models: Mapping[Target, Progress]
) -> Progress:
    target = endpoint.target
    if obj is None:
        return Progress(target, Phase.FAILED, "absent", (f"Endpoint {target.name} does not exist",))
    status = obj.get("status") or {}
    replicas = tuple(_replica(entry) for entry in status.get("replicas") or [])
    ready_count = int(status.get("readyReplicas") or 0)
    desired_count = int(status.get("desiredReplicas") or 0)

    def progress(phase: Phase, summary: str, details: tuple[str, ...] = ()) -> Progress:
        return Progress(
            target,
            phase,
            summary,
            details,
            replicas=replicas,
            ready_replicas=ready_count,
            desired_replicas=desired_count,
        )

    ready = _condition(obj, "Ready")
    if ready is not None and ready.get("status") == "True":
        return progress(Phase.READY, f"Ready ({ready_count}/{desired_count} replicas)")
    blocked = [models.get(model) for model in endpoint.models] if endpoint.needs_models else []
    if blocked and all(item is not None and item.phase is Phase.FAILED for item in blocked):
        names = ", ".join(model.name for model in endpoint.models)
        details = (f"none of its Models can be served ({names})", *_unhealthy_conditions(obj))
        return progress(Phase.FAILED, "ModelNotReady", details)
    reason = str(ready.get("reason") or "") if ready is not None else ""
    if reason in _NEVER_FITS_REASONS:
        # No device of the class could ever hold a replica (or devices are off here): waiting
        # cannot help, the Endpoint's spec.devices or the fleet has to change.
        return progress(Phase.FAILED, reason, _unhealthy_conditions(obj))
    if not replicas and reason:
        summary = f"waiting: {reason}"
    else:
        summary = f"{ready_count}/{desired_count} replicas ready"
        if reason and reason not in _PROGRESSING_REASONS:
            summary += f" ({reason})"
    return progress(Phase.WAITING, summary, _unhealthy_conditions(obj))


def _timed_out(item: Progress, elapsed_s: float) -> Progress:
    if item.phase is not Phase.WAITING:
        return item
    details = (f"not ready after {elapsed_s:.0f} s ({item.summary})", *item.details)
    return Progress(
        item.target,
        Phase.FAILED,
        item.summary,
        details,
        item.verification,
        item.replicas,
        item.ready_replicas,
        item.desired_replicas,
    )


def _current(obj: Object) -> bool:
    """Whether the status describes the spec as it is now (not a previous generation)."""
    generation = int((obj.get("metadata") or {}).get("generation") or 0)
    observed = int((obj.get("status") or {}).get("observedGeneration") or 0)
    return observed >= generation


def _condition(obj: Object, kind: str) -> dict[str, Any] | None:
    if not _current(obj):
        return None
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if isinstance(c, dict) and c.get("type") == kind), None)


def _unhealthy_conditions(obj: Object) -> tuple[str, ...]:
    """``Type=Status Reason: message`` per condition that is not True; conditions that say the
    same thing (an Endpoint's ModelsReady, Ready and Available often do) share one line."""
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if not isinstance(condition, dict) or condition.get("status") == "True":
            continue
        said = (
            str(condition.get("status")),
            str(condition.get("reason") or ""),
            str(condition.get("message") or ""),
        )
        grouped.setdefault(said, []).append(str(condition.get("type")))
    lines = []
    for (status, reason, message), types in grouped.items():
        line = f"{'/'.join(types)}={status} {reason}".rstrip()
        lines.append(f"{line}: {message}" if message else line)
    return tuple(lines)


def _verification(value: Any) -> tuple[int, int] | None:
    if not isinstance(value, dict):
        return None
    try:
        done, total = int(value.get("bytesDone") or 0), int(value.get("bytesTotal") or 0)
    except (TypeError, ValueError):
        return None
    return (done, total) if total > 0 else None


def _replica(entry: Any) -> Replica:
    entry = entry if isinstance(entry, dict) else {}
    exit_code = entry.get("lastExitCode")
    return Replica(
        name=str(entry.get("name") or "?"),
        state=str(entry.get("state") or "Pending"),
        ready=bool(entry.get("ready")),
        restarts=int(entry.get("restarts") or 0),
        exit_code=int(exit_code) if isinstance(exit_code, int) else None,
        message=str(entry.get("message") or ""),
        log_lines=tuple(str(line) for line in entry.get("lastLogLines") or []),
    )
