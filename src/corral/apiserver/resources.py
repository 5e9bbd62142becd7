"""The resource verbs: get, list, create, replace, merge-patch, delete, status and history.

:func:`route_resource` picks the handler for a parsed path and HTTP method (watch lives in
``watch``); every handler checks that the body agrees with the path, validates through
``corral.api.validation`` and calls the store once (a PATCH re-reads and retries on Conflict).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from corral.api.errors import BadRequest, Conflict, FieldError, Invalid
from corral.api.objects import API_VERSION, Object
from corral.api.validation import pydantic_causes, validate_object
from corral.apiserver.namespaces import (
    NAMESPACE_KIND,
    refuse_nonempty_namespace,
    require_namespace,
)
from corral.apiserver.patch import merge_patch
from corral.apiserver.paths import ResourcePath
from corral.apiserver.watch import is_watch_request, watch_response
from corral.apiserver.wire import (
    MAX_OBJECT_BODY,
    MERGE_PATCH,
    MethodNotAllowed,
    UnsupportedMediaType,
    json_response,
    media_type_of,
    parse_json,
    read_body,
    read_json_body,
)
from corral.store.protocol import Store

PATCH_ATTEMPTS = 5
"""Read-patch-write rounds before a PATCH gives up on a busy object and returns the Conflict."""

Handler = Callable[[Store, Request, ResourcePath], Awaitable[Response]]


def route_resource(method: str, path: ResourcePath, request: Request) -> tuple[str, Handler]:
    """The metrics verb and the handler for ``method`` on ``path``; raise MethodNotAllowed."""
    if path.is_collection:
        if method == "GET":
            return ("watch", watch_response) if is_watch_request(request) else ("list", _list)
        if method == "POST" and path.namespace is not None:
            return "create", _create
        allowed = "GET, POST" if path.namespace is not None else "GET"
    elif path.subresource == "history":
        if method == "GET":
            return "history", _history
        allowed = "GET"
    elif path.subresource == "status":
        by_method: dict[str, tuple[str, Handler]] = {
            "GET": ("get", _get),
            "PUT": ("update_status", _replace_status),
            "PATCH": ("patch_status", _patch),
        }
        if method in by_method:
            return by_method[method]
        allowed = "GET, PUT, PATCH"
    else:
        by_method = {
            "GET": ("get", _get),
            "PUT": ("update", _replace),
            "PATCH": ("patch", _patch),
            "DELETE": ("delete", _delete),
        }
        if method in by_method:
            return by_method[method]
        allowed = "GET, PUT, PATCH, DELETE"
    raise MethodNotAllowed(method, allowed)


def actor_of(request: Request) -> str:
    return str(request.scope.get("corral.actor", ""))


async def _list(store: Store, request: Request, path: ResourcePath) -> Response:
    query = request.query_params
    result = await store.list(
        path.info.kind,
        path.namespace,
        label_selector=query.get("labelSelector") or None,
        limit=positive_int_param(request, "limit"),
        continue_token=query.get("continue") or None,
    )
    metadata: dict[str, str] = {"resourceVersion": str(result.resource_version)}
    if result.continue_token:
        metadata["continue"] = result.continue_token
    return json_response(
        {
            "apiVersion": API_VERSION,
            "kind": f"{path.info.kind}List",
            "metadata": metadata,
            "items": result.items,
        }
    )


async def _get(store: Store, _request: Request, path: ResourcePath) -> Response:
    return json_response(await store.get(path.info.kind, path.store_namespace, path.name))


async def _create(store: Store, request: Request, path: ResourcePath) -> Response:
    obj = validated_for_path(await read_json_body(request), path)
    if path.info.namespaced:
        await require_namespace(store, path.store_namespace)
    return json_response(await store.create(obj, actor=actor_of(request)), status_code=201)


async def _replace(store: Store, request: Request, path: ResourcePath) -> Response:
    obj = validated_for_path(await read_json_body(request), path)
    return json_response(await store.update(obj, actor=actor_of(request)))


async def _replace_status(store: Store, request: Request, path: ResourcePath) -> Response:
    obj = status_for_path(await read_json_body(request), path)
    return json_response(await store.update_status(obj))


async def _patch(store: Store, request: Request, path: ResourcePath) -> Response:
    if media_type_of(request) != MERGE_PATCH:
        raise UnsupportedMediaType(
            f"PATCH needs Content-Type {MERGE_PATCH} (RFC 7386); JSON Patch and strategic "
            "merge patch are not supported"
        )
    patch = parse_json(await read_body(request, MAX_OBJECT_BODY))
    if not isinstance(patch, dict):
        raise BadRequest(f"a merge patch must be a JSON object, got {type(patch).__name__}")
    patch_metadata = patch.get("metadata")
    # A resourceVersion in the patch is the caller's precondition: its Conflict is final.
    pinned = isinstance(patch_metadata, dict) and patch_metadata.get("resourceVersion") is not None
    for attempt in range(PATCH_ATTEMPTS):
        current = await store.get(path.info.kind, path.store_namespace, path.name)
        patched = merge_patch(current, patch)
        try:
            if path.subresource == "status":
                return json_response(await store.update_status(status_for_path(patched, path)))
            obj = validated_for_path(patched, path)
            return json_response(await store.update(obj, actor=actor_of(request)))
        except Conflict:
            if pinned or attempt == PATCH_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable: the last attempt returns or raises")


class _Preconditions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resourceVersion: str | None = None


class _DeleteOptions(BaseModel):
    """The parts of Kubernetes' DeleteOptions corral honours."""

    model_config = ConfigDict(extra="forbid")

    apiVersion: str | None = None
    kind: str | None = None
    preconditions: _Preconditions | None = None


