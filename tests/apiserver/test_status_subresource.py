"""Status is written only through /status, never bumps generation, and is validated."""

from __future__ import annotations

import httpx

from .helpers import model, models_path

MERGE = {"content-type": "application/merge-patch+json"}


async def test_status_write_keeps_generation_and_spec(client: httpx.AsyncClient) -> None:
    created = (await client.post(models_path(), json=model("m"))).json()
    status = {"observedGeneration": 1, "sizeBytes": 1234, "path": "/models/m.gguf"}
    answer = await client.put(models_path(name="m") + "/status", json={**created, "status": status})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"]["sizeBytes"] == 1234
    assert body["metadata"]["generation"] == 1
    assert body["spec"] == created["spec"]
    assert body["metadata"]["resourceVersion"] != created["metadata"]["resourceVersion"]


async def test_status_write_ignores_spec_changes(client: httpx.AsyncClient) -> None:
    created = (await client.post(models_path(), json=model("m"))).json()
    sneaky = {**created, "spec": {"source": "file:///other"}, "status": {"sizeBytes": 1}}
    answer = await client.put(models_path(name="m") + "/status", json=sneaky)
    assert answer.json()["spec"]["source"] == "file:///models/m.gguf"


async def test_main_resource_write_ignores_status(client: httpx.AsyncClient) -> None:
    created = (await client.post(models_path(), json=model("m"))).json()
    await client.put(
        models_path(name="m") + "/status", json={**created, "status": {"sizeBytes": 7}}
    )
    current = (await client.get(models_path(name="m"))).json()
    replaced = await client.put(
        models_path(name="m"), json={**current, "status": {"sizeBytes": 99}}
    )
    assert replaced.json()["status"]["sizeBytes"] == 7


async def test_stale_status_write_conflicts(client: httpx.AsyncClient) -> None:
    created = (await client.post(models_path(), json=model("m"))).json()
    await client.put(
        models_path(name="m") + "/status", json={**created, "status": {"sizeBytes": 1}}
    )
    answer = await client.put(
        models_path(name="m") + "/status", json={**created, "status": {"sizeBytes": 2}}
    )
    assert answer.status_code == 409


async def test_invalid_status_is_refused_with_its_field(client: httpx.AsyncClient) -> None:
    await client.post(models_path(), json=model("m"))
    bad = {"status": {"conditions": [{"type": "Ready"}]}}
    answer = await client.put(models_path(name="m") + "/status", json=bad)
    assert answer.status_code == 422
    fields = [cause["field"] for cause in answer.json()["details"]["causes"]]
    assert fields == ["status.conditions[0].status"]

    missing = await client.put(models_path(name="m") + "/status", json={"metadata": {"name": "m"}})
    assert missing.status_code == 422


async def test_status_merge_patch(client: httpx.AsyncClient) -> None:
    await client.post(models_path(), json=model("m"))
    answer = await client.patch(
        models_path(name="m") + "/status",
        json={"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
        headers=MERGE,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"]["conditions"][0]["type"] == "Ready"
    assert answer.json()["metadata"]["generation"] == 1
    read = await client.get(models_path(name="m") + "/status")
    assert read.json()["status"]["conditions"][0]["status"] == "True"
