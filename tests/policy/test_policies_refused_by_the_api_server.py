"""Through the real write path: the API server refuses a Policy Cedar cannot validate."""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from policy_harness import policy
from prometheus_client import CollectorRegistry

from corral.apiserver import create_app, ensure_builtin_namespaces
from corral.store import open_store

TOKEN = "policy-test-token"
POLICIES = "/apis/corral.dev/v1alpha1/namespaces/default/policies"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    store = await open_store(f"sqlite:///{tmp_path / 'corral.db'}")
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


async def test_invalid_policy_is_422_with_cedar_diagnostics_and_valid_one_is_stored(
    client: httpx.AsyncClient,
):
    bad = policy("bad", 'permit(principal, action == Action::"invoke", resource)\n  when { 1 + };')
    refused = await client.post(POLICIES, json=bad)
    assert refused.status_code == 422
    assert refused.json()["details"]["causes"] == [
        {
            "field": "spec.cedar",
            "message": "line 1, column 1 (statement 1): unexpected token `}`",
            "location": "",
        }
    ]
    good = policy("good", 'permit(principal in Team::"default/admins", action, resource);')
    assert (await client.post(POLICIES, json=good)).status_code == 201
    stored = (await client.get(f"{POLICIES}/good")).json()
    assert stored["spec"]["enabled"] is True
    assert (await client.get(POLICIES)).json()["items"][0]["metadata"]["name"] == "good"
