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
    from corral.api.errors import BadRequest, FieldError, Invalid
    from corral.api.manifest import load_manifests
    from corral.api.objects import ObjectKey, object_key
    from corral.api.validation import validate_object

    documents = load_manifests(sources)
    if not documents:
        raise BadRequest(f"no objects found in {', '.join(sources)}")
    problems: list[FieldError] = []
    objects: list[Object] = []
    locations: list[str] = []
    first_seen: dict[ObjectKey, str] = {}
    for document in documents:
        try:
            obj = validate_object(
                document.body, location=document.location, default_namespace=namespace
            )
        except Invalid as error:
            problems.extend(error.causes or [FieldError("", error.message, document.location)])
            continue
        key = object_key(obj)
        if key in first_seen:
            problems.append(
                FieldError(
                    "metadata.name",
                    f"{key} is declared twice: at {first_seen[key]} and here",
                    document.location,
                )
            )
            continue
        first_seen[key] = document.location
        objects.append(obj)
        locations.append(document.location)
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
