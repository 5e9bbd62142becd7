"""A write based on a stale resourceVersion is refused with 409; merge patches retry instead."""

from __future__ import annotations

import asyncio

import httpx

from .helpers import model, models_path

MERGE = {"content-type": "application/merge-patch+json"}


async def test_put_with_a_stale_resource_version_conflicts(client: httpx.AsyncClient) -> None:
    first = (await client.post(models_path(), json=model("m"))).json()
    newer = dict(first, spec={**first["spec"], "contextLength": 10})
    assert (await client.put(models_path(name="m"), json=newer)).status_code == 200

    stale = dict(first, spec={**first["spec"], "contextLength": 20})
    answer = await client.put(models_path(name="m"), json=stale)
    assert answer.status_code == 409
    assert answer.json()["reason"] == "Conflict"
    assert (await client.get(models_path(name="m"))).json()["spec"]["contextLength"] == 10


async def test_put_without_a_resource_version_is_unconditional(client: httpx.AsyncClient) -> None:
    await client.post(models_path(), json=model("m"))
    await client.put(models_path(name="m"), json=model("m", labels={"v": "1"}))
    answer = await client.put(models_path(name="m"), json=model("m", labels={"v": "2"}))
    assert answer.status_code == 200
    assert answer.json()["metadata"]["labels"] == {"v": "2"}


async def test_delete_with_a_stale_resource_version_conflicts(client: httpx.AsyncClient) -> None:
    first = (await client.post(models_path(), json=model("m"))).json()
    await client.put(models_path(name="m"), json=model("m", labels={"v": "1"}))
    stale = first["metadata"]["resourceVersion"]
    by_query = await client.delete(models_path(name="m"), params={"resourceVersion": stale})
    assert by_query.status_code == 409
    by_options = await client.request(
        "DELETE",
        models_path(name="m"),
        json={"kind": "DeleteOptions", "preconditions": {"resourceVersion": stale}},
    )
    assert by_options.status_code == 409
    assert (await client.get(models_path(name="m"))).status_code == 200


async def test_merge_patch_pinned_to_a_stale_version_conflicts(client: httpx.AsyncClient) -> None:
    first = (await client.post(models_path(), json=model("m"))).json()
    await client.put(models_path(name="m"), json=model("m", labels={"v": "1"}))
    patch = {"metadata": {"resourceVersion": first["metadata"]["resourceVersion"]}}
    answer = await client.patch(models_path(name="m"), json=patch, headers=MERGE)
    assert answer.status_code == 409


async def test_concurrent_merge_patches_all_land(client: httpx.AsyncClient) -> None:
    await client.post(models_path(), json=model("busy"))

    async def label(index: int) -> httpx.Response:
        patch = {"metadata": {"labels": {f"writer-{index}": "yes"}}}
        return await client.patch(models_path(name="busy"), json=patch, headers=MERGE)

    answers = await asyncio.gather(*(label(index) for index in range(4)))
    assert [answer.status_code for answer in answers] == [200] * 4
    labels = (await client.get(models_path(name="busy"))).json()["metadata"]["labels"]
    assert labels == {f"writer-{index}": "yes" for index in range(4)}
