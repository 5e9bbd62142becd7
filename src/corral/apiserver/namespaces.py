"""Namespace rules the store does not know: objects live in namespaces that exist, and a
namespace is deleted only once it is empty.

The create and apply handlers call :func:`require_namespace` / :func:`missing_namespaces`
before writing; the delete handler calls :func:`refuse_nonempty_namespace`.
"""

from __future__ import annotations

from collections.abc import Iterable

from corral.api.errors import AlreadyExists, Conflict, Forbidden, NotFound
from corral.api.objects import API_VERSION
from corral.api.registry import all_kinds
from corral.store.protocol import Store

BUILTIN_NAMESPACES = ("default", "corral-system")
NAMESPACE_KIND = "Namespace"
SYSTEM_ACTOR = "system:apiserver"


async def ensure_builtin_namespaces(store: Store) -> None:
    """Create the ``default`` and ``corral-system`` Namespaces when absent (idempotent)."""
    for name in BUILTIN_NAMESPACES:
        try:
            await store.create(
                {"apiVersion": API_VERSION, "kind": NAMESPACE_KIND, "metadata": {"name": name}},
                actor=SYSTEM_ACTOR,
            )
        except AlreadyExists:
            continue


async def namespace_exists(store: Store, name: str) -> bool:
    try:
        await store.get(NAMESPACE_KIND, "", name)
    except NotFound:
        return False
    return True


async def require_namespace(store: Store, name: str) -> None:
    if not await namespace_exists(store, name):
        raise NotFound(f"namespace {name!r} not found: create it first (kind: Namespace)")


async def missing_namespaces(store: Store, names: Iterable[str]) -> set[str]:
    return {name for name in set(names) if not await namespace_exists(store, name)}


async def refuse_nonempty_namespace(store: Store, name: str) -> None:
    """Raise unless the Namespace ``name`` may be deleted now."""
    if name in BUILTIN_NAMESPACES:
        raise Forbidden(f"namespace {name!r} is built in and may not be deleted")
    held: list[str] = []
    for info in all_kinds():
        if not info.namespaced:
            continue
        page = await store.list(info.kind, name, limit=1)
        if page.items:
            held.append(f"{info.kind}/{page.items[0]['metadata']['name']}")
    if held:
        raise Conflict(
            f"namespace {name!r} is not empty (it holds, among others, {', '.join(held)}); "
            "delete every object in it first"
        )
