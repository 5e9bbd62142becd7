"""Shared builders for the policy tests: Policy objects, principals and resources."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from corral.policy import Entity, invoke_context, object_entity, principal_entity

MONDAY_10_UTC = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def policy(
    name: str, cedar: str, *, enabled: bool = True, namespace: str = "default"
) -> dict[str, Any]:
    return {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Policy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"cedar": cedar, "enabled": enabled},
    }


def team_key(team: str, *, labels: dict[str, str] | None = None) -> Entity:
    return principal_entity(
        "team-key", f"default/{team}-key", team=team, namespace="default", labels=labels or {}
    )


def endpoint(name: str = "chat", **labels: str) -> Entity:
    return object_entity(
        {"kind": "Endpoint", "metadata": {"name": name, "namespace": "default", "labels": labels}}
    )


def invoke(tokens: int = 100, now: datetime = MONDAY_10_UTC) -> dict[str, Any]:
    return invoke_context(model="chat", estimated_tokens=tokens, now=now)