async def _delete(store: Store, request: Request, path: ResourcePath) -> Response:
    body = await read_body(request, MAX_OBJECT_BODY)
    resource_version = request.query_params.get("resourceVersion") or None
    if body.strip():
        try:
            options = _DeleteOptions.model_validate(parse_json(body))
        except ValidationError as error:
            raise Invalid(
                "invalid DeleteOptions", causes=pydantic_causes(error, "", "request body")
            ) from None
        if options.preconditions is not None and options.preconditions.resourceVersion:
            resource_version = options.preconditions.resourceVersion
    if path.info.kind == NAMESPACE_KIND:
        await refuse_nonempty_namespace(store, path.name)
    deleted = await store.delete(
        path.info.kind,
        path.store_namespace,
        path.name,
        actor=actor_of(request),
        resource_version=resource_version,
    )
    return json_response(deleted)


async def _history(store: Store, _request: Request, path: ResourcePath) -> Response:
    entries = await store.history(path.info.kind, path.store_namespace, path.name)
    if not entries:
        # Never written at all: say so rather than answer an empty history.
        await store.get(path.info.kind, path.store_namespace, path.name)
    items = [
        {
            "generation": entry.generation,
            "resourceVersion": str(entry.resource_version),
            "action": entry.action,
            "actor": entry.actor,
            "timestamp": entry.timestamp,
            "spec": entry.spec,
            "labels": entry.labels,
            "diff": entry.diff,
        }
        for entry in entries
    ]
    return json_response({"apiVersion": API_VERSION, "kind": "HistoryList", "items": items})


def checked_against_path(doc: Any, path: ResourcePath) -> dict[str, Any]:
    """``doc`` with kind and apiVersion filled in; BadRequest when it names another object."""
    info = path.info
    if not isinstance(doc, dict):
        raise BadRequest(
            f"the body must be a JSON object (a {info.kind}), got {type(doc).__name__}"
        )
    checked: dict[str, Any] = dict(doc)
    checked.setdefault("apiVersion", API_VERSION)
    checked.setdefault("kind", info.kind)
    if checked["kind"] != info.kind:
        raise BadRequest(
            f"the body is a {doc['kind']!r} but {info.plural!r} in the path holds {info.kind}"
        )
    metadata = checked.get("metadata")
    if isinstance(metadata, dict):
        metadata = dict(metadata)
        checked["metadata"] = metadata
        namespace = metadata.get("namespace")
        if info.namespaced and namespace not in (None, "") and namespace != path.namespace:
            raise BadRequest(
                f"metadata.namespace {namespace!r} does not match the namespace in the path "
                f"({path.namespace!r})"
            )
        if path.name:
            name = metadata.setdefault("name", path.name)
            if name != path.name:
                raise BadRequest(
                    f"metadata.name {name!r} does not match the name in the path ({path.name!r})"
                )
    elif metadata is None and path.name:
        checked["metadata"] = {"name": path.name}
    return checked


def validated_for_path(doc: Any, path: ResourcePath) -> Object:
    return validate_object(
        checked_against_path(doc, path), default_namespace=path.namespace or "default"
    )


def status_for_path(doc: Any, path: ResourcePath) -> Object:
    """The status write for ``path``: validated status plus the keys the store needs."""
    doc = checked_against_path(doc, path)
    raw_status = doc.get("status")
    if not isinstance(raw_status, dict):
        raise Invalid(
            f"invalid {path.info.kind}/{path.name} status",
            causes=[FieldError("status", "required: a mapping")],
        )
    try:
        status = path.info.status_model.model_validate(raw_status)
    except ValidationError as error:
        raise Invalid(
            f"invalid {path.info.kind}/{path.name} status",
            causes=pydantic_causes(error, "status", ""),
        ) from None
    metadata: dict[str, Any] = {"name": path.name}
    if path.info.namespaced:
        metadata["namespace"] = path.namespace
    sent_metadata = doc.get("metadata")
    if isinstance(sent_metadata, dict) and sent_metadata.get("resourceVersion") is not None:
        metadata["resourceVersion"] = str(sent_metadata["resourceVersion"])
    return {
        "apiVersion": API_VERSION,
        "kind": path.info.kind,
        "metadata": metadata,
        "status": status.model_dump(mode="json", exclude_none=True),
    }


def positive_int_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise BadRequest(f"query parameter {name}={raw!r}: expected a positive integer")
    return int(raw)
