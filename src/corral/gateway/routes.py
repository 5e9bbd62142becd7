"""Route snapshots: what the request path knows about Endpoints, compiled ahead of time.

The composition root watches Endpoint objects, compiles them with ``RouteTable.from_endpoints``
and swaps the result into a ``RouteSource``. Each request reads ``RouteSource.current`` once and
uses that immutable snapshot throughout (retries included), so a swap never tears a request and
the request path never queries the store.

Input contract (the Endpoint controller writes the status): ``spec.models: [{model, weight}]``,
``spec.routing.strategy`` and ``status.replicas: [{name, model, address, ready, state}]``. A
replica takes traffic when ``ready`` is true, its ``state`` is not ``Draining`` and its ``model``
is one of ``spec.models``. Clients name an Endpoint as ``name`` (namespace ``default``) or
``namespace/name``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from itertools import accumulate
from typing import Any

import orjson

from corral.api import Object

DEFAULT_NAMESPACE = "default"
STRATEGIES = frozenset({"least-outstanding", "round-robin", "prefix-affinity"})


@dataclass(frozen=True, slots=True)
class VersionRoute:
    """One Model version of an Endpoint: its traffic weight and its routable replica addresses."""

    key: str  # "namespace/endpoint/model": names round-robin cursors across table swaps
    model: str
    weight: int
    addresses: tuple[str, ...]
    waiting: tuple[str, ...]  # "replica-name State" of replicas that exist but take no traffic


@dataclass(frozen=True, slots=True)
class EndpointRoute:
    namespace: str
    name: str
    public_name: str
    strategy: str
    versions: tuple[VersionRoute, ...]
    serving: tuple[VersionRoute, ...]  # weight > 0 and at least one routable replica
    cumulative_weights: tuple[int, ...]  # running sums over ``serving``, for weighted choice
    unavailable_reason: str  # why ``serving`` is empty; "" when it is not
    model_entry: bytes  # this Endpoint in the OpenAI model-object shape, serialised


class RouteTable:
    """An immutable snapshot of every Endpoint's routes, looked up by the name clients send."""

    __slots__ = ("_by_name", "endpoints", "models_body")

    def __init__(self, endpoints: Iterable[EndpointRoute] = ()) -> None:
        self.endpoints = tuple(sorted(endpoints, key=lambda route: route.public_name))
        by_name: dict[str, EndpointRoute] = {}
        for route in self.endpoints:
            qualified = f"{route.namespace}/{route.name}"
            if qualified in by_name:
                raise ValueError(f"Endpoint {qualified}: appears more than once")
            by_name[qualified] = route
            if route.namespace == DEFAULT_NAMESPACE:
                by_name[route.name] = route
        self._by_name: Mapping[str, EndpointRoute] = by_name
        # GET /v1/models is answered from these bytes: built once per snapshot, not per request.
        self.models_body = b'{"object":"list","data":[%s]}' % b",".join(
            route.model_entry for route in self.endpoints
        )

    @classmethod
    def from_endpoints(cls, endpoints: Iterable[Object]) -> RouteTable:
        """Compile Endpoint objects; a malformed one raises ``ValueError`` naming it and where."""
        return cls(_compile_endpoint(obj) for obj in endpoints)

    def lookup(self, model: str) -> EndpointRoute | None:
        return self._by_name.get(model)


class RouteSource:
    """Holds the current ``RouteTable``; ``update`` swaps it in one assignment."""

    __slots__ = ("current",)

    def __init__(self, table: RouteTable | None = None) -> None:
        self.current = table if table is not None else RouteTable()

    def update(self, table: RouteTable) -> None:
        self.current = table


