"""The Endpoint controller: keep each Endpoint's model replicas running and report them.

For every Endpoint it computes the replicas it wants — ``spec.replicas`` per Model version
listed in ``spec.models`` whose Model is Ready (any version for an ``openai`` upstream, which
needs no local file) — and hands the desired set of ALL Endpoints to the runtime
:class:`~corral.runtimes.Supervisor`, which starts, probes, restarts and drains them. What the
supervisor observes flows back through its ``on_change`` callback into this controller's queue,
and from there into ``status.replicas`` (per replica: state, address, ``apiBase`` — the OpenAI
base URL the gateway sends to — restarts, last log lines) and the conditions the gateway and
users read:

- ``ModelsReady``: every listed Model is Ready;
- ``Ready``: at least one replica serves (clients can call the Endpoint);
- ``Available``: every desired replica serves.

With ``spec.devices``, each replica first claims a device (a ``ResourceClaim`` sized from the
Model, :mod:`corral.controllers.endpoint_devices`) and starts only once the claim is allocated,
with the allocation bound into its environment; until then it is listed ``Pending`` with the
claim's reason, and the condition ``DevicesAllocated`` says how many are bound or, with reason
``NoDeviceClassFits``, why no device could ever hold one.

A finalizer keeps a deleted Endpoint until its replicas have drained and stopped. Replicas live
as long as this process leads: on losing leadership or shutting down, they are stopped, and the
next leader starts its own (replicas are desired state, never adopted).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from corral.api.errors import Conflict, NotFound
from corral.api.kinds.endpoint import ENDPOINT, EndpointSpec
from corral.api.kinds.model import MODEL
from corral.api.kinds.secret import SECRET
from corral.api.objects import Object, ObjectKey
from corral.controllers.endpoint_devices import CLAIM_KIND, ReplicaDevices
from corral.controlplane import (
    Controller,
    KeyChannel,
    Manager,
    Result,
    Watch,
    is_true,
    set_condition,
)
from corral.devices.binding import Binding
from corral.runtimes import ReplicaSpec, ReplicaState, ReplicaStatus, Supervisor
from corral.store.protocol import Store

logger = logging.getLogger(__name__)

FINALIZER = "corral.dev/replicas"
SECRET_API_KEY_FIELD = "apiKey"
_SETTLING = {ReplicaState.PENDING, ReplicaState.STARTING, ReplicaState.DRAINING}


class EndpointReconciler:
    """Reconciles one Endpoint at a time against the shared supervisor."""

    def __init__(
        self, store: Store, supervisor: Supervisor, devices: ReplicaDevices | None = None
    ) -> None:
        self._store = store
        self._supervisor = supervisor
        self._devices = devices
        self._desired: dict[ObjectKey, dict[str, ReplicaSpec]] = {}
        self._ensure_lock = asyncio.Lock()

    async def __call__(self, key: ObjectKey) -> Result:
        try:
            endpoint = await self._store.get(ENDPOINT.kind, key.namespace, key.name)
        except NotFound:
            await self._set_desired(key, {})
            return Result()
        metadata = endpoint["metadata"]
        if metadata.get("deletionTimestamp"):
            return await self._finalize(key, endpoint)
        if FINALIZER not in (metadata.get("finalizers") or []):
            with_finalizer = copy.deepcopy(endpoint)
            with_finalizer["metadata"]["finalizers"] = [*metadata.get("finalizers", []), FINALIZER]
            # On a conflict the newer version's event brings us back.
            with contextlib.suppress(Conflict):
                await self._store.update(with_finalizer, actor="controller:endpoints")
            return Result()

        spec: EndpointSpec = ENDPOINT.parse_spec(endpoint)
        runtime = spec.runtime.type
        generation = int(metadata.get("generation") or 0)
        claims = _Claims()
        desired, model_problems = await self._desired_replicas(key, spec, endpoint, claims)
        await self._set_desired(key, desired)
        if self._devices is not None:
            await self._devices.prune(key.namespace, key.name, set(desired) | set(claims.waiting))

        replicas = self._replica_statuses(key)
        status: dict[str, Any] = copy.deepcopy(endpoint.get("status") or {})
        desired_now = self._desired.get(key, {})
        status["replicas"] = [
            _replica_entry(r, desired_now[r.name].runtime if r.name in desired_now else runtime)
            for r in replicas
        ]
        status["replicas"] += [
            {"name": name, "model": model, "state": ReplicaState.PENDING.value, "ready": False}
            | {"message": message}
            for name, (model, message) in sorted(claims.waiting.items())
        ]
        ready = [r for r in replicas if r.ready]
        status["readyReplicas"] = len(ready)
        status["desiredReplicas"] = len(desired) + len(claims.waiting)
        if spec.devices is not None:
            claims.set_condition(status, len(desired), generation)
        elif any(c.get("type") == "DevicesAllocated" for c in status.get("conditions") or []):
            status["conditions"] = [
                c for c in status["conditions"] if c.get("type") != "DevicesAllocated"
            ]
        if model_problems:
            set_condition(
                status, "ModelsReady", False, "ModelNotReady", "; ".join(model_problems), generation
            )
        else:
            set_condition(status, "ModelsReady", True, "AllModelsReady", "", generation)
        if ready:
            set_condition(
                status, "Ready", True, "Serving", f"{len(ready)} replica(s) serving", generation
            )
        else:
            reason, message = claims.why_not_running() or _why_not_ready(
                replicas, model_problems, spec
            )
            set_condition(status, "Ready", False, reason, message, generation)
        if desired and len(ready) == len(desired) and not claims.waiting:
            set_condition(status, "Available", True, "AllReplicasReady", "", generation)
        else:
            reason, message = claims.why_not_running() or _why_not_available(
                replicas, len(desired), model_problems
            )
            set_condition(status, "Available", False, reason, message, generation)
        status["observedGeneration"] = generation
        if status != (endpoint.get("status") or {}):
            try:
                await self._store.update_status({**endpoint, "status": status})
            except Conflict:
                return Result()
        # Status follows the supervisor's on_change events; this only catches a lost one.
        settling = any(r.state in _SETTLING for r in replicas)
        return Result(requeue_after=2.0 if settling else 30.0)

    async def reset(self) -> None:
        """Forget every desired replica and stop them all (leadership lost, shutdown)."""
        async with self._ensure_lock:
            self._desired.clear()
            await self._supervisor.stop_all()

    async def _finalize(self, key: ObjectKey, endpoint: Object) -> Result:
        await self._set_desired(key, {})
        if self._devices is not None:
            await self._devices.prune(key.namespace, key.name, set())
        if any(r.state is not ReplicaState.STOPPED for r in self._replica_statuses(key)):
            return Result(requeue_after=0.5)
        finalizers = [f for f in endpoint["metadata"].get("finalizers") or [] if f != FINALIZER]
        released = copy.deepcopy(endpoint)
        released["metadata"]["finalizers"] = finalizers
        with contextlib.suppress(Conflict, NotFound):
            await self._store.update(released, actor="controller:endpoints")
        return Result()

    async def _set_desired(self, key: ObjectKey, replicas: dict[str, ReplicaSpec]) -> None:
        async with self._ensure_lock:
            if replicas:
                self._desired[key] = replicas
            else:
                self._desired.pop(key, None)
            union: dict[str, ReplicaSpec] = {}
            for specs in self._desired.values():
                union.update(specs)
            await self._supervisor.ensure(union)

    def _replica_statuses(self, key: ObjectKey) -> list[ReplicaStatus]:
        return [
            r
            for r in self._supervisor.statuses()
            if r.namespace == key.namespace and r.endpoint == key.name
        ]

    async def _desired_replicas(
        self, key: ObjectKey, spec: EndpointSpec, endpoint: Object, claims: _Claims
    ) -> tuple[dict[str, ReplicaSpec], list[str]]:
        runtime = spec.runtime
        api_key = (
            await self._api_key(key.namespace, runtime.secretRef) if runtime.secretRef else None
        )
        desired: dict[str, ReplicaSpec] = {}
        problems: list[str] = []
        for ref in spec.models:
            model_path: str | None = None
            if runtime.type != "openai":
                model_path, problem = await self._ready_model_path(key.namespace, ref.model)
                if problem:
                    problems.append(problem)
                    continue
            names = [f"{key.namespace}.{key.name}.{ref.model}.{i}" for i in range(spec.replicas)]
            bindings: dict[str, Binding] = {}
            if spec.devices is not None and self._devices is None:
                claims.refused.append(
                    ("DevicesUnavailable", "this server runs no device scheduler (spec.devices)")
                )
                continue
            if spec.devices is not None and self._devices is not None and names:
                try:
                    model: Object | None = await self._store.get(
                        MODEL.kind, key.namespace, ref.model
                    )
                except NotFound:
                    model = None
                outcome = await self._devices.resolve(endpoint, spec, model, names)
                if outcome.refused:
                    claims.refused.append(
                        (outcome.refused[0], f"{ref.model}: {outcome.refused[1]}")
                    )
                    continue
                claims.waiting.update(
                    (name, (ref.model, message)) for name, message in outcome.waiting.items()
                )
                bindings = outcome.bound
                names = [name for name in names if name in bindings]
            for name in names:
                binding = bindings.get(name, Binding())
                desired[name] = ReplicaSpec(
                    name=name,
                    namespace=key.namespace,
                    endpoint=key.name,
                    model=ref.model,
                    runtime=runtime.type,
                    model_path=model_path,
                    options={**runtime.options, **binding.options},
                    base_url=runtime.baseURL,
                    api_key=api_key,
                    env=binding.env,
                )
        return desired, problems

    async def _ready_model_path(self, namespace: str, model_name: str) -> tuple[str | None, str]:
        try:
            model = await self._store.get(MODEL.kind, namespace, model_name)
        except NotFound:
            return None, f"Model {namespace}/{model_name} does not exist"
        status = model.get("status") or {}
        if not is_true(status, "Ready") or not status.get("path"):
            ready = next(
                (c for c in status.get("conditions", []) if c.get("type") == "Ready"), None
            )
            why = f"{ready.get('reason')}: {ready.get('message')}" if ready else "not inspected yet"
            return None, f"Model {model_name} is not ready ({why})"
        return str(status["path"]), ""

    async def _api_key(self, namespace: str, secret_name: str) -> str | None:
        try:
            secret = await self._store.get(SECRET.kind, namespace, secret_name)
        except NotFound:
            return None
        return secret_api_key(secret)


@dataclass
class _Claims:
    """Device-claim outcome of one reconcile: replicas waiting, and refusals by Model."""

    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)
    """replica name → (model, why it waits)"""
    refused: list[tuple[str, str]] = field(default_factory=list)

    def why_not_running(self) -> tuple[str, str] | None:
        if self.refused:
            return self.refused[0][0], "; ".join(message for _, message in self.refused)
        if self.waiting:
            first = min(self.waiting)
            return "WaitingForDevices", f"{len(self.waiting)} replica(s) wait: {first}: " + (
                self.waiting[first][1]
            )
        return None

    def set_condition(self, status: dict[str, Any], bound: int, generation: int) -> None:
        why = self.why_not_running()
        if why is None:
            set_condition(
                status,
                "DevicesAllocated",
                True,
                "Allocated",
                f"{bound} replica(s) bound",
                generation,
            )
        else:
            set_condition(status, "DevicesAllocated", False, why[0], why[1], generation)


def secret_api_key(secret: Object) -> str | None:
    """The upstream API key a Secret holds (``spec.data.apiKey``), or None."""
    data = (secret.get("spec") or {}).get("data") or {}
    value = data.get(SECRET_API_KEY_FIELD) if isinstance(data, dict) else None
    return str(value) if value is not None else None


def _replica_entry(status: ReplicaStatus, runtime: str) -> dict[str, object]:
    entry = status.to_dict()
    if status.address:
        entry["apiBase"] = api_base(status.address, runtime)
    # Logs go to `corral logs`; status keeps only the tail of a replica that is failing.
    if status.state not in (ReplicaState.CRASH_LOOP_BACK_OFF, ReplicaState.FAILED):
        entry.pop("lastLogLines", None)
    return entry


def api_base(address: str, runtime: str) -> str:
    """The OpenAI base URL the gateway sends a replica's requests to (``.../v1``).

    An ``openai`` upstream's address is its configured base URL already; the model servers
    corral runs (llama.cpp, vLLM) serve the OpenAI API under ``/v1`` of their root.
    """
    return address if runtime == "openai" else address.rstrip("/") + "/v1"


def _why_not_ready(
    replicas: list[ReplicaStatus], model_problems: list[str], spec: EndpointSpec
) -> tuple[str, str]:
    if spec.replicas == 0:
        return "ScaledToZero", "spec.replicas is 0"
    failing = [
        r for r in replicas if r.state in (ReplicaState.CRASH_LOOP_BACK_OFF, ReplicaState.FAILED)
    ]
    if failing:
        first = failing[0]
        return first.state.value, f"{first.name}: {first.message}"
    if model_problems and not replicas:
        return "ModelNotReady", "; ".join(model_problems)
    return "Starting", "waiting for a replica to pass its readiness probe"


def _why_not_available(
    replicas: list[ReplicaStatus], desired: int, model_problems: list[str]
) -> tuple[str, str]:
    if model_problems:
        return "ModelNotReady", "; ".join(model_problems)
    ready = sum(1 for r in replicas if r.ready)
    failing = [
        r for r in replicas if r.state in (ReplicaState.CRASH_LOOP_BACK_OFF, ReplicaState.FAILED)
    ]
    if failing:
        return failing[0].state.value, f"{failing[0].name}: {failing[0].message}"
    return "Progressing", f"{ready}/{desired} replicas ready"


MODEL_INDEX = "endpoints-by-model"
SECRET_INDEX = "endpoints-by-secret"


def _models_of(endpoint: Object) -> list[str]:
    namespace = endpoint["metadata"].get("namespace", "")
    models = (endpoint.get("spec") or {}).get("models") or []
    return [f"{namespace}/{ref.get('model')}" for ref in models]


def _secret_of(endpoint: Object) -> list[str]:
    secret = ((endpoint.get("spec") or {}).get("runtime") or {}).get("secretRef")
    return [f"{endpoint['metadata'].get('namespace', '')}/{secret}"] if secret else []


def endpoint_controller(
    manager: Manager,
    supervisor: Supervisor,
    channel: KeyChannel,
    devices: ReplicaDevices | None = None,
) -> Controller:
    """The controller definition, wired to ``manager``'s shared Endpoint informer indexes.

    ``channel`` carries the supervisor's replica changes: build the supervisor with
    ``on_change=replica_change_sender(channel)``. ``devices`` (which needs the ResourceClaim
    kind registered) serves Endpoints with ``spec.devices``; without it they are refused.
    """
    endpoints = manager.informer(ENDPOINT.kind)
    if not endpoints.has_index(MODEL_INDEX):
        endpoints.add_index(MODEL_INDEX, _models_of)
        endpoints.add_index(SECRET_INDEX, _secret_of)

    def referencing(index: str) -> Callable[[Object], Iterable[ObjectKey]]:
        def keys(obj: Object) -> list[ObjectKey]:
            meta = obj["metadata"]
            return endpoints.by_index(index, f"{meta.get('namespace', '')}/{meta['name']}")

        return keys

    reconciler = EndpointReconciler(manager.store, supervisor, devices)
    return Controller(
        "endpoints",
        for_kind=ENDPOINT.kind,
        reconciler=reconciler,
        owns=(CLAIM_KIND,) if devices is not None else (),
        watches=(
            Watch(MODEL.kind, referencing(MODEL_INDEX)),
            Watch(SECRET.kind, referencing(SECRET_INDEX)),
        ),
        channels=(channel,),
        on_stop=reconciler.reset,
        max_concurrent_reconciles=4,
    )


def replica_change_sender(channel: KeyChannel) -> Callable[[ReplicaStatus], None]:
    def send(status: ReplicaStatus) -> None:
        channel.send(ObjectKey(ENDPOINT.kind, status.namespace, status.endpoint))

    return send
