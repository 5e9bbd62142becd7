"""Policy benchmark: µs per authorization decision, reused snapshot vs re-parsing per call.

    python benchmarks/policy_bench.py [--quick]

For 1, 10 and 100 Policy objects (each a team's permit with a label and token condition, plus
one forbid) over 50 Endpoints, prints medians over a few repeats of:

- ``engine, cached``: ``PolicyEngine.decide`` repeating one request, answered from the
  snapshot's decision cache (``corral.policy.decision_cache``), the gateway's common case;
- ``engine, miss``: the same, but ``estimated_tokens`` (which these policies read) differs
  every call, so every call builds a key, asks Cedar and stores the answer;
- ``engine, uncached``: ``decide(..., cached=False)`` on a reused snapshot (parsed PolicySet,
  Entities and schema handles; only the principal is parsed per call), i.e. Cedar every time;
- ``cedar, reused``: bare ``cedarpy.is_authorized`` with the same handles and the principal
  already in the entities (the floor the engine adds its bookkeeping to);
- ``re-parse policies``: ``is_authorized`` given the policy text each call (entities and schema
  handles reused);
- ``re-parse all``: the policy text and the entities JSON each call (schema handle reused),
  i.e. everything a snapshot saves.

A second table varies ``estimated_tokens`` every call with policies that do not read it (the
team permit without its token condition): those calls still hit the cache.

DESIGN §3 measured 55–80 µs per decision reused and 180–350 µs re-parsing on this machine.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import cedarpy
from rich.console import Console
from rich.table import Table

from corral.policy import (
    CEDAR_SCHEMA,
    PolicyEngine,
    invoke_context,
    object_entity,
    principal_entity,
)

ENDPOINTS = 50
POLICY_COUNTS = (1, 10, 100)


def policy_objects(count: int, *, token_condition: bool = True) -> list[dict[str, Any]]:
    tokens = " && context.estimated_tokens <= 8000" if token_condition else ""
    objects = [
        {
            "apiVersion": "corral.dev/v1alpha1",
            "kind": "Policy",
            "metadata": {"name": f"team-{index}", "namespace": "default"},
            "spec": {
                "cedar": (
                    f'permit(principal is ApiKey in Team::"default/team-{index}",'
                    ' action == Action::"invoke", resource is Endpoint)\n'
                    '  when { resource.hasTag("team") && resource.getTag("team") == principal.team'
                    f"{tokens} }};"
                )
            },
        }
        for index in range(count - 1)
    ]
    objects.append(
        {
            "apiVersion": "corral.dev/v1alpha1",
            "kind": "Policy",
            "metadata": {"name": "night-freeze", "namespace": "default"},
            "spec": {
                "cedar": "forbid(principal, action, resource) when { context.time.hour >= 23 };"
            },
        }
    )
    return objects


def measure(call: Callable[[], object], calls: int, repeats: int) -> float:
    """Median µs per call over ``repeats`` runs of ``calls`` calls."""
    call()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        samples.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(samples)


def bench_row(count: int, calls: int, repeats: int, *, token_condition: bool = True) -> list[str]:
    objects = policy_objects(count, token_condition=token_condition)
    endpoints = [
        object_entity(
            {
                "kind": "Endpoint",
                "metadata": {
                    "name": f"ep-{index}",
                    "namespace": "default",
                    "labels": {"team": f"team-{index % max(count - 1, 1)}"},
                },
            }
        )
        for index in range(ENDPOINTS)
    ]
    engine = PolicyEngine(objects, endpoints)
    if engine.snapshot.problems:
        raise SystemExit(f"benchmark policies do not check: {dict(engine.snapshot.problems)}")
    principal = principal_entity("team-key", "default/key-0", team="team-0", namespace="default")
    context = invoke_context(
        model="chat", estimated_tokens=900, now=datetime(2026, 1, 5, 10, tzinfo=UTC)
    )
    resource = ("Endpoint", "default/ep-0")
    expected = count > 1
    decision = engine.decide(principal, "invoke", resource, context)
    if decision.allowed != expected or decision.errors:
        raise SystemExit(f"unexpected decision with {count} policies: {decision}")

    snapshot = engine.snapshot
    schema = cedarpy.Schema.from_str(CEDAR_SCHEMA)
    entities_json = json.dumps([entity.to_json() for entity in [*endpoints, principal]])
    with_principal = snapshot.entities.with_added_json_str(json.dumps([principal.to_json()]))
    policy_text = "\n".join(obj["spec"]["cedar"] for obj in objects)
    request = {
        "principal": {"type": "ApiKey", "id": principal.id},
        "action": {"type": "Action", "id": "invoke"},
        "resource": {"type": resource[0], "id": resource[1]},
        "context": context,
    }
    policy_set = snapshot.compiled.policy_set
    reparsed = cedarpy.is_authorized(request, policy_text, entities_json, schema=schema)
    if reparsed.allowed != expected:
        raise SystemExit(f"re-parsed decision differs with {count} policies")

    now = datetime(2026, 1, 5, 10, tzinfo=UTC)
    estimates = itertools.count(1)

    def varying_estimate() -> object:
        estimated = invoke_context(model="chat", estimated_tokens=next(estimates), now=now)
        return engine.decide(principal, "invoke", resource, estimated)

    if not token_condition:
        engine.decide(principal, "invoke", resource, context)
        varying_us = measure(varying_estimate, calls, repeats)
        built_us = measure(
            lambda: invoke_context(model="chat", estimated_tokens=next(estimates), now=now),
            calls,
            repeats,
        )
        return [str(count), f"{varying_us:.1f}", f"{built_us:.1f}", str(len(snapshot.decisions))]

    cached_us = measure(
        lambda: engine.decide(principal, "invoke", resource, context), calls, repeats
    )
    miss_us = measure(varying_estimate, calls, repeats)
    engine_us = measure(
        lambda: engine.decide(principal, "invoke", resource, context, cached=False),
        calls,
        repeats,
    )
    reused_us = measure(
        lambda: cedarpy.is_authorized(request, policy_set, with_principal, schema=schema),
        calls,
        repeats,
    )
    # Re-parsing is slow enough that a tenth of the calls gives as steady a median.
    reparse_calls = max(calls // 10, 20)
    policies_us = measure(
        lambda: cedarpy.is_authorized(request, policy_text, with_principal, schema=schema),
        reparse_calls,
        repeats,
    )
    reparse_us = measure(
        lambda: cedarpy.is_authorized(request, policy_text, entities_json, schema=schema),
        reparse_calls,
        repeats,
    )
    return [
        str(count),
        f"{cached_us:.1f}",
        # One policy (the night freeze alone) does not read the estimate: those calls hit.
        f"{miss_us:.0f}" if "estimated_tokens" in (snapshot.decisions.reads or ()) else "(hits)",
        f"{engine_us:.0f}",
        f"{reused_us:.0f}",
        f"{policies_us:.0f}",
        f"{reparse_us:.0f}",
        f"{engine_us / cached_us:.0f}x",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls and repeats")
    args = parser.parse_args()
    calls, repeats = (200, 3) if args.quick else (2000, 5)
    table = Table(
        title=f"Cedar decisions, µs per call (median of {repeats}, {ENDPOINTS} endpoints)"
    )
    headers = (
        "policies",
        "engine, cached",
        "engine, miss",
        "engine, uncached",
        "cedar, reused",
        "re-parse policies",
        "re-parse all",
        "uncached / cached",
    )
    for header in headers:
        table.add_column(header, justify="right")
    for count in POLICY_COUNTS:
        table.add_row(*bench_row(count, calls, repeats))
    console = Console(width=150)
    console.print(table)
    unread = Table(
        title="estimated_tokens new every call, no policy reads it: µs per call (cache hits)"
    )
    for header in ("policies", "build context + decide", "build context alone", "entries"):
        unread.add_column(header, justify="right")
    for count in POLICY_COUNTS:
        unread.add_row(*bench_row(count, calls, repeats, token_condition=False))
    console.print(unread)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