def _compile_endpoint(obj: Object) -> EndpointRoute:
    metadata = _mapping(obj.get("metadata"), "Endpoint", "metadata")
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("Endpoint: metadata.name must be a non-empty string")
    namespace = metadata.get("namespace") or DEFAULT_NAMESPACE
    where = f"Endpoint {namespace}/{name}"
    spec = _mapping(obj.get("spec"), where, "spec")
    status = _mapping(obj.get("status") or {}, where, "status")

    weights = _model_weights(spec.get("models"), where)
    strategy = _mapping(spec.get("routing") or {}, where, "spec.routing").get(
        "strategy", "least-outstanding"
    )
    if strategy not in STRATEGIES:
        raise ValueError(f"{where}: spec.routing.strategy: {strategy!r} is not one of {STRATEGIES}")

    addresses: dict[str, list[str]] = {model: [] for model in weights}
    waiting: dict[str, list[str]] = {model: [] for model in weights}
    replicas = status.get("replicas") or []
    if not isinstance(replicas, list):
        raise ValueError(f"{where}: status.replicas: must be a list")
    for index, replica in enumerate(replicas):
        field = f"status.replicas[{index}]"
        replica = _mapping(replica, where, field)
        model = replica.get("model")
        if model not in weights:
            continue  # a version no longer in spec.models (e.g. draining after a rollout)
        address = replica.get("address")
        if not isinstance(address, str) or not address.startswith(("http://", "https://")):
            raise ValueError(f"{where}: {field}.address: {address!r} is not an http(s) URL")
        state = str(replica.get("state") or "")
        if replica.get("ready") is True and state != "Draining":
            addresses[model].append(address.rstrip("/"))
        else:
            waiting[model].append(f"{replica.get('name') or address} {state or 'NotReady'}")

    versions = tuple(
        VersionRoute(
            key=f"{namespace}/{name}/{model}",
            model=model,
            weight=weight,
            addresses=tuple(addresses[model]),
            waiting=tuple(waiting[model]),
        )
        for model, weight in weights.items()
    )
    serving = tuple(version for version in versions if version.weight > 0 and version.addresses)
    public_name = name if namespace == DEFAULT_NAMESPACE else f"{namespace}/{name}"
    return EndpointRoute(
        namespace=namespace,
        name=name,
        public_name=public_name,
        strategy=strategy,
        versions=versions,
        serving=serving,
        cumulative_weights=tuple(accumulate(version.weight for version in serving)),
        unavailable_reason="" if serving else _unavailable_reason(public_name, versions),
        model_entry=orjson.dumps(
            {
                "id": public_name,
                "object": "model",
                "created": _unix_time(metadata.get("creationTimestamp")),
                "owned_by": "corral",
            }
        ),
    )


def _model_weights(models: Any, where: str) -> dict[str, int]:
    if not isinstance(models, list) or not models:
        raise ValueError(f"{where}: spec.models: must be a non-empty list")
    weights: dict[str, int] = {}
    for index, ref in enumerate(models):
        ref = _mapping(ref, where, f"spec.models[{index}]")
        model, weight = ref.get("model"), ref.get("weight", 100)
        if not isinstance(model, str) or not model:
            raise ValueError(f"{where}: spec.models[{index}].model: must be a non-empty string")
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
            raise ValueError(f"{where}: spec.models[{index}].weight: must be 0..100")
        weights[model] = weight
    return weights


def _unavailable_reason(public_name: str, versions: tuple[VersionRoute, ...]) -> str:
    parts = []
    for version in versions:
        if version.weight == 0:
            if version.addresses:
                parts.append(f"{version.model} has ready replicas but weight 0")
            continue
        if version.waiting:
            parts.append(f"{version.model}: {', '.join(version.waiting)}")
        else:
            parts.append(f"{version.model}: no replicas yet")
    return f"Endpoint {public_name!r} has no ready replica ({'; '.join(parts)})"


def _mapping(value: Any, where: str, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: {field}: must be an object")
    return value


def _unix_time(timestamp: Any) -> int:
    if not isinstance(timestamp, str):
        return 0
    try:
        return int(datetime.fromisoformat(timestamp).timestamp())
    except ValueError:
        return 0
