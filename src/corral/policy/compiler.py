"""Policy objects → one Cedar PolicySet whose policy ids name the objects they came from.

Each statement gets the id ``<namespace>/<name>#<n>`` (n counts from 1 in the text), so the
policies Cedar reports as determining map straight back to Policy objects for audit and for
``corral policy test``. A stored Policy that no longer checks (it was written by an older
corral, or bypassed the write gate) fails closed: if it cannot be read or holds a ``forbid``,
it becomes one unconditional ``forbid`` named after it; a permit-only one is left out, since
leaving out a permit can only deny.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import cedarpy
from pydantic import ValidationError

from corral.api.kinds.policy import PolicySpec, cedar_problems

_FORBID_ALL = "forbid(principal, action, resource);"


@dataclass(frozen=True)
class PolicyRef:
    """One statement of one Policy object: what a decision names as its reason."""

    namespace: str
    name: str
    statement: int
    effect: Literal["permit", "forbid"]
    annotation: str | None = None
    """The statement's ``@id("…")`` annotation, if it has one."""

    @property
    def policy_name(self) -> str:
        """The Policy object, ``namespace/name``."""
        return f"{self.namespace}/{self.name}"

    @property
    def cedar_id(self) -> str:
        return f"{self.policy_name}#{self.statement}"

    def __str__(self) -> str:
        label = f" @id({self.annotation!r})" if self.annotation is not None else ""
        return f"{self.cedar_id} ({self.effect}{label})"


@dataclass(frozen=True)
class CompiledPolicies:
    policy_set: cedarpy.PolicySet
    refs: Mapping[str, PolicyRef]
    """Cedar policy id → the statement it came from."""
    problems: Mapping[str, tuple[str, ...]]
    """``namespace/name`` → why that Policy did not compile (it fails closed, see above)."""


def compile_policies(objects: Iterable[Mapping[str, Any]]) -> CompiledPolicies:
    """Compile enabled Policy objects (stored JSON) into one PolicySet; never raises on content.

    Raises ``ValueError`` only for input that is not a list of distinct Policy objects.
    """
    statements: dict[str, Any] = {}
    refs: dict[str, PolicyRef] = {}
    problems: dict[str, tuple[str, ...]] = {}
    seen: set[tuple[str, str]] = set()
    for obj in objects:
        namespace, name = _identity(obj)
        if (namespace, name) in seen:
            raise ValueError(f"Policy {namespace}/{name} appears twice")
        seen.add((namespace, name))
        try:
            spec = PolicySpec.model_validate(obj.get("spec") or {})
        except ValidationError as error:
            problems[f"{namespace}/{name}"] = (f"spec: {error}",)
            _fail_closed(namespace, name, None, statements, refs)
            continue
        if not spec.enabled:
            continue
        found = cedar_problems(spec.cedar)
        if found:
            problems[f"{namespace}/{name}"] = tuple(found)
            _fail_closed(namespace, name, spec.cedar, statements, refs)
            continue
        for number, est in enumerate(_statements(spec.cedar), start=1):
            ref = PolicyRef(namespace, name, number, est["effect"], _annotation(est))
            statements[ref.cedar_id] = est
            refs[ref.cedar_id] = ref
    policy_set = cedarpy.PolicySet.from_json_str(
        json.dumps({"staticPolicies": statements, "templates": {}, "templateLinks": []})
    )
    return CompiledPolicies(policy_set, refs, problems)


def _identity(obj: Mapping[str, Any]) -> tuple[str, str]:
    if obj.get("kind") != "Policy":
        raise ValueError(f"expected a Policy object, got kind {obj.get('kind')!r}")
    meta = obj.get("metadata") or {}
    name, namespace = meta.get("name"), meta.get("namespace") or "default"
    if not isinstance(name, str) or not name:
        raise ValueError("a Policy object needs metadata.name")
    return str(namespace), name


def _statements(text: str) -> list[dict[str, Any]]:
    parsed: dict[str, Any] = json.loads(cedarpy.policies_to_json_str(text))
    by_id: dict[str, dict[str, Any]] = parsed["staticPolicies"]
    # Cedar numbers statements policy0, policy1 … in text order; order by that number.
    return [by_id[key] for key in sorted(by_id, key=lambda key: int(key.removeprefix("policy")))]


def _annotation(est: Mapping[str, Any]) -> str | None:
    value = (est.get("annotations") or {}).get("id")
    return None if value is None else str(value)


def _fail_closed(
    namespace: str,
    name: str,
    text: str | None,
    statements: dict[str, Any],
    refs: dict[str, PolicyRef],
) -> None:
    try:
        effects = {est["effect"] for est in _statements(text)} if text is not None else None
    except ValueError:
        effects = None
    if effects is not None and "forbid" not in effects:
        return
    ref = PolicyRef(namespace, name, 1, "forbid", "unusable policy: denies everything")
    statements[ref.cedar_id] = _statements(_FORBID_ALL)[0]
    refs[ref.cedar_id] = ref
