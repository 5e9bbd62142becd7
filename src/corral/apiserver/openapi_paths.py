"""The path items of the OpenAPI document: the routes of ``paths`` and ``apply`` described.

Kept apart from the schema generation in ``openapi`` so each stays readable; both are pure
functions of the kind registry.
"""

from __future__ import annotations

from typing import Any

from corral.api.registry import KindInfo
from corral.apiserver.paths import API_PREFIX
from corral.apiserver.watch import WATCH_MEDIA_TYPE
from corral.apiserver.wire import JSON, MERGE_PATCH

_STATUS_REF = {"$ref": "#/components/schemas/Status"}

STATIC_SCHEMAS: dict[str, Any] = {
    "Status": {
        "type": "object",
        "description": "Every error answer (Kubernetes Status).",
        "properties": {
            "kind": {"const": "Status"},
            "apiVersion": {"type": "string"},
            "status": {"type": "string"},
            "reason": {"type": "string"},
            "code": {"type": "integer"},
            "message": {"type": "string"},
            "details": {
                "type": "object",
                "properties": {
                    "causes": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "field": {"type": "string"},
                                "message": {"type": "string"},
                                "location": {"type": "string"},
                            },
                        },
                    }
                },
            },
        },
        "required": ["kind", "reason", "code", "message"],
    },
    "ListMeta": {
        "type": "object",
        "properties": {"resourceVersion": {"type": "string"}, "continue": {"type": "string"}},
        "required": ["resourceVersion"],
    },
    "WatchEvent": {
        "type": "object",
        "description": "One line of a watch stream; ERROR carries a Status (410: relist).",
        "properties": {
            "type": {"enum": ["ADDED", "MODIFIED", "DELETED", "ERROR"]},
            "object": {"type": "object"},
        },
        "required": ["type", "object"],
    },
    "HistoryList": {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"const": "HistoryList"},
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "generation": {"type": "integer"},
                        "resourceVersion": {"type": "string"},
                        "action": {"enum": ["created", "updated", "deleted"]},
                        "actor": {"type": "string"},
                        "timestamp": {"type": "string"},
                        "spec": {},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "diff": {"type": "array", "items": {"type": "object"}},
                    },
                },
            },
        },
    },
    "ApplyRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "items": {"type": "array", "items": {"type": "object"}},
            "locations": {"type": "array", "items": {"type": "string"}},
            "dryRun": {"type": "boolean", "default": False},
            "prune": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "selector": {"type": "string"},
                    "kinds": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["selector"],
            },
        },
        "required": ["items"],
    },
    "ApplyResponse": {
        "type": "object",
        "properties": {
            "dryRun": {"type": "boolean"},
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "kind": {"type": "string"},
                        "namespace": {"type": "string"},
                        "name": {"type": "string"},
                        "action": {"enum": ["created", "configured", "unchanged", "pruned"]},
                        "diff": {"type": "array", "items": {"type": "object"}},
                    },
                },
            },
        },
    },
}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


_LIST_PARAMETERS = [
    _query(
        "labelSelector",
        "Kubernetes label selector, e.g. 'team=search,tier!=dev'",
        {"type": "string"},
    ),
    _query("limit", "Page size", {"type": "integer", "minimum": 1}),
    _query("continue", "Token from the previous page's metadata.continue", {"type": "string"}),
    _query("watch", "Stream changes as JSON lines (1 or true)", {"type": "string"}),
    _query("resourceVersion", "Watch: replay changes after this version", {"type": "string"}),
    _query("timeoutSeconds", "Watch: end the stream after this long", {"type": "integer"}),
]


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {JSON: {"schema": schema}}


def _op(
    operation_id: str,
    summary: str,
    ok: dict[str, Any],
    *,
    code: str = "200",
    body: dict[str, Any] | None = None,
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "responses": {
            code: {"description": "OK", "content": ok},
            "default": {"description": "Failure", "content": _json(_STATUS_REF)},
        },
    }
    if body is not None:
        operation["requestBody"] = {"required": True, "content": body}
    if parameters:
        operation["parameters"] = parameters
    return operation


def kind_paths(info: KindInfo, component: str) -> dict[str, Any]:
    kind = info.kind
    one = {"$ref": f"#/components/schemas/{component}"}
    many = {"$ref": f"#/components/schemas/{component}List"}
    listing = {
        JSON: {"schema": many},
        WATCH_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/WatchEvent"}},
    }
    merge = {MERGE_PATCH: {"schema": {"type": "object"}}}
    base = f"{API_PREFIX}/{info.plural}"
    object_path = f"{base}/{{name}}"
    params = [_path_param("name")]
    paths: dict[str, Any] = {}
    if info.namespaced:
        paths[base] = {
            "get": _op(
                f"list{kind}ForAllNamespaces",
                f"List or watch {kind} in every namespace",
                listing,
                parameters=_LIST_PARAMETERS,
            )
        }
        base = f"{API_PREFIX}/namespaces/{{namespace}}/{info.plural}"
        object_path = f"{base}/{{name}}"
        params = [_path_param("namespace"), _path_param("name")]
        kind = f"Namespaced{kind}"
    paths[base] = {
        "get": _op(
            f"list{kind}", f"List or watch {info.kind}", listing, parameters=_LIST_PARAMETERS
        ),
        "post": _op(
            f"create{kind}", f"Create a {info.kind}", _json(one), code="201", body=_json(one)
        ),
    }
    if info.namespaced:
        paths[base]["parameters"] = [_path_param("namespace")]
    paths[object_path] = {
        "parameters": params,
        "get": _op(f"read{kind}", f"Read a {info.kind}", _json(one)),
        "put": _op(
            f"replace{kind}",
            f"Replace a {info.kind} (optimistic with metadata.resourceVersion)",
            _json(one),
            body=_json(one),
        ),
        "patch": _op(
            f"patch{kind}", f"Merge-patch a {info.kind} (RFC 7386)", _json(one), body=merge
        ),
        "delete": _op(f"delete{kind}", f"Delete a {info.kind}", _json(one)),
    }
    paths[f"{object_path}/status"] = {
        "parameters": params,
        "get": _op(f"read{kind}Status", f"Read a {info.kind} with its status", _json(one)),
        "put": _op(
            f"replace{kind}Status",
            f"Replace the status of a {info.kind}",
            _json(one),
            body=_json(one),
        ),
        "patch": _op(
            f"patch{kind}Status", f"Merge-patch the status of a {info.kind}", _json(one), body=merge
        ),
    }
    paths[f"{object_path}/history"] = {
        "parameters": params,
        "get": _op(
            f"read{kind}History",
            f"Every recorded spec change of a {info.kind}",
            _json({"$ref": "#/components/schemas/HistoryList"}),
        ),
    }
    return paths


def shared_paths() -> dict[str, Any]:
    return {
        f"{API_PREFIX}/apply": {
            "post": _op(
                "apply",
                "Validate and apply a set of objects in one transaction (all or nothing)",
                _json({"$ref": "#/components/schemas/ApplyResponse"}),
                body=_json({"$ref": "#/components/schemas/ApplyRequest"}),
            )
        }
    }
