"""Device claims of an Endpoint's replicas: size, claim, wait for allocation, bind.

Called by the Endpoint controller (:mod:`corral.controllers.endpoint`) for an Endpoint with
``spec.devices``, once per listed Model. For each replica it:

1. sizes it from the Model's ``status.metadata`` and the runtime options
   (:mod:`corral.models.status_sizing`, :func:`corral.devices.sizing.replica_needs`);
2. refuses it outright (``NoDeviceClassFits``) when no device of the class could ever hold it;
3. creates its ``ResourceClaim`` (owned by the Endpoint, so deleting the Endpoint collects it;
   recreated when the size changes) and leaves the ResourceClaim controller to allocate it;
4. once allocated, binds it (:func:`corral.devices.binding.bind_allocation`): the replica's
   process gets ``CUDA_VISIBLE_DEVICES``/thread options; until then the replica is Pending
   with the claim's own reason.

Claims of replicas no longer wanted (scaled down, a Model removed) are deleted here.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from typing import Any

from corral.api.errors import AlreadyExists, Conflict, NotFound
from corral.api.kinds.endpoint import EndpointSpec
from corral.api.objects import Object
from corral.api.quantity import QuantityError, parse_quantity
from corral.devices.binding import Binding, BindingError, bind_allocation
from corral.devices.sizing import (
    ENDPOINT_LABEL,
    REPLICA_LABEL,
    Footprint,
    ReplicaNeeds,
    SelectorCompiler,
    SizingError,
    never_fits,
    replica_claim,
    replica_needs,
)
from corral.models.status_sizing import replica_estimate
from corral.store.protocol import Store

CLAIM_KIND = "ResourceClaim"
NODE_KIND = "Node"
DEVICE_CLASS_KIND = "DeviceClass"


@dataclass
class ModelClaims:
    """For one Model of an Endpoint: replicas bound, replicas waiting, or why none can run."""

    bound: dict[str, Binding] = field(default_factory=dict)
    waiting: dict[str, str] = field(default_factory=dict)
    refused: tuple[str, str] | None = None
    """(reason, message) when no replica of this Model can ever be placed as asked."""


def claim_name(replica: str) -> str:
    """A replica ``<ns>.<endpoint>.<model>.<i>``'s claim name: ``<endpoint>.<model>.<i>``."""
    return replica.split(".", 1)[1]


def replica_footprint(spec: EndpointSpec, model: Object | None) -> Footprint | None:
    """Weights + KV cache + overhead of one replica, or None when the Model is not GGUF."""
    metadata = ((model or {}).get("status") or {}).get("metadata") or {}
    if not isinstance(metadata, dict):
        return None
    try:
        estimate = replica_estimate(metadata, spec.runtime.type, spec.runtime.options)
    except ValueError as exc:
        raise SizingError(str(exc)) from None
    if estimate is None:
        return None
    return Footprint(estimate.weights, estimate.kv_cache, estimate.overhead)


