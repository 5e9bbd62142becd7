"""PATCH takes an RFC 7386 JSON merge patch, validates the result and writes it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from corral.apiserver.patch import merge_patch

from .helpers import model, models_path

MERGE = {"content-type": "application/merge-patch+json"}

# The examples of RFC 7386, appendix A.
RFC_EXAMPLES: list[tuple[Any, Any, Any]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "expected"), RFC_EXAMPLES)
def test_merge_patch_follows_rfc_7386(target: Any, patch: Any, expected: Any) -> None:
    assert merge_patch(target, patch) == expected


def test_merge_patch_leaves_its_arguments_alone() -> None:
    target = {"a": {"b": 1}}
    merge_patch(target, {"a": {"b": None}})
    assert target == {"a": {"b": 1}}


async def test_patch_changes_spec_and_labels(client: httpx.AsyncClient) -> None:
    await client.post(models_path(), json=model("m", labels={"drop": "me", "keep": "me"}))
    patch = {"metadata": {"labels": {"drop": None, "new": "yes"}}, "spec": {"contextLength": 512}}
    answer = await client.patch(models_path(name="m"), json=patch, headers=MERGE)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["metadata"]["labels"] == {"keep": "me", "new": "yes"}
    assert body["spec"]["contextLength"] == 512
    assert body["spec"]["source"] == "file:///models/m.gguf"
    assert body["metadata"]["generation"] == 2


async def test_patch_result_is_validated(client: httpx.AsyncClient) -> None:
    await client.post(models_path(), json=model("m"))
    answer = await client.patch(
        models_path(name="m"), json={"spec": {"contextLength": -1}}, headers=MERGE
    )
    assert answer.status_code == 422
    assert answer.json()["details"]["causes"][0]["field"] == "spec.contextLength"


async def test_patch_cannot_rename(client: httpx.AsyncClient) -> None:
    await client.post(models_path(), json=model("m"))
    answer = await client.patch(
        models_path(name="m"), json={"metadata": {"name": "other"}}, headers=MERGE
    )
    assert answer.status_code == 400


async def test_patch_needs_the_merge_patch_media_type(client: httpx.AsyncClient) -> None:
    await client.post(models_path(), json=model("m"))
    answer = await client.patch(
        models_path(name="m"),
        json=[{"op": "add", "path": "/spec/contextLength", "value": 1}],
        headers={"content-type": "application/json-patch+json"},
    )
    assert answer.status_code == 415
    assert "application/merge-patch+json" in answer.json()["message"]


async def test_patch_must_be_an_object(client: httpx.AsyncClient) -> None:
    await client.post(models_path(), json=model("m"))
    answer = await client.patch(models_path(name="m"), json=["x"], headers=MERGE)
    assert answer.status_code == 400
    assert "must be a JSON object" in answer.json()["message"]


async def test_patch_of_a_missing_object_is_not_found(client: httpx.AsyncClient) -> None:
    answer = await client.patch(models_path(name="none"), json={}, headers=MERGE)
    assert answer.status_code == 404
