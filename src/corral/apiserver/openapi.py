"""The OpenAPI 3.1 document served at ``/openapi/v3``.

Built from the kind registry and each kind's JSON Schema (``corral.api.schema``, the schema
editors and the CLI use too), so the published API cannot drift from what validation accepts.
Each kind's ``$defs`` move into ``components.schemas``; when two kinds define different models
under one name, the later kind's definitions are qualified with its kind name.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from corral.api.objects import API_VERSION
from corral.api.registry import KindInfo, all_kinds
from corral.api.schema import kind_json_schema
from corral.apiserver.openapi_paths import STATIC_SCHEMAS, kind_paths, shared_paths

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_COMPONENTS = "#/components/schemas/"


def openapi_document(kinds: Iterable[KindInfo] | None = None) -> dict[str, Any]:
    """The OpenAPI description of every resource path (all registered kinds by default)."""
    schemas: dict[str, Any] = dict(STATIC_SCHEMAS)
    paths: dict[str, Any] = dict(shared_paths())
    for info in all_kinds() if kinds is None else kinds:
        name = component_name(info)
        schemas[name] = _merge_kind_schema(info, schemas)
        schemas[f"{name}List"] = _list_schema(info, name)
        paths.update(kind_paths(info, name))
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": JSON_SCHEMA_DIALECT,
        "info": {
            "title": "corral API",
            "version": API_VERSION,
            "description": "corral's declarative resources, Kubernetes-style.",
        },
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }


def component_name(info: KindInfo) -> str:
    """Reverse-DNS, like Kubernetes' ``io.k8s.api.core.v1.Pod``; never clashes with a model."""
    group, _, version = info.api_version.partition("/")
    return ".".join([*reversed(group.split(".")), version, info.kind])


def _merge_kind_schema(info: KindInfo, schemas: dict[str, Any]) -> dict[str, Any]:
    """The kind's object schema with refs into ``schemas``, adding its definitions there."""
    schema = kind_json_schema(info)
    schema.pop("$schema", None)
    definitions: dict[str, Any] = schema.pop("$defs", {})
    names = {name: name for name in definitions}
    clashes = any(
        name in schemas and schemas[name] != _rewrite_refs(definition, names)
        for name, definition in definitions.items()
    )
    if clashes:
        names = {name: f"{info.kind}.{name}" for name in definitions}
    for name, definition in definitions.items():
        schemas[names[name]] = _rewrite_refs(definition, names)
    object_schema: dict[str, Any] = _rewrite_refs(schema, names)
    group, _, version = info.api_version.partition("/")
    object_schema["x-kubernetes-group-version-kind"] = [
        {"group": group, "version": version, "kind": info.kind}
    ]
    return object_schema


def _rewrite_refs(node: Any, names: dict[str, str]) -> Any:
    if isinstance(node, dict):
        rewritten = {key: _rewrite_refs(value, names) for key, value in node.items()}
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            rewritten["$ref"] = _COMPONENTS + names[ref.removeprefix("#/$defs/")]
        return rewritten
    if isinstance(node, list):
        return [_rewrite_refs(item, names) for item in node]
    return node


def _list_schema(info: KindInfo, name: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string", "const": info.api_version},
            "kind": {"type": "string", "const": f"{info.kind}List"},
            "metadata": {"$ref": f"{_COMPONENTS}ListMeta"},
            "items": {"type": "array", "items": {"$ref": f"{_COMPONENTS}{name}"}},
        },
        "required": ["apiVersion", "kind", "metadata", "items"],
    }
