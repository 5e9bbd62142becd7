"""Resource paths: which kind, namespace, name and subresource a URL under the group names.

The API server routes everything under ``/apis/corral.dev/v1alpha1`` through
:func:`parse_resource_path`, so kinds come from the registry at request time and a newly
registered kind is served with no route change. The grammar is Kubernetes':

    /{plural}                                        list (any scope); create (cluster-scoped)
    /{plural}/{name}[/{sub}]                         one cluster-scoped object
    /namespaces/{ns}/{plural}                        list and create in a namespace
    /namespaces/{ns}/{plural}/{name}[/{sub}]         one namespaced object

``/namespaces/{name}/status`` is the Namespace's own status, as in Kubernetes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from corral.api.errors import NotFound
from corral.api.objects import API_VERSION
from corral.api.registry import KindInfo, kind_for_plural

API_PREFIX = f"/apis/{API_VERSION}"
SUBRESOURCES = ("status", "history")

Subresource = Literal["", "status", "history"]


@dataclass(frozen=True)
class ResourcePath:
    info: KindInfo
    namespace: str | None
    """The namespace in the path; None on a cluster-wide list of a namespaced kind."""
    name: str = ""
    subresource: Subresource = ""

    @property
    def is_collection(self) -> bool:
        return not self.name

    @property
    def store_namespace(self) -> str:
        """The namespace as the store keys it ("" for cluster-scoped kinds)."""
        return self.namespace or ""


def parse_resource_path(rest: str) -> ResourcePath:
    """Parse the part of the path after ``/apis/corral.dev/v1alpha1/``; raise NotFound."""
    segments = rest.split("/")
    if not segments or any(not segment for segment in segments):
        raise _no_route(rest)
    if segments[0] == "namespaces" and len(segments) >= 3 and segments[2] not in SUBRESOURCES:
        return _namespaced(rest, segments[1], segments[2:])
    info = _kind(rest, segments[0])
    if len(segments) == 1:
        return ResourcePath(info, None if info.namespaced else "")
    if info.namespaced:
        raise NotFound(
            f"{info.kind} is namespaced: use {API_PREFIX}/namespaces/{{namespace}}/{info.plural}"
            f"/{segments[1]}"
        )
    return _object(rest, info, "", segments[1:])


def _namespaced(rest: str, namespace: str, segments: list[str]) -> ResourcePath:
    info = _kind(rest, segments[0])
    if not info.namespaced:
        raise NotFound(f"{info.kind} is cluster-scoped: use {API_PREFIX}/{info.plural}")
    if len(segments) == 1:
        return ResourcePath(info, namespace)
    return _object(rest, info, namespace, segments[1:])


def _object(rest: str, info: KindInfo, namespace: str, segments: list[str]) -> ResourcePath:
    name = segments[0]
    if len(segments) == 1:
        return ResourcePath(info, namespace, name)
    if len(segments) == 2 and segments[1] == "status":
        return ResourcePath(info, namespace, name, "status")
    if len(segments) == 2 and segments[1] == "history":
        return ResourcePath(info, namespace, name, "history")
    raise _no_route(rest)


def _kind(rest: str, plural: str) -> KindInfo:
    info = kind_for_plural(plural)
    if info is None:
        raise NotFound(
            f"the server has no resource type {plural!r} (in {API_PREFIX}/{rest}); "
            f"see GET {API_PREFIX} for the list"
        )
    return info


def _no_route(rest: str) -> NotFound:
    return NotFound(f"no such path: {API_PREFIX}/{rest}")
