"""Quotas: how much of each device class a team's queue may hold, and borrowing in a cohort.

Kueue's model, on DRA device classes. A ``DeviceQuota`` (one per queue, named after it) gives
its queue a *nominal* amount per (device class, resource) line, where the resource is
``devices`` (whole devices; a share of a shareable device counts as its fraction) or a capacity
name (e.g. ``memory``). A queue may go over its nominal amount by borrowing what other queues of
its *cohort* leave unused, at most ``borrowingLimit`` over nominal. Admission is checked before
a claim is bound; the :class:`QuotaBook` then charges the claim's usage to its queue until the
claim releases its devices.

Rules that make the book simple to reason about:

- a queue with no DeviceQuota is not limited (quotas are opt-in per team);
- a queue with a DeviceQuota that has no line for a claim's device class admits none of it;
- resources the quota does not list for a class are not limited;
- a queue is *borrowing* when any line is over nominal: its claims may be reclaimed by cohort
  members (see ``corral.devices.preemption``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from corral.api.quantity import QuantityError, parse_quantity
from corral.devices.allocator import Placement
from corral.devices.demand import Demand
from corral.devices.fleet_index import FleetIndex

DEVICES = "devices"
Line = tuple[str, str]  # (device class, resource)
Usage = dict[Line, Fraction]


class QuotaError(ValueError):
    """A DeviceQuota spec the book cannot read; the message names the field."""


@dataclass(frozen=True, slots=True)
class Limit:
    nominal: Fraction
    borrowing_limit: Fraction | None


@dataclass(frozen=True, slots=True)
class QueueQuota:
    name: str
    team: str
    cohort: str
    limits: Mapping[Line, Limit]
    within_queue: str = "LowerPriority"
    reclaim_within_cohort: str = "Any"

    @property
    def classes(self) -> frozenset[str]:
        return frozenset(device_class for device_class, _ in self.limits)


def quota_from_object(obj: Mapping[str, Any]) -> QueueQuota:
    """The :class:`QueueQuota` of a stored DeviceQuota object (named after its queue)."""
    name = str((obj.get("metadata") or {}).get("name") or "")
    spec = obj.get("spec") or {}
    limits: dict[Line, Limit] = {}
    for i, line in enumerate(spec.get("quotas") or []):
        where = f"DeviceQuota {name}: spec.quotas[{i}]"
        device_class = str(line.get("deviceClassName") or "")
        nominal = line.get("nominal")
        borrowing = line.get("borrowingLimit")
        if isinstance(nominal, Mapping):
            borrow_map = borrowing if isinstance(borrowing, Mapping) else {}
            for resource, amount in nominal.items():
                limits[(device_class, str(resource))] = Limit(
                    _amount(amount, f"{where}.nominal.{resource}"),
                    _optional(borrow_map.get(resource), f"{where}.borrowingLimit.{resource}"),
                )
        else:
            limits[(device_class, DEVICES)] = Limit(
                _amount(nominal, f"{where}.nominal"),
                _optional(borrowing, f"{where}.borrowingLimit"),
            )
    preemption = spec.get("preemption") or {}
    return QueueQuota(
        name=name,
        team=str(spec.get("team") or ""),
        cohort=str(spec.get("cohort") or ""),
        limits=limits,
        within_queue=str(preemption.get("withinQueue") or "LowerPriority"),
        reclaim_within_cohort=str(preemption.get("reclaimWithinCohort") or "Any"),
    )


def _amount(value: object, where: str) -> Fraction:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise QuotaError(f"{where}: expected a quantity")
    try:
        return parse_quantity(value)
    except QuantityError as exc:
        raise QuotaError(f"{where}: {exc}") from None


def _optional(value: object, where: str) -> Fraction | None:
    return None if value is None else _amount(value, where)


def placement_usage(placement: Placement, classes: Mapping[str, str], index: FleetIndex) -> Usage:
    """What a placement charges: per (class, resource). ``classes`` maps result name → class."""
    usage: Usage = {}
    node = index.node(placement.node)
    for taken in placement.taken:
        device_class = classes[taken.request]
        share = Fraction(1)
        if not taken.exclusive and node is not None:
            slot = node.slots[node.column_of[taken.device]]
            parts = [a / slot.capacity[c] for c, a in taken.consumed if slot.capacity.get(c)]
            share = max(parts, default=Fraction(1))
        _add(usage, (device_class, DEVICES), share)
        for cap, amount in taken.consumed:
            _add(usage, (device_class, cap), amount)
    return usage


def result_classes(demand: Demand) -> dict[str, str]:
    return {c.result_name: c.device_class for r in demand.requests for c in r.choices}


def _add(usage: Usage, line: Line, amount: Fraction) -> None:
    usage[line] = usage.get(line, Fraction(0)) + amount


@dataclass(eq=False)
class QuotaBook:
    """Quotas by queue name, and what every bound claim charges to its queue."""

    queues: dict[str, QueueQuota] = field(default_factory=dict)
    usage: dict[str, Usage] = field(default_factory=dict)
    charged: dict[str, tuple[str, Usage]] = field(default_factory=dict)

    def set_quota(self, quota: QueueQuota) -> None:
        self.queues[quota.name] = quota

    def remove_quota(self, name: str) -> None:
        self.queues.pop(name, None)

    def charge(self, claim: str, queue: str, usage: Usage) -> None:
        self.refund(claim)
        self.charged[claim] = (queue, usage)
        book = self.usage.setdefault(queue, {})
        for line, amount in usage.items():
            book[line] = book.get(line, Fraction(0)) + amount

    def refund(self, claim: str) -> None:
        entry = self.charged.pop(claim, None)
        if entry is None:
            return
        queue, usage = entry
        book = self.usage.get(queue, {})
        for line, amount in usage.items():
            book[line] = book.get(line, Fraction(0)) - amount

    def cohort_of(self, queue: str) -> list[QueueQuota]:
        quota = self.queues.get(queue)
        if quota is None or not quota.cohort:
            return []
        return [q for q in self.queues.values() if q.cohort == quota.cohort]

    def used(self, queue: str, line: Line, without: Iterable[str] = ()) -> Fraction:
        amount = self.usage.get(queue, {}).get(line, Fraction(0))
        for claim in without:
            entry = self.charged.get(claim)
            if entry is not None and entry[0] == queue:
                amount -= entry[1].get(line, Fraction(0))
        return amount

    def admits(self, queue: str, usage: Usage, without: Iterable[str] = ()) -> str:
        """Why ``queue`` cannot take ``usage`` more (with ``without`` refunded), or ""."""
        quota = self.queues.get(queue)
        if quota is None:
            return ""
        gone = tuple(without)
        for line, amount in usage.items():
            device_class, resource = line
            if device_class not in quota.classes:
                return f"queue {queue} has no quota for device class {device_class}"
            limit = quota.limits.get(line)
            if limit is None:
                continue
            after = self.used(queue, line, gone) + amount
            over = after - limit.nominal
            if over > 0 and limit.borrowing_limit is not None and over > limit.borrowing_limit:
                return (
                    f"queue {queue} would use {_num(after)} {resource} of {device_class}: "
                    f"nominal {_num(limit.nominal)} + borrowing limit {_num(limit.borrowing_limit)}"
                )
            members = self.cohort_of(queue)
            if not members:
                if over > 0:
                    return (
                        f"queue {queue} would use {_num(after)} {resource} of {device_class}, "
                        f"over its nominal {_num(limit.nominal)} with no cohort to borrow from"
                    )
                continue
            # In a cohort even a queue within its nominal amount may find it lent out: it
            # gets it back by reclaiming (preemption), never by over-committing the pool.
            pool = sum((m.limits[line].nominal for m in members if line in m.limits), Fraction(0))
            taken = sum((self.used(m.name, line, gone) for m in members), Fraction(0)) + amount
            if taken > pool:
                return (
                    f"cohort {quota.cohort} has {_num(pool - taken + amount)} {resource} of "
                    f"{device_class} unused; queue {queue} needs {_num(amount)}"
                )
        return ""

    def within_nominal(self, queue: str, usage: Usage, without: Iterable[str] = ()) -> bool:
        """Whether ``queue`` stays within its nominal amounts after taking ``usage``."""
        quota = self.queues.get(queue)
        if quota is None:
            return True
        gone = tuple(without)
        return all(
            self.used(queue, line, gone) + amount <= quota.limits[line].nominal
            for line, amount in usage.items()
            if line in quota.limits
        )

    def borrowing(self, queue: str, without: Iterable[str] = ()) -> bool:
        quota = self.queues.get(queue)
        if quota is None:
            return False
        gone = tuple(without)
        return any(self.used(queue, line, gone) > lim.nominal for line, lim in quota.limits.items())

    def share(self, queue: str) -> float:
        """Dominant share: the largest used/nominal over the queue's lines (fair-share order)."""
        quota = self.queues.get(queue)
        used = self.usage.get(queue, {})
        if quota is None:
            return float(sum(v for (_, r), v in used.items() if r == DEVICES))
        ratios = [
            float(used.get(line, 0)) / float(limit.nominal)
            if limit.nominal
            else float(used.get(line, 0) > 0) * 1e9
            for line, limit in quota.limits.items()
        ]
        return max(ratios, default=0.0)

    def violations(self) -> list[str]:
        """Every queue or cohort over what it may hold (the replay's invariant: none)."""
        problems = []
        cohorts: dict[str, list[QueueQuota]] = {}
        for quota in self.queues.values():
            if quota.cohort:
                cohorts.setdefault(quota.cohort, []).append(quota)
            for line, limit in quota.limits.items():
                used = self.used(quota.name, line)
                cap = limit.nominal
                if quota.cohort:
                    cap += limit.borrowing_limit if limit.borrowing_limit is not None else used
                if used > cap:
                    problems.append(
                        f"queue {quota.name} holds {_num(used)} of {line}, cap {_num(cap)}"
                    )
            for (device_class, _), _amount_used in self.usage.get(quota.name, {}).items():
                if _amount_used > 0 and device_class not in quota.classes:
                    problems.append(f"queue {quota.name} holds {device_class} without quota")
        for cohort, members in cohorts.items():
            lines = {line for m in members for line in m.limits}
            for line in lines:
                pool = sum(
                    (m.limits[line].nominal for m in members if line in m.limits), Fraction(0)
                )
                used = sum((self.used(m.name, line) for m in members), Fraction(0))
                if used > pool:
                    problems.append(
                        f"cohort {cohort} holds {_num(used)} of {line}, pool {_num(pool)}"
                    )
        return problems


def _num(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{float(value):.3g}"
