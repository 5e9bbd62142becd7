"""Policy benchmark: µs per authorization decision, reused snapshot vs re-parsing per call.

    python benchmarks/policy_bench.py [--quick]

For 1, 10 and 100 Policy objects (each a team's permit with a label and token condition, plus
one forbid) over 50 Endpoints, prints medians over a few repeats of:

- ``engine``: ``PolicyEngine.decide`` on a reused snapshot (parsed PolicySet, Entities and
  schema handles; only the principal is parsed per call), the path the gateway takes;
- ``cedar, reused``: bare ``cedarpy.is_authorized`` with the same handles and the principal
  already in the entities (the floor the engine adds its bookkeeping to);
- ``re-parse policies``: ``is_authorized`` given the policy text each call (entities and schema
  handles reused);
- ``re-parse all``: the policy text and the entities JSON each call (schema handle reused),
  i.e. everything a snapshot saves.

DESIGN §3 measured 55–80 µs per decision reused and 180–350 µs re-parsing on this machine.
"""

from __future__ import annotations

import argparse
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


def policy_objects(count: int) -> list[dict[str, Any]]:
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
                    " && context.estimated_tokens <= 8000 };"
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


def bench_row(count: int, calls: int, repeats: int) -> list[str]:
    objects = policy_objects(count)
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

    engine_us = measure(
        lambda: engine.decide(principal, "invoke", resource, context), calls, repeats
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
        f"{engine_us:.0f}",
        f"{reused_us:.0f}",
        f"{policies_us:.0f}",
        f"{reparse_us:.0f}",
        f"{reparse_us / engine_us:.1f}x",
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
        "engine",
        "cedar, reused",
        "re-parse policies",
        "re-parse all",
        "re-parse all / engine",
    )
    for header in headers:
        table.add_column(header, justify="right")
    for count in POLICY_COUNTS:
        table.add_row(*bench_row(count, calls, repeats))
    Console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
