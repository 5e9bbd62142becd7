"""JSON Schema export for each kind: editors, the OpenAPI document and CRDs all start here.

``kind_json_schema`` describes the whole object as a user writes it (apiVersion, kind, metadata,
spec, status) in JSON Schema 2020-12, self-contained (its ``$defs`` travel with it).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from corral.api.objects import API_VERSION, ObjectMeta
from corral.api.registry import KindInfo


def _model_schema(model: type[BaseModel], defs: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/$defs/{model}")
    defs.update(schema.pop("$defs", {}))
    return schema


def kind_json_schema(info: KindInfo) -> dict[str, Any]:
    """The JSON Schema of one kind's objects; unknown fields are refused (additionalProperties)."""
    defs: dict[str, Any] = {}
    properties: dict[str, Any] = {
        "apiVersion": {"const": API_VERSION},
        "kind": {"const": info.kind},
        "metadata": _model_schema(ObjectMeta, defs),
        "status": _model_schema(info.status_model, defs),
    }
    if info.spec_model is not None:
        properties["spec"] = _model_schema(info.spec_model, defs)
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": info.kind,
        "description": info.description,
        "type": "object",
        "required": ["apiVersion", "kind", "metadata"],
        "additionalProperties": False,
        "properties": properties,
    }
    if defs:
        schema["$defs"] = defs
    return schema
