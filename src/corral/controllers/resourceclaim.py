"""The ResourceClaim controller: the scheduler that binds claims to devices, once and only once.

``reconcile(key)`` re-reads the world (Nodes, DeviceClasses, DeviceQuotas, ResourceClaims) into
the in-memory :class:`~corral.devices.scheduling.ClaimScheduler`, then settles one claim: it
decides pending claims ranked ahead of it in the queue first (priority, then fair share), then
the claim itself, and writes the outcome back.

Binding is idempotent and safe with several schedulers running at once. The truth about which
device is held is the Node's ``status.allocations`` ledger (claim key → the allocation's
results), written with the Node's resourceVersion as a precondition, and checked against the
ledger as just read: two schedulers can never both add a claim to one device, the loser gets a
Conflict, re-reads and decides again. Only after the ledger write does the claim's
``status.allocation`` follow (with the claim's resourceVersion as precondition). A ledger entry
whose claim shows no allocation is a bind in flight or one a crash interrupted: any scheduler
completes it by writing the claim status from it. A ledger entry of a claim allocated on another
node (two schedulers raced on the same claim) or of a deleted claim is removed.

Conditions on claims: ``Allocated`` (True: reason ``Allocated`` or
``AllocatedAfterPreemption`` naming the victims; False: ``WaitingForDevices``,
``QuotaExceeded``, ``NodeLost``, ``Preempted``), ``Unschedulable`` (True with
``NoNodeCanEverFit`` or ``InvalidClaim`` and what is wrong) and ``Preempted`` on a victim
naming the claim that took its devices.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

from corral.api.errors import Conflict, NotFound
from corral.api.objects import Object, ObjectKey, now_rfc3339
from corral.controllers.resourceclaim_sources import InformerSource, ObjectSource, StoreSource
from corral.controlplane import Controller, Manager, Result, Watch, set_condition
from corral.devices.demand import Demand, DemandError, demand_from_claim
from corral.devices.fleet_index import InventoryError
from corral.devices.quotas import QuotaError
from corral.devices.scheduling import ClaimScheduler, Decision
from corral.devices.selection import SelectorCompiler
from corral.store.protocol import Store

logger = logging.getLogger(__name__)

CLAIM, NODE, CLASS, QUOTA = "ResourceClaim", "Node", "DeviceClass", "DeviceQuota"
NAMESPACE = "Namespace"
LEDGER = "allocations"
BIND_ATTEMPTS = 8
PENDING_RECHECK_S = 30.0
UNSCHEDULABLE_RECHECK_S = 120.0
# Unplaceable dummy for a ledger entry whose claim we cannot read: holds its devices, never
# preempted (nothing outranks it), charges no quota.
_ORPHAN_PRIORITY = 2**62


class ClaimReconciler:
    """One scheduler: its in-memory view of the fleet and the store it binds through."""

    def __init__(
        self,
        store: Store,
        compile: SelectorCompiler,
        *,
        source: ObjectSource | None = None,
        actor: str = "scheduler",
    ) -> None:
        self._store = store
        self._actor = actor
        self._source = source or StoreSource(store)
        self.core = ClaimScheduler(compile)
        self._claims: dict[str, Object] = {}
        self._namespace_labels: dict[str, dict[str, str]] = {}
        self._allocated_on: dict[str, set[str]] = {}
        self._ledger_keys: dict[str, set[str]] = {}

    async def __call__(self, key: ObjectKey) -> Result:
        await self.sync()
        claim_key = f"{key.namespace}/{key.name}"
        order = [d.key for d in self.core.queue.ordered(self.core.book)]
        for ahead in order[: order.index(claim_key)] if claim_key in order else []:
            if self.core.worth_trying(ahead):
                await self._settle(ahead)
        return await self._settle(claim_key)

    # -- reading the world ------------------------------------------------------------------

    async def sync(self) -> None:
        """Bring the core in step with the store; only objects whose version moved are read in."""
        core = self.core
        for name, obj in (await self._changed(CLASS)).items():
            core.remove_class(name) if obj is None else core.put_class(obj)
        for name, obj in (await self._changed(QUOTA)).items():
            try:
                core.remove_quota(name) if obj is None else core.put_quota(obj)
            except QuotaError as exc:
                logger.warning("ignoring DeviceQuota %s: %s", name, exc)
        for name, obj in (await self._changed(NAMESPACE)).items():
            labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
            self._namespace_labels[name] = dict(labels)
        changed_claims = await self._changed(CLAIM)
        for key, obj in changed_claims.items():
            self._index_allocation(key, obj)
            if obj is None:
                self._claims.pop(key, None)
                core.queue.remove(key)
            else:
                self._claims[key] = obj
                demand = self._demand(obj)
                if demand is not None and key in core.bound:
                    core.bound[key] = demand
                elif demand is not None and key not in core.index.held:
                    core.submit(demand)
        changed_nodes = await self._changed(NODE)
        for name, obj in changed_nodes.items():
            self._put_node(name, obj)
        recheck = set(changed_claims)
        for name in changed_nodes:
            recheck |= self._allocated_on.get(name, set())
        self._hold_claimed(recheck)

    def _index_allocation(self, key: str, obj: Object | None) -> None:
        for keys in self._allocated_on.values():
            keys.discard(key)
        node = _allocated_node(obj)
        if node:
            self._allocated_on.setdefault(node, set()).add(key)

    def _hold_claimed(self, keys: set[str]) -> None:
        """Claims whose status names devices the ledgers do not: hold them here all the same.

        A ledger can lose entries (a Node status written by someone who dropped them); until
        the claim is reconciled (and the entry written back), its devices are not offered.
        """
        for key in keys:
            claim = self._claims.get(key)
            allocation = ((claim or {}).get("status") or {}).get("allocation")
            if not allocation or key in self.core.index.held or claim is None:
                continue
            demand = self._demand(claim)
            if demand is not None and self.core.index.node(_allocated_node(claim)) is not None:
                self.core.adopt(demand, allocation)

    def _put_node(self, name: str, obj: Object | None) -> None:
        core = self.core
        for key in [k for k, held in core.index.held.items() if held.node == name]:
            core.forget_allocation(key)
            demand = self._demand(self._claims[key]) if key in self._claims else None
            if demand is not None:
                core.queue.push(demand)
        self._ledger_keys.pop(name, None)
        if obj is None:
            core.remove_node(name)
            return
        try:
            core.put_node(obj)
        except InventoryError as exc:
            logger.warning("ignoring Node %s: %s", name, exc)
            core.remove_node(name)
            return
        self._ledger_keys[name] = set(_ledger(obj))
        for key, entry in _ledger(obj).items():
            claim = self._claims.get(key)
            demand = self._demand(claim) if claim is not None else None
            if demand is None:
                demand = Demand(key, (), priority=_ORPHAN_PRIORITY, queue="")
            problem = core.adopt(demand, {"nodeName": name, "devices": entry.get("devices") or {}})
            if problem:
                logger.warning("Node %s ledger entry for %s: %s", name, key, problem)

    def _read(self, claim: Object) -> Demand:
        namespace = str(claim["metadata"].get("namespace") or "")
        return demand_from_claim(claim, self._namespace_labels.get(namespace))

    def _demand(self, claim: Object) -> Demand | None:
        try:
            return self._read(claim)
        except DemandError:
            return None

    async def _changed(self, kind: str) -> dict[str, Object | None]:
        return await self._source.changed(kind)

    # -- settling one claim -----------------------------------------------------------------

    async def _settle(self, key: str) -> Result:
        namespace, _, name = key.partition("/")
        try:
            claim = await self._store.get(CLAIM, namespace, name)
        except NotFound:
            claim = {}
        if not claim or claim["metadata"].get("deletionTimestamp"):
            await self._drop_entries(key, keep_node=None)
            self.core.forget(key)
            return Result()
        try:
            demand = self._read(claim)
        except DemandError as exc:
            await self._write(claim, None, ("Unschedulable", True, "InvalidClaim", str(exc)))
            return Result()
        allocation = (claim.get("status") or {}).get("allocation")
        held = self.core.index.held.get(key)
        if allocation:
            node = str(allocation.get("nodeName") or "")
            in_ledger = key in self._ledger_keys.get(node, set())
            if held is not None and held.node == node and in_ledger:
                await self._drop_entries(key, keep_node=node)
                return Result()
            if await self._ledger_entry(node, key) is not None:
                # Our cached view of the node is behind the store: catch up, nothing is lost.
                await self._refresh_node(node)
                return Result(requeue_after=0.0)
            # The ledger lost the entry (or never had it): write it back if it still fits.
            entry = {
                "devices": allocation.get("devices") or {},
                "reservedAt": now_rfc3339(),
                "reservedBy": f"{self._actor} (restored from the claim)",
            }
            if await self._edit_ledger(node, key, entry):
                await self._refresh_node(node)
                return Result()
            lost = (
                f"node {node} is gone"
                if self.core.index.node(node) is None
                else (f"node {node} no longer lists the allocation")
            )
            cleared = await self._write(claim, {}, ("Allocated", False, "NodeLost", lost))
            if cleared is None:
                return Result(requeue_after=0.0)
            claim = cleared
        elif held is not None:
            # A bind in flight, or one a crash cut short: finish it from the ledger.
            ledger = await self._ledger_entry(held.node, key)
            if ledger is not None:
                done = {"nodeName": held.node, "devices": ledger.get("devices") or {}}
                await self._write(claim, done, ("Allocated", True, "Allocated", f"on {held.node}"))
                return Result()
            await self._refresh_node(held.node)
            if key in self.core.index.held:
                return Result(requeue_after=0.0)
        return await self._decide(claim, demand)

    async def _decide(self, claim: Object, demand: Demand) -> Result:
        core = self.core
        for _ in range(BIND_ATTEMPTS):
            decision = core.decide(demand)
            if decision.outcome == "unschedulable":
                await self._write(
                    claim, None, ("Unschedulable", True, decision.reason, decision.message)
                )
                return Result(requeue_after=UNSCHEDULABLE_RECHECK_S)
            if decision.outcome == "pending":
                await self._write(
                    claim, None, ("Allocated", False, decision.reason, decision.message)
                )
                return Result(requeue_after=PENDING_RECHECK_S)
            outcome = await self._persist(claim, decision)
            if outcome != "retry":
                return Result() if outcome == "bound" else Result(requeue_after=0.0)
            await self.sync()
            if demand.key in core.index.held:
                # Another scheduler's bind of this claim showed up in a ledger: settle again.
                return Result(requeue_after=0.0)
        return Result(requeue_after=1.0)

    async def _persist(self, claim: Object, decision: Decision) -> str:
        """Write a bind (and its evictions); "bound", "retry" (lost a race) or "stale"."""
        assert decision.placement is not None
        core = self.core
        for victim in decision.victims:
            if not await self._evict(victim, decision):
                core.undo(decision)
                return "retry"
        entry = {
            "devices": decision.placement.allocation()["devices"],
            "reservedAt": now_rfc3339(),
            "reservedBy": self._actor,
        }
        if not await self._edit_ledger(decision.placement.node, decision.key, entry):
            core.undo(decision)
            return "retry"
        allocation = decision.placement.allocation()
        written = await self._write(
            claim, allocation, ("Allocated", True, decision.reason, decision.message)
        )
        if written is None:
            # The claim moved under us (another scheduler bound it, or it changed): give our
            # ledger entry back unless the claim now shows that very allocation.
            core.undo(decision)
            namespace, _, name = decision.key.partition("/")
            try:
                fresh = await self._store.get(CLAIM, namespace, name)
            except NotFound:
                fresh = {}
            if (fresh.get("status") or {}).get("allocation") != allocation:
                await self._edit_ledger(decision.placement.node, decision.key, None)
            await self._refresh_node(decision.placement.node)
            return "stale"
        return "bound"

    async def _evict(self, victim: str, decision: Decision) -> bool:
        namespace, _, name = victim.partition("/")
        try:
            obj = await self._store.get(CLAIM, namespace, name)
        except NotFound:
            return True
        message = f"preempted by {decision.key}: {decision.message}"
        status = copy.deepcopy(obj.get("status") or {})
        node = str((status.get("allocation") or {}).get("nodeName") or "")
        status.pop("allocation", None)
        set_condition(status, "Preempted", True, "PreemptedByHigherPriority", message)
        set_condition(status, "Allocated", False, "Preempted", message)
        try:
            await self._store.update_status({**obj, "status": status})
        except (Conflict, NotFound):
            return False
        held = self.core.index.held.get(victim)
        for where in {node, held.node if held else ""} - {""}:
            await self._edit_ledger(where, victim, None)
        return True

    # -- writes -----------------------------------------------------------------------------

    async def _write(
        self,
        claim: Object,
        allocation: dict[str, Any] | None,
        condition: tuple[str, bool, str, str],
    ) -> Object | None:
        """Status write with the claim's resourceVersion; None when someone else wrote first.

        ``allocation`` None keeps it, {} removes it.
        """
        status = copy.deepcopy(claim.get("status") or {})
        if allocation == {}:
            status.pop("allocation", None)
        elif allocation is not None:
            status["allocation"] = allocation
        generation = int(claim["metadata"].get("generation") or 0)
        kind, value, reason, message = condition
        set_condition(status, kind, value, reason, message, generation)
        if kind == "Allocated" and value:
            set_condition(status, "Unschedulable", False, "Allocated", "", generation)
            set_condition(status, "Preempted", False, "Allocated", "", generation)
        if kind == "Unschedulable":
            set_condition(status, "Allocated", False, reason, message, generation)
        if status == (claim.get("status") or {}):
            return claim
        try:
            return await self._store.update_status({**claim, "status": status})
        except (Conflict, NotFound):
            return None

    async def _refresh_node(self, name: str) -> None:
        try:
            obj: Object | None = await self._store.get(NODE, "", name)
        except NotFound:
            obj = None
        self._source.forget(NODE, name)
        self._put_node(name, obj)

    async def _ledger_entry(self, node: str, key: str) -> dict[str, Any] | None:
        try:
            obj = await self._store.get(NODE, "", node)
        except NotFound:
            return None
        return _ledger(obj).get(key)

    async def _edit_ledger(self, node: str, key: str, entry: dict[str, Any] | None) -> bool:
        """Add (checked against the ledger as read) or remove one claim's entry on ``node``."""
        for _ in range(BIND_ATTEMPTS):
            try:
                obj = await self._store.get(NODE, "", node)
            except NotFound:
                return entry is None
            ledger = dict(_ledger(obj))
            if entry is None:
                if key not in ledger:
                    return True
                del ledger[key]
            else:
                if key in ledger:
                    return bool(ledger[key].get("devices") == entry["devices"])
                if not _fits_ledger(obj, ledger, key, entry):
                    self._put_node(node, obj)
                    return False
                ledger[key] = entry
            status = copy.deepcopy(obj.get("status") or {})
            status[LEDGER] = ledger
            try:
                await self._store.update_status({**obj, "status": status})
                return True
            except Conflict:
                continue
        return False

    async def _drop_entries(self, key: str, keep_node: str | None) -> None:
        for node, keys in list(self._ledger_keys.items()):
            if node != keep_node and key in keys:
                await self._edit_ledger(node, key, None)
                keys.discard(key)


