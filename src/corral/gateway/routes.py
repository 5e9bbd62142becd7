"""Route snapshots: what the request path knows about Endpoints, compiled ahead of time.

The composition root watches Endpoint objects, compiles them with ``RouteTable.from_endpoints``
and swaps the result into a ``RouteSource``. Each request reads ``RouteSource.current`` once and
uses that immutable snapshot throughout (retries included), so a swap never tears a request and
the request path never queries the store.

Input contract (the Endpoint controller writes the status): ``spec.models: [{model, weight}]``,
``spec.routing`` (the strategy, and the ``RoutingPolicy`` of ``corral.gateway.resilience``),
``spec.runtime`` and ``status.replicas: [{name, model, apiBase, ready, state}]``. A replica
takes traffic when ``ready`` is true, its ``state`` is not ``Draining`` and its ``model`` is
one of ``spec.models``; requests go to its ``apiBase`` (the OpenAI base URL, ``.../v1``) plus
the path after ``/v1``. An entry without ``apiBase`` (written before the field existed) is taken
as ``address + "/v1"``, or ``address`` itself for an ``openai`` upstream. Clients name an
Endpoint as ``name`` (namespace ``default``) or ``namespace/name``.

Upstream credentials: ``spec.runtime.secretRef`` names a Secret whose ``apiKey`` the caller
passes in ``api_keys`` (``"namespace/secret-name" → key``); it is compiled into the route's
upstream headers and never appears in a repr, a log line or an error message. An Endpoint whose
Secret (or its key) is missing serves nothing, rather than calling its upstream without the key.
A process runtime's own ``api_key`` option (llama.cpp's and vLLM's ``--api-key``) is sent too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from corral.api import Object
from corral.gateway.resilience import RoutingPolicy, compile_policy

DEFAULT_NAMESPACE = "default"
STRATEGIES = frozenset({"least-outstanding", "round-robin", "prefix-affinity"})
API_PREFIX = "/v1"
"""What the gateway serves under; a replica's ``apiBase`` replaces it on the way upstream."""

_JSON = (b"content-type", b"application/json")
DEFAULT_POLICY = RoutingPolicy()
_KEY_OPTIONS = ("api_key", "api-key")


@dataclass(frozen=True, slots=True)
class VersionRoute:
    """One Model version of an Endpoint: its traffic weight and its routable replicas.

    ``addresses`` are the replicas' API base URLs (``http://127.0.0.1:PORT/v1``); ``model`` is
    what the upstream calls this version (the request's ``model`` is rewritten to it).
    """

    key: str  # "namespace/endpoint/model": names round-robin cursors across table swaps
    model: str
    weight: int
    addresses: tuple[str, ...]
    waiting: tuple[str, ...]  # "replica-name State" of replicas that exist but take no traffic
    salt: int = 0  # mixes a session key into this version's own hash (sticky sessions)


@dataclass(frozen=True, slots=True)
class EndpointRoute:
    namespace: str
    name: str
    public_name: str
    strategy: str
    versions: tuple[VersionRoute, ...]
    serving: tuple[VersionRoute, ...]  # weight > 0 and at least one routable replica
    deck_key: tuple[tuple[str, int], ...]  # (version key, weight) of ``serving``: names its deck
    unavailable_reason: str  # why ``serving`` is empty; "" when it is not
    model_entry: bytes  # this Endpoint in the OpenAI model-object shape, serialised
    # content-type, plus the upstream's Authorization when it needs a key: kept out of repr.
    upstream_headers: tuple[tuple[bytes, bytes], ...] = field(default=(_JSON,), repr=False)
    policy: RoutingPolicy = DEFAULT_POLICY
    runtime: str = "llamacpp"  # spec.runtime.type: what serves it (telemetry's provider name)


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
    def from_endpoints(
        cls, endpoints: Iterable[Object], api_keys: Mapping[str, str] | None = None
    ) -> RouteTable:
        """Compile Endpoint objects; a malformed one raises ``ValueError`` naming it and where.

        ``api_keys`` maps ``"namespace/secret-name"`` to the ``apiKey`` of that Secret.
        """
        keys = api_keys or {}
        return cls(compile_endpoint(obj, keys) for obj in endpoints)

    def lookup(self, model: str) -> EndpointRoute | None:
        return self._by_name.get(model)


class RouteSource:
    """Holds the current ``RouteTable``; ``update`` swaps it in one assignment."""

    __slots__ = ("current",)

    def __init__(self, table: RouteTable | None = None) -> None:
        self.current = table if table is not None else RouteTable()

    def update(self, table: RouteTable) -> None:
        self.current = table


