"""Budget rules compiled from Budget objects, and which of them apply to a request.

The gateway builds a :class:`BudgetSet` from the store's watch and swaps it in whole; the
request path only asks it ``applicable(subject)``, a few dictionary lookups, never the store.
Each rule turns into one counter per limited unit per period window; the counter key names the
budget, window and unit so every process charging the same budget meets on the same row.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypeVar

from pydantic import BaseModel, ValidationError

from corral.api.kinds.budget import BudgetSpec
from corral.api.objects import Object
from corral.metering.periods import Period, period_window
from corral.metering.pricing import MICRO_USD_PER_USD, Amount

Unit = Literal["tokens", "usd"]
ScopeKind = Literal["team", "apikey", "model", "agent"]


SpecT = TypeVar("SpecT", bound=BaseModel)


def parse_spec(obj: Object, kind: str, model: type[SpecT]) -> tuple[str, str, SpecT]:
    """Namespace, name and validated spec of a stored ``kind`` object; ValueError names the
    object and the first bad field (``Budget ns/name spec.limits.usd: …``)."""
    meta = obj.get("metadata") or {}
    namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    if obj.get("kind") != kind or not namespace or not name:
        raise ValueError(
            f"expected a namespaced {kind} object with a name, got kind={obj.get('kind')!r} "
            f"namespace={namespace!r} name={name!r}"
        )
    try:
        spec = model.model_validate(obj.get("spec") or {})
    except ValidationError as error:
        first = error.errors()[0]
        path = ".".join(str(part) for part in first["loc"])
        where = f"spec.{path}" if path else "spec"
        raise ValueError(f"{kind} {namespace}/{name} {where}: {first['msg']}") from None
    return namespace, name, spec


@dataclass(frozen=True)
class Subject:
    """Who is asking and for what: the identities budgets can be scoped to."""

    namespace: str
    team: str | None = None
    apikey: str | None = None
    model: str | None = None
    agent: str | None = None


@dataclass(frozen=True)
class CounterLine:
    """One counter a reservation touches: a budget's unit in the current window."""

    key: str
    budget: BudgetRule
    unit: Unit
    limit: int
    """Tokens, or micro-USD."""
    window_end: datetime | None

    def share_of(self, amount: Amount) -> int:
        return amount.tokens if self.unit == "tokens" else amount.micro_usd


@dataclass(frozen=True)
class BudgetRule:
    namespace: str
    name: str
    scope_kind: ScopeKind
    scope_name: str
    period: Period
    hard: bool
    token_limit: int | None
    micro_usd_limit: int | None

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def from_spec(cls, namespace: str, name: str, spec: BudgetSpec) -> BudgetRule:
        usd = spec.limits.usd
        return cls(
            namespace=namespace,
            name=name,
            scope_kind=spec.scope.kind,
            scope_name=spec.scope.name,
            period=spec.period,
            hard=spec.mode == "hard",
            token_limit=spec.limits.tokens,
            micro_usd_limit=None if usd is None else _micro_usd_floor(usd),
        )

    @classmethod
    def from_object(cls, obj: Object) -> BudgetRule:
        """The rule a stored Budget object declares; ValueError names the object and field."""
        namespace, name, spec = parse_spec(obj, "Budget", BudgetSpec)
        return cls.from_spec(namespace, name, spec)

    def counter_lines(self, now: datetime) -> list[CounterLine]:
        label, window_end = period_window(self.period, now)
        limits: tuple[tuple[Unit, int | None], ...] = (
            ("tokens", self.token_limit),
            ("usd", self.micro_usd_limit),
        )
        return [
            CounterLine(
                f"{self.namespace}/{self.name}/{label}/{unit}", self, unit, limit, window_end
            )
            for unit, limit in limits
            if limit is not None
        ]


def _micro_usd_floor(usd: float) -> int:
    # Round down, so $0.0000015 allows 1 micro-USD, never 2; but first drop float noise, so
    # $0.57 (569999.99999... micro-USD as a float) allows 570000.
    return math.floor(round(usd * MICRO_USD_PER_USD, 6))


class BudgetSet:
    """An immutable snapshot of every Budget, indexed by what it is scoped to."""

    def __init__(self, rules: Iterable[BudgetRule] = ()) -> None:
        index: dict[tuple[str, str, str], list[BudgetRule]] = {}
        for rule in rules:
            index.setdefault((rule.namespace, rule.scope_kind, rule.scope_name), []).append(rule)
        self._index = {scope: tuple(found) for scope, found in index.items()}

    @classmethod
    def from_objects(cls, objects: Iterable[Object]) -> BudgetSet:
        return cls(BudgetRule.from_object(obj) for obj in objects)

    def applicable(self, subject: Subject) -> tuple[BudgetRule, ...]:
        """Every budget in the subject's namespace scoped to its team, key, model or agent."""
        found: list[BudgetRule] = []
        scopes: tuple[tuple[ScopeKind, str | None], ...] = (
            ("team", subject.team),
            ("apikey", subject.apikey),
            ("model", subject.model),
            ("agent", subject.agent),
        )
        for kind, name in scopes:
            if name is not None:
                found.extend(self._index.get((subject.namespace, kind, name), ()))
        return tuple(found)
