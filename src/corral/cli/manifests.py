"""Manifests on the CLI side: load ``-f`` sources and validate them before anything is sent.

``apply``, ``diff`` and ``up -f`` all go through :func:`load_validated`, so a bad manifest set
is refused locally with every problem and its location, and the server never sees half of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Object = dict[str, Any]


@dataclass(frozen=True)
class ManifestSet:
    objects: list[Object]
    locations: list[str]


def load_validated(sources: Sequence[str], *, namespace: str = "default") -> ManifestSet:
    """Every document of ``sources``, validated and defaulted; raise naming every problem."""
    from corral.api.errors import BadRequest, Invalid
    from corral.api.manifest import load_manifests
    from corral.api.validation import validate_documents

    documents = load_manifests(sources)
    if not documents:
        raise BadRequest(f"no objects found in {', '.join(sources)}")
    valid, problems = validate_documents(
        ((document.body, document.location) for document in documents),
        default_namespace=namespace,
    )
    objects = [obj for obj, _ in valid]
    locations = [location for _, location in valid]
    if problems:
        bad = len({problem.location for problem in problems})
        raise Invalid(
            f"nothing was sent to the server: {len(problems)} problem(s) in {bad} of "
            f"{len(documents)} object(s)",
            causes=problems,
        )
    return ManifestSet(objects, locations)


def outcome_line(outcome: dict[str, Any], *, dry_run: bool = False) -> str:
    """``endpoint/chat created``, with the namespace when it is not ``default``."""
    line = f"{str(outcome.get('kind', '')).lower()}/{outcome.get('name', '')} {outcome['action']}"
    namespace = outcome.get("namespace")
    if namespace and namespace != "default":
        line += f" (namespace {namespace})"
    if dry_run:
        line += " (dry run)"
    return line
