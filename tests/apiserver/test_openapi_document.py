"""/openapi/v3 is a valid OpenAPI 3.1 document generated from the kind registry, so a kind
registered later is described (and served) with no server change."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from pydantic import BaseModel, ConfigDict

from corral.api import registry
from corral.api.registry import KindInfo, all_kinds

from .helpers import API


class GadgetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: int = 1


@pytest.fixture
def gadget_kind(monkeypatch: pytest.MonkeyPatch) -> KindInfo:
    """A kind registered the way a plugin would, removed again after the test."""
    info = KindInfo(kind="Gadget", plural="gadgets", spec_model=GadgetSpec)
    monkeypatch.setitem(registry._KINDS, info.kind, info)
    for alias in (info.kind, info.plural, info.singular):
        monkeypatch.setitem(registry._ALIASES, alias.lower(), info)
    return info


async def fetch_document(client: httpx.AsyncClient) -> dict[str, Any]:
    answer = await client.get("/openapi/v3")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    document: dict[str, Any] = answer.json()
    return document


async def test_document_is_valid_openapi_3_1(client: httpx.AsyncClient) -> None:
    document = await fetch_document(client)
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


async def test_every_kind_has_its_paths_and_schema(client: httpx.AsyncClient) -> None:
    document = await fetch_document(client)
    paths, schemas = document["paths"], document["components"]["schemas"]
    for info in all_kinds():
        schema = schemas[f"dev.corral.v1alpha1.{info.kind}"]
        assert schema["properties"]["kind"]["const"] == info.kind
        if info.namespaced:
            base = f"{API}/namespaces/{{namespace}}/{info.plural}"
            assert set(paths[f"{API}/{info.plural}"]) == {"get"}
        else:
            base = f"{API}/{info.plural}"
        assert {"get", "post"} <= set(paths[base])
        assert {"get", "put", "patch", "delete"} <= set(paths[f"{base}/{{name}}"])
        assert {"get", "put", "patch"} <= set(paths[f"{base}/{{name}}/status"])
        assert "get" in paths[f"{base}/{{name}}/history"]
    assert "post" in paths[f"{API}/apply"]


async def test_spec_schemas_come_from_the_pydantic_models(client: httpx.AsyncClient) -> None:
    schemas = (await fetch_document(client))["components"]["schemas"]
    endpoint = schemas["dev.corral.v1alpha1.Endpoint"]
    assert endpoint["additionalProperties"] is False
    spec = endpoint["properties"]["spec"]
    assert spec["properties"]["replicas"]["maximum"] == 64
    model_ref = spec["properties"]["models"]["items"]["$ref"]
    assert model_ref == "#/components/schemas/ModelRef"
    assert schemas["ModelRef"]["properties"]["weight"]["maximum"] == 100


@pytest.mark.usefixtures("gadget_kind")
async def test_a_newly_registered_kind_is_described_and_served(client: httpx.AsyncClient) -> None:
    document = await fetch_document(client)
    validate(document)
    assert f"{API}/namespaces/{{namespace}}/gadgets/{{name}}" in document["paths"]
    created = await client.post(
        f"{API}/namespaces/default/gadgets",
        json={
            "apiVersion": "corral.dev/v1alpha1",
            "kind": "Gadget",
            "metadata": {"name": "g"},
            "spec": {"size": 3},
        },
    )
    assert created.status_code == 201, created.text
    assert created.json()["spec"] == {"size": 3}
