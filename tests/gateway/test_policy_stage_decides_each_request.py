"""API keys and policies on the request path: the access feed's snapshots, the policy stage.

A real store (SQLite) feeds a real ``AccessFeed``; the gateway runs in-process over a scripted
transport, so every test also checks that a refused request never reached an upstream.
"""

import asyncio
from pathlib import Path

import pytest
from gateway_harness import ScriptedTransport, drive, endpoint, json_response, replica

from corral.api.validation import validate_object
from corral.gateway import RouteSource, RouteTable, create_gateway
from corral.identity import generate_api_key
from corral.server.access_feed import ADMIN_PRINCIPAL, AccessFeed
from corral.server.governance import admin_policy, ensure_builtin_policies, policy_stage
from corral.server.serve import admin_token_check
from corral.store import open_store

ADMIN = "admin-token-for-tests"
CHAT = "/v1/chat/completions"
WAIT_S = 10.0


def obj(kind, name, spec, *, labels=None, namespace="default"):
    metadata = {"name": name, "namespace": namespace, "labels": labels or {}}
    return validate_object(
        {"apiVersion": "corral.dev/v1alpha1", "kind": kind, "metadata": metadata, "spec": spec}
    )


def cedar_policy(name, text):
    return obj("Policy", name, {"cedar": text})


SEARCH_MAY_INVOKE = """
permit (principal in Team::"default/search", action == Action::"invoke", resource is Endpoint)
when { resource.hasTag("team") && resource.getTag("team") == "search" };
"""
NO_BIG_REQUESTS = """
forbid (principal, action == Action::"invoke", resource)
when { context.estimated_tokens > 1000 };
"""


class Harness:
    def __init__(self, store, feed, transport, app):
        self.store, self.feed, self.transport, self.app = store, feed, transport, app

    async def put(self, *objects):
        for item in objects:
            await self.store.create(item, actor="test")

    async def until(self, check):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S
        while not check():
            assert loop.time() < deadline, "the access feed never caught up with the store"
            await asyncio.sleep(0.01)

    async def chat(self, token, **extra):
        body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], **extra}
        return await drive(self.app, "POST", CHAT, body=body, token=token)


@pytest.fixture
async def harness(tmp_path: Path):
    store = await open_store(f"sqlite:///{tmp_path / 'corral.db'}")
    stop = asyncio.Event()
    feed = AccessFeed(store, admin_token_check(ADMIN))
    task = asyncio.create_task(feed.start(stop))
    try:
        await store.create(obj("Namespace", "corral-system", {}, namespace=""), actor="test")
        await ensure_builtin_policies(store)
        labelled = endpoint(
            "chat", {"v1": 100}, [replica("v1", "http://127.0.0.1:9001")], namespace="default"
        )
        labelled["metadata"]["labels"] = {"team": "search"}
        await store.create(labelled, actor="test")

        async def respond(_url):
            return json_response({"ok": True})

        transport = ScriptedTransport(respond)
        routes = RouteSource(RouteTable.from_endpoints([labelled]))
        app = create_gateway(
            routes, authenticate=feed.authenticate, transport=transport, stages=[policy_stage(feed)]
        )
        running = Harness(store, feed, transport, app)
        await running.until(lambda: feed.ready and feed.endpoint_entity("default", "chat").tags)
        await running.until(lambda: len(feed.engine.snapshot.compiled.refs) > 0)
        yield running
    finally:
        stop.set()
        await task
        await store.close()


async def search_key(harness, **spec):
    generated = generate_api_key()
    fields = {"team": "search", "prefix": generated.prefix, "salt": generated.salt}
    key = obj("ApiKey", f"key-{generated.prefix}", {**fields, "hash": generated.hash, **spec})
    await harness.put(key)
    await harness.until(lambda: harness.feed.keys.authenticate(generated.plaintext) is not None)
    return generated.plaintext


async def test_the_admin_token_is_permitted_by_the_builtin_policy(harness):
    assert harness.feed.authenticate(ADMIN) == ADMIN_PRINCIPAL
    exchange = await harness.chat(ADMIN)
    assert exchange.status == 200, exchange.body
    assert len(harness.transport.calls) == 1


async def test_unknown_garbled_and_missing_keys_get_401_and_cost_nothing(harness):
    fake = generate_api_key().plaintext
    for token in (None, "not-a-key", fake, fake[:-1] + "!"):
        exchange = await harness.chat(token)
        assert exchange.status == 401, token
        assert exchange.json()["error"]["code"] == "invalid_api_key"
    assert harness.transport.calls == []


async def test_a_key_is_denied_by_default_then_permitted_by_a_policy(harness):
    await harness.put(obj("Team", "search", {}))
    key = await search_key(harness)
    denied = await harness.chat(key)
    assert denied.status == 403
    assert denied.json()["error"] == {
        "message": "denied by policy",
        "type": "permission_denied",
        "param": None,
        "code": "denied_by_policy",
    }
    assert harness.transport.calls == []

    await harness.put(cedar_policy("search-invokes", SEARCH_MAY_INVOKE))
    await harness.until(lambda: len(harness.feed.engine.snapshot.compiled.refs) > 1)
    allowed = await harness.chat(key)
    assert allowed.status == 200, allowed.body
    assert len(harness.transport.calls) == 1


async def test_a_forbid_overrides_a_permit_and_is_named(harness):
    await harness.put(obj("Team", "search", {}), cedar_policy("search-invokes", SEARCH_MAY_INVOKE))
    await harness.put(cedar_policy("no-big-requests", NO_BIG_REQUESTS))
    key = await search_key(harness)
    await harness.until(lambda: len(harness.feed.engine.snapshot.compiled.refs) > 2)

    small = await harness.chat(key, max_tokens=100)
    big = await harness.chat(key, max_tokens=5000)
    assert small.status == 200, small.body
    assert big.status == 403
    assert (
        big.json()["error"]["message"] == "denied by policy (forbidden by default/no-big-requests)"
    )
    assert len(harness.transport.calls) == 1


async def test_expired_and_revoked_keys_get_401(harness):
    await harness.put(obj("Team", "search", {}), cedar_policy("search-invokes", SEARCH_MAY_INVOKE))
    expired = generate_api_key()
    await harness.put(
        obj(
            "ApiKey",
            "expired",
            {
                "team": "search",
                "prefix": expired.prefix,
                "salt": expired.salt,
                "hash": expired.hash,
                "expiresAt": "2020-01-01T00:00:00Z",
            },
        )
    )
    key = await search_key(harness)
    assert (await harness.chat(expired.plaintext)).status == 401

    stored = await harness.store.get("ApiKey", "default", f"key-{key[4:16]}")
    stored["spec"]["revoked"] = True
    await harness.store.update(stored, actor="test")
    await harness.until(lambda: harness.feed.keys.authenticate(key) is None)
    assert (await harness.chat(key)).status == 401
    assert harness.transport.calls == []


async def test_the_builtin_policy_is_created_once_and_an_edit_is_kept(harness):
    stored = await harness.store.get("Policy", "corral-system", "admin-invokes-everything")
    assert stored["spec"]["cedar"] == admin_policy()["spec"]["cedar"]
    stored["spec"]["enabled"] = False
    await harness.store.update(stored, actor="operator")
    await ensure_builtin_policies(harness.store)
    kept = await harness.store.get("Policy", "corral-system", "admin-invokes-everything")
    assert kept["spec"]["enabled"] is False

    await harness.until(lambda: len(harness.feed.engine.snapshot.compiled.refs) == 0)
    assert (await harness.chat(ADMIN)).status == 403
    assert harness.transport.calls == []