def compile_endpoint(obj: Object, api_keys: Mapping[str, str] | None = None) -> EndpointRoute:
    """One Endpoint's route; raises ``ValueError`` naming the Endpoint and the field at fault.

    Callers that keep routes per Endpoint (recompiling only what changed) build the table with
    ``RouteTable(routes)``.
    """
    metadata = _mapping(obj.get("metadata"), "Endpoint", "metadata")
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("Endpoint: metadata.name must be a non-empty string")
    namespace = metadata.get("namespace") or DEFAULT_NAMESPACE
    where = f"Endpoint {namespace}/{name}"
    spec = _mapping(obj.get("spec"), where, "spec")
    status = _mapping(obj.get("status") or {}, where, "status")

    weights = _model_weights(spec.get("models"), where)
    routing = _mapping(spec.get("routing") or {}, where, "spec.routing")
    strategy = routing.get("strategy", "least-outstanding")
    if strategy not in STRATEGIES:
        raise ValueError(f"{where}: spec.routing.strategy: {strategy!r} is not one of {STRATEGIES}")
    policy = compile_policy(routing, namespace, where, itself=f"{namespace}/{name}")

    addresses: dict[str, list[str]] = {model: [] for model in weights}
    waiting: dict[str, list[str]] = {model: [] for model in weights}
    replicas = status.get("replicas") or []
    if not isinstance(replicas, list):
        raise ValueError(f"{where}: status.replicas: must be a list")
    runtime = _mapping(spec.get("runtime") or {}, where, "spec.runtime")
    upstream = runtime.get("type") == "openai"
    for index, replica in enumerate(replicas):
        entry = f"status.replicas[{index}]"
        replica = _mapping(replica, where, entry)
        model = replica.get("model")
        if model not in weights:
            continue  # a version no longer in spec.models (e.g. draining after a rollout)
        state = str(replica.get("state") or "")
        if replica.get("ready") is True and state != "Draining":
            addresses[model].append(_api_base(replica, where, entry, upstream=upstream))
        else:
            label = replica.get("name") or replica.get("address") or f"replica {index}"
            waiting[model].append(f"{label} {state or 'NotReady'}")
    headers, key_problem = _upstream_headers(runtime, namespace, api_keys or {}, where)

    versions = tuple(
        VersionRoute(
            key=f"{namespace}/{name}/{model}",
            model=model,
            weight=weight,
            addresses=tuple(addresses[model]),
            waiting=tuple(waiting[model]),
            salt=_salt(f"{namespace}/{name}/{model}"),
        )
        for model, weight in weights.items()
    )
    serving = tuple(version for version in versions if version.weight > 0 and version.addresses)
    if key_problem:
        serving = ()
    public_name = name if namespace == DEFAULT_NAMESPACE else f"{namespace}/{name}"
    if key_problem:
        unavailable = f"Endpoint {public_name!r} cannot call its upstream: {key_problem}"
    elif not serving:
        unavailable = _unavailable_reason(public_name, versions, status)
    else:
        unavailable = ""
    return EndpointRoute(
        namespace=namespace,
        name=name,
        public_name=public_name,
        strategy=strategy,
        versions=versions,
        serving=serving,
        deck_key=tuple((version.key, version.weight) for version in serving),
        unavailable_reason=unavailable,
        model_entry=orjson.dumps(
            {
                "id": public_name,
                "object": "model",
                "created": _unix_time(metadata.get("creationTimestamp")),
                "owned_by": "corral",
            }
        ),
        upstream_headers=headers,
        policy=policy,
        runtime=str(runtime.get("type") or "llamacpp"),
    )


def _salt(key: str) -> int:
    # blake2b, not hash(): gateway processes must agree on where a session sticks.
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


def _api_base(replica: Mapping[str, Any], where: str, entry: str, *, upstream: bool) -> str:
    if "apiBase" in replica:
        at, base = "apiBase", replica["apiBase"]
    else:
        at, base = "address", replica.get("address")
    if not isinstance(base, str) or not base.startswith(("http://", "https://")):
        raise ValueError(f"{where}: {entry}.{at}: {base!r} is not an http(s) URL")
    base = base.rstrip("/")
    # Without apiBase: an openai upstream's address is its base URL already; a server's is its root.
    return base if at == "apiBase" or upstream else base + API_PREFIX


def _upstream_headers(
    runtime: Mapping[str, Any], namespace: str, api_keys: Mapping[str, str], where: str
) -> tuple[tuple[tuple[bytes, bytes], ...], str]:
    """The headers every upstream call of this Endpoint carries, and why it cannot call, if so."""
    key: Any = None
    secret = runtime.get("secretRef")
    if secret is not None:
        if not isinstance(secret, str) or not secret:
            raise ValueError(f"{where}: spec.runtime.secretRef: must be a non-empty string")
        key = api_keys.get(f"{namespace}/{secret}")
        if not key:
            return (_JSON,), f"Secret {namespace}/{secret} is missing or has no apiKey"
    elif runtime.get("type") != "openai":
        options = _mapping(runtime.get("options") or {}, where, "spec.runtime.options")
        key = next((options[name] for name in _KEY_OPTIONS if name in options), None)
    if not isinstance(key, str) or not key:
        return (_JSON,), ""
    try:
        authorization = f"Bearer {key}".encode("latin-1")
    except UnicodeEncodeError:
        # Never quote the key itself: error messages end up in logs and responses.
        return (_JSON,), "its API key has characters an HTTP header cannot carry"
    if b"\r" in authorization or b"\n" in authorization:
        return (_JSON,), "its API key has characters an HTTP header cannot carry"
    return (_JSON, (b"authorization", authorization)), ""


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


def _unavailable_reason(
    public_name: str, versions: tuple[VersionRoute, ...], status: Mapping[str, Any]
) -> str:
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
    reason = f"Endpoint {public_name!r} has no ready replica ({'; '.join(parts)})"
    # The controller's own account (ScaledToZero, ModelNotReady, CrashLoopBackOff...) says why.
    ready = _ready_condition(status)
    if ready is not None and ready.get("status") == "False" and ready.get("reason"):
        message = ready.get("message")
        reason += f"; {ready['reason']}" + (f": {message}" if message else "")
    return reason


def _ready_condition(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    conditions = status.get("conditions")
    if not isinstance(conditions, list):
        return None
    for condition in conditions:
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            return condition
    return None


def _mapping(value: Any, where: str, at: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: {at}: must be an object")
    return value


def _unix_time(timestamp: Any) -> int:
    if not isinstance(timestamp, str):
        return 0
    try:
        return int(datetime.fromisoformat(timestamp).timestamp())
    except ValueError:
        return 0