def _fits_ledger(
    node: Object, ledger: Mapping[str, Any], key: str, entry: Mapping[str, Any]
) -> bool:
    """Whether the node as stored holds every ledger entry plus ``entry`` within capacity."""
    from corral.devices.fleet_index import FleetIndex
    from corral.devices.scheduling import held_from_allocation

    index = FleetIndex()
    try:
        index.put_node({**node, "status": {**(node.get("status") or {}), LEDGER: {}}})
    except InventoryError:
        return False
    name = node["metadata"]["name"]
    for claim, item in [*ledger.items(), (key, entry)]:
        held = held_from_allocation({"nodeName": name, "devices": item.get("devices") or {}}, index)
        if isinstance(held, str):
            return False
        try:
            index.commit(claim, held)
        except ValueError:
            return False
    return True


def _allocated_node(claim: Object | None) -> str:
    allocation = ((claim or {}).get("status") or {}).get("allocation") or {}
    return str(allocation.get("nodeName") or "")


def _ledger(node: Object) -> dict[str, dict[str, Any]]:
    raw = (node.get("status") or {}).get(LEDGER)
    return dict(raw) if isinstance(raw, dict) else {}


def resourceclaim_controller(manager: Manager, compile: SelectorCompiler) -> Controller:
    """The scheduler controller; wake a claim when anything it may depend on changes."""
    kinds = (CLAIM, NODE, CLASS, QUOTA, NAMESPACE)
    source = InformerSource({kind: manager.informer(kind) for kind in kinds})
    reconciler = ClaimReconciler(manager.store, compile, source=source)

    def pending_claims(_: Object) -> list[ObjectKey]:
        return [
            ObjectKey(CLAIM, *key.split("/", 1))
            for key in list(reconciler.core.queue.pending)[:256]
        ]

    def held_on_node(obj: Object) -> list[ObjectKey]:
        name = obj["metadata"]["name"]
        keys = [k for k, h in reconciler.core.index.held.items() if h.node == name]
        keys += list(_ledger(obj))
        return [ObjectKey(CLAIM, *k.split("/", 1)) for k in dict.fromkeys(keys)]

    return Controller(
        "resourceclaims",
        for_kind=CLAIM,
        reconciler=reconciler,
        watches=(
            Watch(NODE, lambda obj: held_on_node(obj) + pending_claims(obj)),
            Watch(CLASS, pending_claims),
            Watch(QUOTA, pending_claims),
        ),
    )
