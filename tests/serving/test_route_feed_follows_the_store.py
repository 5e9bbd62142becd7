"""The gateway's route feed: Endpoints and Secrets from the store's watch, compiled into routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from corral.api.validation import validate_object
from corral.gateway import EndpointRoute, RouteSource
from corral.server.route_feed import RouteFeed
from corral.store import Store, open_store

from .helpers import endpoint

WAIT_S = 10.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite:///{tmp_path / 'corral.db'}")
    try:
        yield opened
    finally:
        await opened.close()


class Running:
    def __init__(self, feed: RouteFeed) -> None:
        self.feed = feed

    def route(self, name: str) -> EndpointRoute | None:
        return self.feed.routes.current.lookup(name)

    async def until(self, check: Callable[[], bool]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S
        while not check():
            assert loop.time() < deadline, "the routes never caught up with the store"
            await asyncio.sleep(0.01)


@pytest.fixture
async def running(store: Store) -> AsyncIterator[Callable[[], Any]]:
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def start() -> Running:
        feed = RouteFeed(store, RouteSource())
        tasks.append(asyncio.create_task(feed.start(stop)))
        started = Running(feed)
        await started.until(lambda: feed.ready)
        return started

    try:
        yield start
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def put(store: Store, obj: dict[str, Any], status: dict[str, Any] | None = None) -> None:
    (outcome,) = await store.apply([validate_object(obj)])
    if status is not None:
        await store.update_status({**outcome.object, "status": status})


def serving(address: str, model: str = "v1") -> dict[str, Any]:
    entry = {"name": f"default.x.{model}.0", "model": model, "ready": True, "state": "Ready"}
    return {"replicas": [{**entry, "address": address, "apiBase": f"{address}/v1"}]}


def addresses(route: EndpointRoute | None) -> list[str]:
    assert route is not None
    return [address for version in route.serving for address in version.addresses]


async def test_a_relist_of_many_endpoints_builds_one_table(store: Store, running) -> None:
    for index in range(20):
        await put(store, endpoint(f"ep{index}", {"v1": 100}), serving(f"http://10.0.0.{index}:80"))
    feed = await running()
    await feed.until(lambda: len(feed.feed.routes.current.endpoints) == 20)
    assert feed.feed.rebuilds == 1
    assert addresses(feed.route("ep7")) == ["http://10.0.0.7:80/v1"]


async def test_status_changes_reroute_and_deletes_unroute(store: Store, running) -> None:
    feed = await running()
    await put(store, endpoint("chat", {"v1": 100}), serving("http://10.0.0.1:80"))
    await feed.until(lambda: feed.route("chat") is not None and bool(feed.route("chat").serving))
    chat = await store.get("Endpoint", "default", "chat")
    await store.update_status({**chat, "status": serving("http://10.0.0.2:80")})
    await feed.until(lambda: addresses(feed.route("chat")) == ["http://10.0.0.2:80/v1"])
    await store.delete("Endpoint", "default", "chat")
    await feed.until(lambda: feed.route("chat") is None)


async def test_a_malformed_endpoint_is_logged_and_the_others_keep_routing(
    store: Store, running, caplog: pytest.LogCaptureFixture
) -> None:
    await put(store, endpoint("good", {"v1": 100}), serving("http://10.0.0.1:80"))
    await put(store, endpoint("bad", {"v1": 100}), {"replicas": ["not an object"]})
    with caplog.at_level(logging.WARNING, logger="corral.server.route_feed"):
        feed = await running()
    assert feed.route("bad") is None
    assert addresses(feed.route("good")) == ["http://10.0.0.1:80/v1"]
    assert (
        "Endpoint default/bad is not routed: Endpoint default/bad: status.replicas[0]: "
        "must be an object" in caplog.text
    )
    bad = await store.get("Endpoint", "default", "bad")
    await store.update_status({**bad, "status": serving("http://10.0.0.3:80")})
    await feed.until(lambda: feed.route("bad") is not None)


async def test_the_secrets_key_follows_the_secret(store: Store, running) -> None:
    runtime = {"type": "openai", "baseURL": "https://llm.example.com/v1", "secretRef": "key"}
    upstream = endpoint("hosted", {"up": 100}, runtime=runtime)
    status = {
        "replicas": [
            {
                "name": "default.hosted.up.0",
                "model": "up",
                "ready": True,
                "state": "Ready",
                "address": "https://llm.example.com/v1",
                "apiBase": "https://llm.example.com/v1",
            }
        ]
    }
    await put(store, upstream, status)
    feed = await running()

    def authorization() -> bytes | None:
        route = feed.route("hosted")
        assert route is not None
        return dict(route.upstream_headers).get(b"authorization")

    assert authorization() is None
    assert "Secret default/key is missing" in feed.route("hosted").unavailable_reason
    secret = {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Secret",
        "metadata": {"name": "key"},
        "spec": {"data": {"apiKey": "sk-1"}},
    }
    await put(store, secret)
    await feed.until(lambda: authorization() == b"Bearer sk-1")
    assert addresses(feed.route("hosted")) == ["https://llm.example.com/v1"]
    secret["spec"]["data"]["apiKey"] = "sk-2"
    await put(store, secret)
    await feed.until(lambda: authorization() == b"Bearer sk-2")
    await store.delete("Secret", "default", "key")
    await feed.until(lambda: authorization() is None)
    assert feed.route("hosted").serving == ()
