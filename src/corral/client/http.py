"""The HTTP client for the corral API: the only way the CLI (and scripts) reach a server.

Every call maps onto one REST request under ``/apis/corral.dev/v1alpha1``. A failed request
raises the typed error the server meant (rebuilt from its ``Status`` body by
:func:`corral.api.errors.error_from_status`), and a server that does not answer raises
:class:`ServerUnreachable` naming the URL, so callers never see transport exceptions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from corral.api.errors import ApiError, BadRequest, error_from_status
from corral.api.objects import API_VERSION, Object
from corral.api.registry import KindInfo, all_kinds, lookup_kind
from corral.client.errors import ServerUnreachable

API_PREFIX = f"/apis/{API_VERSION}"
LIST_PAGE_SIZE = 500
DEFAULT_TIMEOUT_S = 60.0

Records = list[dict[str, Any]]


@dataclass(frozen=True)
class ObjectList:
    items: list[Object]
    resource_version: int
    """The server's resourceVersion when the list was read: watch from here to follow it."""


def resolve_kind(kind: str) -> KindInfo:
    """The registered kind called ``kind`` (kind, plural, singular or short name)."""
    info = lookup_kind(kind)
    if info is None:
        known = ", ".join(info.plural for info in all_kinds())
        raise BadRequest(f"unknown kind {kind!r}; known kinds: {known}")
    return info