class ReplicaDevices:
    """Claims and bindings for the Endpoint controller (one per controller, store-backed)."""

    def __init__(
        self, store: Store, compile: SelectorCompiler, *, local_node: str | None = None
    ) -> None:
        self._store = store
        # One compiled predicate per expression: classes change rarely, reconciles often.
        self._compile: SelectorCompiler = functools.lru_cache(maxsize=256)(compile)
        self._local_node = local_node

    async def resolve(
        self, endpoint: Object, spec: EndpointSpec, model: Object | None, replicas: list[str]
    ) -> ModelClaims:
        """Size, check, claim and bind ``replicas`` (names) of one Model of ``endpoint``."""
        assert spec.devices is not None
        outcome = ModelClaims()
        try:
            needs = replica_needs(
                spec.devices.model_dump(exclude_none=True), replica_footprint(spec, model)
            )
        except SizingError as exc:
            outcome.refused = ("SizingUnavailable", str(exc))
            return outcome
        device_class = await self._get(DEVICE_CLASS_KIND, "", needs.class_name)
        nodes = await self._store.list(NODE_KIND)
        problem = never_fits(needs, device_class, nodes.items, self._compile)
        if problem:
            outcome.refused = ("NoDeviceClassFits", problem)
            return outcome
        by_name = {str(n["metadata"]["name"]): n for n in nodes.items}
        for replica in replicas:
            claim = await self._ensure_claim(endpoint, needs, replica)
            allocation = (claim.get("status") or {}).get("allocation")
            if not allocation:
                outcome.waiting[replica] = _waiting_message(claim)
                continue
            try:
                outcome.bound[replica] = bind_allocation(
                    allocation,
                    by_name,
                    spec.runtime.type,
                    spec.runtime.options,
                    local_node=self._local_node,
                )
            except BindingError as exc:
                outcome.waiting[replica] = f"ResourceClaim {claim_name(replica)}: {exc}"
        return outcome

    async def prune(self, namespace: str, endpoint: str, keep: set[str]) -> None:
        """Delete this Endpoint's claims whose replica is not in ``keep``."""
        claims = await self._store.list(
            CLAIM_KIND, namespace, label_selector=f"{ENDPOINT_LABEL}={endpoint}"
        )
        for claim in claims.items:
            replica = (claim["metadata"].get("labels") or {}).get(REPLICA_LABEL)
            if replica not in keep:
                with contextlib.suppress(NotFound):
                    await self._store.delete(CLAIM_KIND, namespace, claim["metadata"]["name"])

    async def _ensure_claim(self, endpoint: Object, needs: ReplicaNeeds, replica: str) -> Object:
        meta = endpoint["metadata"]
        wanted = replica_claim(
            needs,
            namespace=meta["namespace"],
            name=claim_name(replica),
            endpoint=meta["name"],
            replica=replica,
            owner=endpoint,
        )
        current = await self._get(CLAIM_KIND, meta["namespace"], claim_name(replica))
        if current is not None and _asks(current) == _asks(wanted):
            return current
        if current is not None:
            # A claim's request is fixed once made (as in Kubernetes): a new size is a new claim.
            with contextlib.suppress(NotFound):
                await self._store.delete(CLAIM_KIND, meta["namespace"], claim_name(replica))
            return {**wanted, "status": {}}
        with contextlib.suppress(AlreadyExists, Conflict):
            return await self._store.create(wanted, actor="controller:endpoints")
        return wanted

    async def _get(self, kind: str, namespace: str, name: str) -> Object | None:
        try:
            return await self._store.get(kind, namespace, name)
        except NotFound:
            return None


def _asks(claim: Object) -> tuple[object, ...]:
    """What a replica claim asks for, as compared: class and capacity (defaults aside)."""
    requests = ((claim.get("spec") or {}).get("devices") or {}).get("requests") or []
    if len(requests) != 1:
        return (len(requests),)
    exactly = requests[0].get("exactly") or {}
    capacity = (exactly.get("capacity") or {}).get("requests") or {}
    try:
        amounts = tuple(sorted((k, parse_quantity(v)) for k, v in capacity.items()))
    except (QuantityError, TypeError):
        return ("malformed",)
    return (
        requests[0].get("name"),
        exactly.get("deviceClassName"),
        exactly.get("count", 1),
        amounts,
    )


def _waiting_message(claim: Object) -> str:
    name = claim["metadata"]["name"]
    for condition in (claim.get("status") or {}).get("conditions") or []:
        if condition.get("status") in ("False", "True") and condition.get("type") in (
            "Allocated",
            "Unschedulable",
        ):
            if condition.get("type") == "Allocated" and condition.get("status") == "True":
                continue
            reason: Any = condition.get("reason") or ""
            return f"waiting for ResourceClaim {name}: {reason}: {condition.get('message', '')}"
    return f"waiting for ResourceClaim {name} to be allocated"
