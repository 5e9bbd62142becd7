"""/metrics exposes request counters by verb, kind and code, latencies, and object counts."""

from __future__ import annotations

import httpx
from prometheus_client import CollectorRegistry

from .helpers import API, model, models_path


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_requests_are_counted_by_verb_kind_and_code(
    client: httpx.AsyncClient, registry: CollectorRegistry
) -> None:
    await client.post(models_path(), json=model("a"))
    await client.post(models_path(), json=model("a"))
    await client.get(models_path(name="a"))
    await client.get(models_path())
    await client.post(f"{API}/apply", json={"items": [model("b")]})
    await client.get(models_path(), headers={"Authorization": "Bearer wrong"})

    total = "corral_apiserver_requests_total"
    assert sample(registry, total, verb="create", kind="Model", code="201") == 1
    assert sample(registry, total, verb="create", kind="Model", code="409") == 1
    assert sample(registry, total, verb="get", kind="Model", code="200") == 1
    assert sample(registry, total, verb="list", kind="Model", code="200") == 1
    assert sample(registry, total, verb="apply", kind="", code="200") == 1
    assert sample(registry, total, verb="get", kind="", code="401") == 1
    count = "corral_apiserver_request_duration_seconds_count"
    assert sample(registry, count, verb="create", kind="Model") == 2


async def test_scrape_reports_objects_by_kind(client: httpx.AsyncClient) -> None:
    await client.post(models_path(), json=model("a"))
    await client.post(models_path(), json=model("b"))
    answer = await client.get("/metrics")
    assert answer.headers["content-type"].startswith("text/plain")
    lines = answer.text.splitlines()
    assert 'corral_apiserver_objects{kind="Model"} 2.0' in lines
    assert 'corral_apiserver_objects{kind="Namespace"} 2.0' in lines
    assert "corral_apiserver_watch_streams 0.0" in lines
    assert any(line.startswith("corral_apiserver_requests_total{") for line in lines)