class CorralClient:
    """A synchronous client over one pooled HTTP connection; close it (or use ``with``)."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> CorralClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def ready(self) -> bool:
        """Whether ``/readyz`` answers 200 (False when the server is not reachable)."""
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def get(self, kind: str, name: str, *, namespace: str = "default") -> Object:
        return self._json("GET", _object_path(resolve_kind(kind), namespace, name))

    def list(
        self,
        kind: str,
        *,
        namespace: str | None = "default",
        label_selector: str | None = None,
    ) -> ObjectList:
        """Every object of ``kind`` in ``namespace`` (None: all namespaces), reading all pages."""
        path = _collection_path(resolve_kind(kind), namespace)
        params: dict[str, str] = {"limit": str(LIST_PAGE_SIZE)}
        if label_selector:
            params["labelSelector"] = label_selector
        items: list[Object] = []
        while True:
            page = self._json("GET", path, params=params)
            items.extend(page.get("items") or [])
            metadata = page.get("metadata") or {}
            if not metadata.get("continue"):
                return ObjectList(items, int(metadata.get("resourceVersion") or 0))
            params["continue"] = str(metadata["continue"])

    def create(self, obj: Object) -> Object:
        info, namespace, _ = _identity(obj)
        return self._json("POST", _collection_path(info, namespace), json_body=obj)

    def replace(self, obj: Object) -> Object:
        """PUT: optimistic when ``metadata.resourceVersion`` is set (Conflict when stale)."""
        info, namespace, name = _identity(obj)
        return self._json("PUT", _object_path(info, namespace, name), json_body=obj)

    def patch(
        self, kind: str, name: str, patch: dict[str, Any], *, namespace: str = "default"
    ) -> Object:
        """A JSON merge patch (RFC 7386)."""
        return self._json(
            "PATCH",
            _object_path(resolve_kind(kind), namespace, name),
            json_body=patch,
            content_type="application/merge-patch+json",
        )

    def delete(
        self,
        kind: str,
        name: str,
        *,
        namespace: str = "default",
        resource_version: str | None = None,
    ) -> Object:
        params = {"resourceVersion": resource_version} if resource_version else None
        path = _object_path(resolve_kind(kind), namespace, name)
        return self._json("DELETE", path, params=params)

    def apply(
        self,
        objects: Sequence[Object],
        *,
        locations: Sequence[str] | None = None,
        dry_run: bool = False,
        prune_selector: str | None = None,
        prune_kinds: Sequence[str] | None = None,
    ) -> Records:
        """Apply ``objects`` in one all-or-nothing request; one outcome per object (and prune).

        ``prune_kinds`` None lets the server prune every kind but Namespace. Each outcome is
        ``{kind, namespace, name, action, diff}`` with ``action`` one of
        created, configured, unchanged or pruned.
        """
        body: dict[str, Any] = {"items": list(objects), "dryRun": dry_run}
        if locations is not None:
            body["locations"] = list(locations)
        if prune_selector is not None:
            prune: dict[str, Any] = {"selector": prune_selector}
            if prune_kinds is not None:
                prune["kinds"] = list(prune_kinds)
            body["prune"] = prune
        answer = self._json("POST", f"{API_PREFIX}/apply", json_body=body)
        return list(answer.get("items") or [])

    def history(self, kind: str, name: str, *, namespace: str = "default") -> Records:
        """Every recorded generation of the object, oldest first."""
        path = _object_path(resolve_kind(kind), namespace, name) + "/history"
        return list(self._json("GET", path).get("items") or [])

    def endpoint_logs(
        self, name: str, *, namespace: str = "default", tail: int | None = None
    ) -> Records:
        """The recent log lines of each of an Endpoint's replicas.

        One record per replica: ``{"name", "model", "lines": [...]}``, at most ``tail`` lines
        each (None: the server's default). NotFound when the Endpoint does not exist.
        """
        params = {"tail": str(tail)} if tail is not None else None
        path = _object_path(resolve_kind("Endpoint"), namespace, name) + "/logs"
        return list(self._json("GET", path, params=params).get("replicas") or [])

    def watch(
        self,
        kind: str,
        *,
        namespace: str | None = "default",
        resource_version: int | None = None,
        label_selector: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Events ``{"type", "object"}`` after ``resource_version``, until the server ends them.

        Without ``resource_version`` the stream opens with an ADDED event per existing object.
        An ERROR event (e.g. Gone: the version is too old; relist) is raised as its error.
        Close the iterator (or break out of the loop) to end the stream.
        """
        params: dict[str, str] = {"watch": "1"}
        if resource_version is not None:
            params["resourceVersion"] = str(resource_version)
        if label_selector:
            params["labelSelector"] = label_selector
        path = _collection_path(resolve_kind(kind), namespace)
        timeout = httpx.Timeout(self._http.timeout.connect, read=None)
        try:
            with self._http.stream("GET", path, params=params, timeout=timeout) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error_of(response)
                for line in response.iter_lines():
                    if not line.strip():
                        continue
                    event = orjson.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        raise error_from_status(status, int(status.get("code") or 500))
                    yield event
        except httpx.HTTPError as error:
            raise self._transport_error(error) from None

    def _json(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        content = orjson.dumps(json_body) if json_body is not None else None
        headers = {"Content-Type": content_type} if content is not None else None
        try:
            response = self._http.request(
                method, path, params=params, content=content, headers=headers
            )
        except httpx.HTTPError as error:
            raise self._transport_error(error) from None
        if response.status_code >= 400:
            raise _error_of(response)
        body = orjson.loads(response.content) if response.content else {}
        if not isinstance(body, dict):
            raise ApiError(f"{method} {path}: expected a JSON object from the server")
        return body

    def _transport_error(self, error: httpx.HTTPError) -> ServerUnreachable:
        if isinstance(error, httpx.TimeoutException):
            return ServerUnreachable(f"corral at {self.url} did not answer in time ({error})")
        if isinstance(error, httpx.RemoteProtocolError):
            return ServerUnreachable(
                f"corral at {self.url} closed the connection (stopping?): {error}"
            )
        return ServerUnreachable(
            f"cannot reach corral at {self.url}: is `corral up` running? ({error})"
        )


def _error_of(response: httpx.Response) -> ApiError:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and body.get("kind") == "Status":
        return error_from_status(body, response.status_code)
    text = response.text.strip()[:200] or response.reason_phrase
    return ApiError(
        f"{response.request.method} {response.request.url.path}: HTTP "
        f"{response.status_code}: {text}"
    )


def _identity(obj: Object) -> tuple[KindInfo, str, str]:
    if not isinstance(obj, dict):
        raise BadRequest(f"expected an object (a mapping), got {type(obj).__name__}")
    metadata = obj.get("metadata") or {}
    info = resolve_kind(str(obj.get("kind", "")))
    namespace = str(metadata.get("namespace") or "default")
    return info, namespace, str(metadata.get("name", ""))


def _collection_path(info: KindInfo, namespace: str | None) -> str:
    if info.namespaced and namespace is not None:
        return f"{API_PREFIX}/namespaces/{_segment(namespace)}/{info.plural}"
    return f"{API_PREFIX}/{info.plural}"


def _object_path(info: KindInfo, namespace: str, name: str) -> str:
    if not name:
        raise BadRequest(f"a {info.kind} name is required")
    return f"{_collection_path(info, namespace)}/{_segment(name)}"


def _segment(value: str) -> str:
    return quote(value, safe="")
