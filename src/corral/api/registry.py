"""The kind registry: every resource kind, its plural, scope and schema.

Kinds register themselves when ``corral.api.kinds`` is imported (built-ins use the same
``register_kind`` hook a plugin would). Lookups accept the kind, its plural, singular or a
short name, case-insensitively, the way ``kubectl get`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from corral.api.objects import API_VERSION, ResourceStatus


@dataclass(frozen=True)
class KindInfo:
    kind: str
    plural: str
    spec_model: type[BaseModel] | None
    status_model: type[BaseModel] = ResourceStatus
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    description: str = ""
    # Columns for `corral get -o wide`: (header, dotted path into the object).
    printer_columns: tuple[tuple[str, str], ...] = field(default=())
    api_version: str = API_VERSION
    record_history: bool = True
    """Keep every spec change in the history. Off for heartbeat-like kinds (Lease renewals)."""
    check_spec: Callable[[Any], list[tuple[str, str]]] | None = None
    """Checks beyond the schema, run once at the write gate on the typed spec (never when a
    stored spec is parsed again): ``(field path from the object root, message)`` per problem.
    For checks that need a heavy engine, e.g. Cedar validation of a Policy."""

    @property
    def singular(self) -> str:
        return self.kind.lower()

    def parse_spec(self, obj: dict[str, Any]) -> Any:
        """The typed spec of a stored object (already validated on the way in)."""
        if self.spec_model is None:
            return None
        return self.spec_model.model_validate(obj.get("spec") or {})


_KINDS: dict[str, KindInfo] = {}
_ALIASES: dict[str, KindInfo] = {}


def register_kind(info: KindInfo) -> KindInfo:
    """Add a kind; its kind name, plural, singular and short names become lookup aliases."""
    if info.kind in _KINDS and _KINDS[info.kind] is not info:
        raise ValueError(f"kind {info.kind} is already registered")
    _KINDS[info.kind] = info
    for alias in (info.kind, info.plural, info.singular, *info.short_names):
        _ALIASES[alias.lower()] = info
    return info


def lookup_kind(name: str) -> KindInfo | None:
    """The kind called ``name`` (kind, plural, singular or short name, any case), if any."""
    _ensure_builtin_kinds()
    return _ALIASES.get(name.lower())


def kind_for_plural(plural: str) -> KindInfo | None:
    _ensure_builtin_kinds()
    info = _ALIASES.get(plural.lower())
    return info if info is not None and info.plural == plural.lower() else None


def all_kinds() -> list[KindInfo]:
    _ensure_builtin_kinds()
    return sorted(_KINDS.values(), key=lambda k: k.kind)


def _ensure_builtin_kinds() -> None:
    # Imported lazily so that importing the registry alone does not pull every schema in,
    # yet any lookup sees the built-in kinds.
    import corral.api.kinds  # noqa: F401
