"""``Principal``: who is calling, as every later stage (policy, budgets, audit) sees it.

Both ways in produce one: an API key (``KeyIndex.authenticate``) gives a ``team-key``
principal; a platform JWT (``Verifier.verify``) gives a ``workload`` (a SPIFFE id subject) or a
``user`` (any other subject), with the RFC 8693 delegation chain in ``act``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

PrincipalKind = Literal["user", "team-key", "workload"]

_EMPTY_LABELS: Mapping[str, str] = MappingProxyType({})
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_NAME = rf"{_DNS_LABEL}(\.{_DNS_LABEL})*"
_SPIFFE_WORKLOAD = re.compile(
    rf"^spiffe://(?P<domain>{_DNS_NAME})/ns/(?P<ns>{_DNS_NAME})"
    rf"/(?P<type>[a-z]+)/(?P<name>{_DNS_NAME})$"
)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. ``act`` is the delegation chain, the acting party first."""

    kind: PrincipalKind
    id: str
    team: str | None = None
    namespace: str | None = None
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY_LABELS)
    act: tuple[str, ...] = ()


def workload_id(trust_domain: str, namespace: str, name: str, *, type: str = "agent") -> str:
    """The SPIFFE id ``spiffe://<trust-domain>/ns/<ns>/<type>/<name>`` of a workload."""
    candidate = f"spiffe://{trust_domain}/ns/{namespace}/{type}/{name}"
    if not _SPIFFE_WORKLOAD.match(candidate):
        raise ValueError(
            f"{candidate!r} is not a valid workload id: trust domain, namespace and name must be "
            "DNS-1123 names and the type lower-case letters"
        )
    return candidate


def workload_namespace(subject: str) -> str | None:
    """The namespace in a SPIFFE workload id, or None when ``subject`` is not one."""
    match = _SPIFFE_WORKLOAD.match(subject)
    return match.group("ns") if match else None
