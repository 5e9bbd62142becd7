"""?watch=1 streams JSON lines in order, resumes from a resourceVersion, reports Gone, and ends
cleanly when the client goes away (through a real uvicorn server: the in-process transport
buffers whole responses)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from corral.apiserver import create_app, ensure_builtin_namespaces
from corral.store import open_store

from .helpers import API, TOKEN, model, models_path, running_uvicorn

MERGE = {"content-type": "application/merge-patch+json"}


@asynccontextmanager
async def watching(
    http: httpx.AsyncClient, path: str, **params: str
) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
    async with http.stream("GET", path, params={"watch": "1", **params}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json;stream=watch")

        async def events() -> AsyncIterator[dict[str, Any]]:
            async for line in response.aiter_lines():
                if line:
                    yield orjson.loads(line)

        yield events()


async def next_event(events: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    return await asyncio.wait_for(anext(events), timeout=10)


async def open_watches(http: httpx.AsyncClient) -> float:
    text = (await http.get("/metrics")).text
    line = next(
        row for row in text.splitlines() if row.startswith("corral_apiserver_watch_streams ")
    )
    return float(line.split()[1])


async def test_watch_sees_create_update_delete_in_order(live_client: httpx.AsyncClient) -> None:
    start = (await live_client.get(models_path())).json()["metadata"]["resourceVersion"]
    async with watching(live_client, models_path(), resourceVersion=start) as events:
        await live_client.post(models_path(), json=model("w"))
        await live_client.patch(
            models_path(name="w"), json={"spec": {"contextLength": 2}}, headers=MERGE
        )
        await live_client.delete(models_path(name="w"))
        seen = [await next_event(events) for _ in range(3)]
    assert [event["type"] for event in seen] == ["ADDED", "MODIFIED", "DELETED"]
    assert {event["object"]["metadata"]["name"] for event in seen} == {"w"}
    versions = [int(event["object"]["metadata"]["resourceVersion"]) for event in seen]
    assert versions == sorted(versions)
    assert seen[1]["object"]["spec"]["contextLength"] == 2


async def test_watch_resumes_after_a_resource_version(live_client: httpx.AsyncClient) -> None:
    first = (await live_client.post(models_path(), json=model("a"))).json()
    await live_client.post(models_path(), json=model("b"))
    await live_client.post(models_path(), json=model("c"))
    after = first["metadata"]["resourceVersion"]
    async with watching(live_client, models_path(), resourceVersion=after) as events:
        replayed = [await next_event(events) for _ in range(2)]
    assert [event["object"]["metadata"]["name"] for event in replayed] == ["b", "c"]
    assert {event["type"] for event in replayed} == {"ADDED"}


async def test_watch_without_a_version_starts_with_the_current_objects(
    live_client: httpx.AsyncClient,
) -> None:
    await live_client.post(models_path(), json=model("existing"))
    async with watching(live_client, f"{API}/models") as events:
        initial = await next_event(events)
        await live_client.post(models_path(), json=model("later"))
        live = await next_event(events)
    assert (initial["type"], initial["object"]["metadata"]["name"]) == ("ADDED", "existing")
    assert (live["type"], live["object"]["metadata"]["name"]) == ("ADDED", "later")


async def test_watch_filters_by_label_selector(live_client: httpx.AsyncClient) -> None:
    start = (await live_client.get(models_path())).json()["metadata"]["resourceVersion"]
    params = {"resourceVersion": start, "labelSelector": "team=search"}
    async with watching(live_client, models_path(), **params) as events:
        await live_client.post(models_path(), json=model("other", labels={"team": "ads"}))
        await live_client.post(models_path(), json=model("mine", labels={"team": "search"}))
        event = await next_event(events)
    assert event["object"]["metadata"]["name"] == "mine"


async def test_disconnect_ends_the_stream(live_client: httpx.AsyncClient) -> None:
    async with watching(live_client, models_path()) as events:
        await live_client.post(models_path(), json=model("x"))
        await next_event(events)
        assert await open_watches(live_client) == 1
    for _ in range(500):
        if await open_watches(live_client) == 0:
            break
        await asyncio.sleep(0.01)
    assert await open_watches(live_client) == 0


async def test_timeout_seconds_ends_the_stream(client: httpx.AsyncClient) -> None:
    await client.post(models_path(), json=model("x"))
    answer = await client.get(models_path(), params={"watch": "true", "timeoutSeconds": "1"})
    lines = [orjson.loads(line) for line in answer.content.splitlines()]
    assert [(line["type"], line["object"]["metadata"]["name"]) for line in lines] == [
        ("ADDED", "x")
    ]


async def test_bad_watch_parameters_are_refused_before_streaming(
    client: httpx.AsyncClient,
) -> None:
    for params in (
        {"watch": "maybe"},
        {"watch": "1", "resourceVersion": "abc"},
        {"watch": "1", "timeoutSeconds": "-1"},
        {"watch": "1", "resourceVersion": "1", "labelSelector": "a in (b"},
    ):
        answer = await client.get(models_path(), params=params)
        assert answer.status_code == 400, params
        assert answer.json()["kind"] == "Status"


@pytest.fixture
async def compacting_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    store = await open_store(f"sqlite:///{tmp_path / 'small.db'}", event_retention=2)
    try:
        await ensure_builtin_namespaces(store)
        app = create_app(store, admin_token=TOKEN, registry=CollectorRegistry())
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://corral.test",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as http:
            yield http
    finally:
        await store.close()


async def test_too_old_version_ends_with_a_gone_error_line(
    compacting_client: httpx.AsyncClient,
) -> None:
    for index in range(6):
        await compacting_client.post(models_path(), json=model(f"m{index}"))
    answer = await compacting_client.get(
        models_path(), params={"watch": "1", "resourceVersion": "1"}
    )
    lines = [orjson.loads(line) for line in answer.content.splitlines()]
    assert len(lines) == 1
    assert lines[0]["type"] == "ERROR"
    assert lines[0]["object"]["code"] == 410
    assert lines[0]["object"]["reason"] == "Expired"


async def test_server_shutdown_ends_open_watches(app: Starlette) -> None:
    async with (
        running_uvicorn(app, timeout_graceful_shutdown=1) as (url, server),
        httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as http,
    ):
        await http.post(models_path(), json=model("x"))
        async with watching(http, models_path()) as events:
            await next_event(events)
            server.should_exit = True
            # uvicorn waits for the open stream, then cancels it after the grace period.
            with pytest.raises(httpx.RemoteProtocolError):
                await next_event(events)
