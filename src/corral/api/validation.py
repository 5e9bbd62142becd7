"""Validation and defaulting of incoming objects.

``validate_object`` is the one gate every write passes (API server and CLI alike): it checks the
envelope (apiVersion, kind, metadata, names, labels, scope) and the spec against the kind's
schema, and returns the object in canonical form with defaults filled in. Every problem is
reported with its field path, and with the manifest location when one is given.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from corral.api.errors import FieldError, Invalid
from corral.api.objects import (
    API_VERSION,
    MAX_OBJECT_BYTES,
    Object,
    ObjectKey,
    ObjectMeta,
    label_key_problem,
    label_value_problem,
    name_problem,
    object_key,
)
from corral.api.registry import KindInfo, lookup_kind

_ENVELOPE_KEYS = {"apiVersion", "kind", "metadata", "spec", "status"}


def field_path(loc: tuple[int | str, ...], prefix: str = "") -> str:
    """``("models", 0, "weight")`` with prefix ``spec`` → ``spec.models[0].weight``."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path


def pydantic_causes(error: ValidationError, prefix: str, location: str) -> list[FieldError]:
    causes = []
    for item in error.errors(include_url=False):
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        causes.append(FieldError(field_path(tuple(item["loc"]), prefix), message, location))
    return causes


def validate_object(
    doc: Any, *, location: str = "", default_namespace: str = "default"
) -> dict[str, Any]:
    """Check ``doc`` and return it canonicalised; raise :class:`Invalid` naming every problem.

    Status is dropped: it belongs to controllers and is written through the status subresource.
    """
    problems: list[FieldError] = []

    def fail(path: str, message: str) -> Invalid:
        problems.append(FieldError(path, message, location))
        return Invalid(_summary(doc, location), causes=problems)

    if not isinstance(doc, dict):
        raise fail("", f"expected a mapping (an object), got {type(doc).__name__}")
    for key in doc:
        if key not in _ENVELOPE_KEYS:
            problems.append(FieldError(str(key), "unknown field", location))
    api_version = doc.get("apiVersion")
    kind_name = doc.get("kind")
    if api_version != API_VERSION:
        problems.append(
            FieldError("apiVersion", f"must be {API_VERSION!r} (got {api_version!r})", location)
        )
    info = lookup_kind(kind_name) if isinstance(kind_name, str) else None
    if info is None or info.kind != kind_name:
        raise fail("kind", f"unknown kind {kind_name!r}")

    raw_meta = doc.get("metadata")
    if not isinstance(raw_meta, dict):
        raise fail("metadata", "required: a mapping with at least a name")
    try:
        meta = ObjectMeta.model_validate(raw_meta)
    except ValidationError as error:
        problems.extend(pydantic_causes(error, "metadata", location))
        raise Invalid(_summary(doc, location), causes=problems) from None
    _check_meta(meta, info, problems, location, default_namespace)

    spec = _validate_spec(info, doc.get("spec"), problems, location)
    if problems:
        raise Invalid(_summary(doc, location), causes=problems)

    obj: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": info.kind,
        "metadata": meta.model_dump(exclude_none=True, exclude_defaults=False),
    }
    if spec is not None:
        obj["spec"] = spec
    size = len(orjson.dumps(obj))
    if size > MAX_OBJECT_BYTES:
        raise Invalid(
            _summary(doc, location),
            causes=[
                FieldError("", f"object is {size} bytes; the limit is {MAX_OBJECT_BYTES}", location)
            ],
        )
    return obj


def validate_documents(
    documents: Iterable[tuple[Any, str]], *, default_namespace: str = "default"
) -> tuple[list[tuple[Object, str]], list[FieldError]]:
    """Validate a batch of ``(document, location)`` pairs the way one apply must see them.

    Returns the valid objects with their locations and every problem of every document,
    including an object (kind, namespace, name) declared twice, which names both places.
    Callers add their own checks and decide how to summarise; nothing is raised here.
    """
    problems: list[FieldError] = []
    valid: list[tuple[Object, str]] = []
    first_seen: dict[ObjectKey, str] = {}
    for document, location in documents:
        try:
            obj = validate_object(document, location=location, default_namespace=default_namespace)
        except Invalid as error:
            problems.extend(error.causes or [FieldError("", error.message, location)])
            continue
        key = object_key(obj)
        if key in first_seen:
            problems.append(
                FieldError(
                    "metadata.name",
                    f"{key} is declared twice: at {first_seen[key]} and here",
                    location,
                )
            )
            continue
        first_seen[key] = location
        valid.append((obj, location))
    return valid, problems


def _check_meta(
    meta: ObjectMeta,
    info: KindInfo,
    problems: list[FieldError],
    location: str,
    default_namespace: str,
) -> None:
    if (problem := name_problem(meta.name)) is not None:
        problems.append(FieldError("metadata.name", problem, location))
    if info.namespaced:
        meta.namespace = meta.namespace or default_namespace
        if (problem := name_problem(meta.namespace, max_length=63)) is not None:
            problems.append(FieldError("metadata.namespace", problem, location))
    elif meta.namespace:
        problems.append(
            FieldError(
                "metadata.namespace", f"{info.kind} is cluster-scoped: no namespace", location
            )
        )
    for key, value in meta.labels.items():
        for problem in (label_key_problem(key), label_value_problem(value)):
            if problem is not None:
                problems.append(FieldError(f"metadata.labels.{key}", problem, location))


def _validate_spec(
    info: KindInfo, raw_spec: Any, problems: list[FieldError], location: str
) -> dict[str, Any] | None:
    if info.spec_model is None:
        if raw_spec not in (None, {}):
            problems.append(FieldError("spec", f"{info.kind} has no spec", location))
        return None
    try:
        spec: BaseModel = info.spec_model.model_validate(raw_spec if raw_spec is not None else {})
    except ValidationError as error:
        problems.extend(pydantic_causes(error, "spec", location))
        return None
    if info.check_spec is not None:
        checked = info.check_spec(spec)
        problems.extend(FieldError(path, message, location) for path, message in checked)
        if checked:
            return None
    dumped: dict[str, Any] = spec.model_dump(mode="json", exclude_none=True)
    return dumped


def _summary(doc: Any, location: str) -> str:
    what = ""
    if isinstance(doc, dict):
        kind = doc.get("kind") or "?"
        meta = doc.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        what = f"{kind}/{name}" if name else str(kind)
    where = f"{location}: " if location else ""
    return f"{where}invalid {what}".rstrip()
