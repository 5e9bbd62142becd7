"""What the budget stage reads on a request: the Budgets in force and what each Endpoint costs.

The budget extension keeps its own informers on Budgets, Models and Endpoints and compiles them
into one immutable :class:`BudgetSnapshot`, swapped in whole; the request path only does
dictionary lookups in it, never reads the store.

Prices, per Model version of an Endpoint (``spec.models[].model``):

- the Model object of that name in the Endpoint's namespace, when it has ``spec.pricing``;
- else, for an ``openai``-runtime Endpoint (a hosted upstream), the shipped table
  (``corral.metering.DEFAULT_PRICES``) by the upstream model id;
- else unknown (None): token budgets still count, USD ones cannot (see the budget stage).

Which Budgets apply to a call (all of them, each in its own namespace):

- ``team``: the caller's team, in the caller's namespace (an API key's namespace; a workload's
  SPIFFE namespace). A team written ``ns/name`` names its namespace itself.
- ``apikey``: the ApiKey that authenticated the call, in its namespace.
- ``agent``: a workload whose SPIFFE id is ``spiffe://<domain>/ns/<ns>/agent/<name>``, calling
  alone or as an actor for someone else (in the token's ``act`` chain).
- ``model``: the Endpoint called (its name, the ``model`` clients send without the namespace),
  in the Endpoint's namespace.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pydantic import ValidationError

from corral.api.kinds.model import Pricing
from corral.api.objects import Object
from corral.identity import Principal
from corral.metering import BudgetRule, BudgetSet, Price, Subject, price_for

_log = logging.getLogger(__name__)

_AGENT = re.compile(r"^spiffe://[^/]+/ns/(?P<ns>[^/]+)/agent/(?P<name>[^/]+)$")


@dataclass(frozen=True)
class VersionPrice:
    """One Model version of an Endpoint: its price (None: unknown) and context window."""

    model: str
    price: Price | None
    context_length: int | None


@dataclass(frozen=True)
class EndpointPrices:
    runtime: str
    versions: Mapping[str, VersionPrice]
    """By the version's model name (what the upstream calls it)."""
    worst: Price | None
    """Element-wise the highest input and output price of every version; None when any
    version has no price (the request might land on it)."""
    context_length: int | None
    """The smallest known context window of the versions (bounds the reply), None if none."""


UNKNOWN_ENDPOINT = EndpointPrices("unknown", {}, None, None)


@dataclass(frozen=True)
class BudgetSnapshot:
    budgets: BudgetSet = field(default_factory=BudgetSet)
    rules: tuple[BudgetRule, ...] = ()
    endpoints: Mapping[tuple[str, str], EndpointPrices] = field(default_factory=dict)

    def prices(self, namespace: str, name: str) -> EndpointPrices:
        return self.endpoints.get((namespace, name), UNKNOWN_ENDPOINT)

    def applicable(
        self, principal: Principal | None, endpoint_namespace: str, endpoint_name: str
    ) -> tuple[BudgetRule, ...]:
        """Every Budget scoped to this caller (team, key, agent) or this Endpoint (model)."""
        found: list[BudgetRule] = list(
            self.budgets.applicable(Subject(endpoint_namespace, model=endpoint_name))
        )
        if principal is not None:
            for subject in caller_subjects(principal):
                found.extend(self.budgets.applicable(subject))
        if len(found) < 2:
            return tuple(found)
        unique: dict[str, BudgetRule] = {}
        for rule in found:
            unique.setdefault(rule.ref, rule)
        return tuple(unique.values())


def caller_subjects(principal: Principal) -> list[Subject]:
    """Where the caller's team, key and agent budgets are looked up (module docstring)."""
    subjects: list[Subject] = []
    team = principal.team
    if team:
        namespace, _, name = team.rpartition("/")
        namespace = namespace or principal.namespace or ""
        if namespace:
            subjects.append(Subject(namespace, team=name))
    if principal.kind == "team-key":
        key_namespace, _, key_name = principal.id.rpartition("/")
        if key_namespace:
            subjects.append(Subject(key_namespace, apikey=key_name))
    # An agent counts against its own budgets whether it calls alone (it is the subject) or
    # on someone's behalf (it is an actor in the delegation chain, RFC 8693 ``act``).
    for workload in (principal.id, *principal.act) if principal.kind != "team-key" else ():
        agent = _AGENT.match(workload)
        if agent is not None:
            subjects.append(Subject(agent.group("ns"), agent=agent.group("name")))
    return subjects


def compile_snapshot(
    budgets: Iterable[Object], models: Iterable[Object], endpoints: Iterable[Object]
) -> BudgetSnapshot:
    """Compile the informers' objects; a malformed one is logged and left out."""
    rules: list[BudgetRule] = []
    for budget in budgets:
        try:
            rules.append(BudgetRule.from_object(budget))
        except ValueError as error:
            _log.warning("Budget not enforced: %s", error)
    model_specs: dict[tuple[str, str], tuple[Pricing | None, int | None]] = {}
    for model in models:
        namespace, name = _key_of(model)
        spec = model.get("spec") or {}
        model_specs[(namespace, name)] = (_pricing(spec, namespace, name), _context(spec))
    compiled: dict[tuple[str, str], EndpointPrices] = {}
    for endpoint in endpoints:
        key = _key_of(endpoint)
        try:
            compiled[key] = _endpoint_prices(endpoint, key[0], model_specs)
        except (TypeError, ValueError, AttributeError) as error:
            _log.warning("Endpoint %s/%s has no price: %s", key[0], key[1], error)
    return BudgetSnapshot(BudgetSet(rules), tuple(rules), compiled)


def _endpoint_prices(
    endpoint: Object,
    namespace: str,
    model_specs: Mapping[tuple[str, str], tuple[Pricing | None, int | None]],
) -> EndpointPrices:
    spec = endpoint.get("spec") or {}
    runtime = str((spec.get("runtime") or {}).get("type") or "llamacpp")
    versions: dict[str, VersionPrice] = {}
    for ref in spec.get("models") or []:
        model = str(ref["model"])
        pricing, context = model_specs.get((namespace, model), (None, None))
        if pricing is not None:
            price: Price | None = price_for(model, pricing)
        elif runtime == "openai":
            price = price_for(model)
        else:
            price = None
        versions[model] = VersionPrice(model, price, context)
    prices = [version.price for version in versions.values()]
    worst = None
    if prices and all(price is not None for price in prices):
        known = [price for price in prices if price is not None]
        worst = Price(
            max(price.input_per_million for price in known),
            max(price.output_per_million for price in known),
        )
    contexts = [v.context_length for v in versions.values() if v.context_length is not None]
    return EndpointPrices(runtime, versions, worst, min(contexts) if contexts else None)


def _pricing(spec: Mapping[str, object], namespace: str, name: str) -> Pricing | None:
    raw = spec.get("pricing")
    if raw is None:
        return None
    try:
        return Pricing.model_validate(raw)
    except ValidationError as error:
        _log.warning("Model %s/%s spec.pricing ignored: %s", namespace, name, error)
        return None


def _context(spec: Mapping[str, object]) -> int | None:
    value = spec.get("contextLength")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _key_of(obj: Object) -> tuple[str, str]:
    metadata = obj.get("metadata") or {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


def worse(first: Price | None, second: Price | None) -> Price | None:
    """The element-wise higher of two prices; None (unknown) wins."""
    if first is None or second is None:
        return None
    return Price(
        max(first.input_per_million, second.input_per_million),
        max(first.output_per_million, second.output_per_million),
    )
