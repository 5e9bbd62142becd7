"""Bad input of any shape gets a Status body with a 4xx code that names the problem, never a
500 and never a plain-text page; oversized bodies are refused without being read."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.apiserver import create_app, ensure_builtin_namespaces
from corral.store import open_store

from .helpers import API, TOKEN, model, models_path

MIB = 1024 * 1024


class CountingBody:
    """A request body that records how much of it the server pulled."""

    def __init__(self, chunks: int, chunk_size: int = MIB) -> None:
        self.chunks = chunks
        self.chunk_size = chunk_size
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.pulled += 1
            yield b" " * self.chunk_size


def assert_status(answer: httpx.Response, code: int, *fragments: str) -> dict[str, Any]:
    assert answer.status_code == code, answer.text
    body: dict[str, Any] = answer.json()
    assert body["kind"] == "Status"
    assert body["code"] == code
    for fragment in fragments:
        assert fragment in body["message"], (fragment, body["message"])
    return body


async def test_declared_oversized_body_is_refused_before_reading(
    client: httpx.AsyncClient,
) -> None:
    body = CountingBody(chunks=100)
    answer = await client.post(
        models_path(), content=body, headers={"content-length": str(100 * MIB)}
    )
    assert_status(answer, 413, f"the request body is {100 * MIB} bytes", "limit is 1572864")
    assert body.pulled == 0


async def test_undeclared_oversized_body_is_refused_while_reading(
    client: httpx.AsyncClient,
) -> None:
    body = CountingBody(chunks=100)
    answer = await client.put(models_path(name="x"), content=body)
    assert_status(answer, 413, "more than 1572864 bytes")
    assert body.pulled == 2


async def test_apply_has_a_larger_limit(client: httpx.AsyncClient) -> None:
    refused = CountingBody(chunks=100)
    answer = await client.post(
        f"{API}/apply", content=refused, headers={"content-length": str(100 * MIB)}
    )
    assert_status(answer, 413, "limit is 67108864")
    assert refused.pulled == 0

    # Two MiB of whitespace around a valid body: over the single-object limit, fine for apply.
    padded = b" " * (2 * MIB) + orjson.dumps({"items": [model("big")]})
    answer = await client.post(f"{API}/apply", content=padded)
    assert answer.status_code == 200, answer.text


async def test_malformed_json_names_line_and_column(client: httpx.AsyncClient) -> None:
    answer = await client.post(models_path(), content=b'{\n  "kind": "Model",\n  oops}')
    assert_status(answer, 400, "malformed JSON", "line 3")


async def test_invalid_utf8_is_named(client: httpx.AsyncClient) -> None:
    answer = await client.post(models_path(), content=b'{"kind": "Mod\xffel"}')
    assert_status(answer, 400, "not valid UTF-8", "byte 13")


async def test_empty_body_is_named(client: httpx.AsyncClient) -> None:
    assert_status(await client.post(models_path()), 400, "body is empty")


async def test_body_that_is_not_an_object(client: httpx.AsyncClient) -> None:
    assert_status(await client.post(models_path(), json=[1, 2]), 400, "must be a JSON object")


async def test_non_json_content_type_is_unsupported(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        models_path(), content=b"kind: Model", headers={"content-type": "application/yaml"}
    )
    assert_status(answer, 415, "application/yaml")


async def test_unknown_paths_and_kinds_are_404_statuses(client: httpx.AsyncClient) -> None:
    assert_status(await client.get(f"{API}/widgets"), 404, "no resource type 'widgets'")
    assert_status(await client.get(f"{API}/namespaces/default/widgets"), 404, "'widgets'")
    assert_status(await client.get(f"{API}/models/x"), 404, "Model is namespaced")
    assert_status(await client.get(f"{API}/namespaces/default/namespaces"), 404, "cluster-scoped")
    assert_status(await client.get(models_path(name="a") + "/scale"), 404, "no such path")
    assert_status(await client.get("/nothing/here"), 404, "no such path")


async def test_wrong_methods_are_405_statuses_with_allow(client: httpx.AsyncClient) -> None:
    collection = await client.delete(models_path())
    assert_status(collection, 405, "DELETE is not allowed")
    assert collection.headers["allow"] == "GET, POST"
    assert_status(await client.post(f"{API}/models", json=model("x")), 405)
    assert_status(await client.post(models_path(name="x"), json=model("x")), 405)
    assert_status(await client.delete(models_path(name="x") + "/status"), 405)
    assert_status(await client.put(models_path(name="x") + "/history", json={}), 405)
    assert_status(await client.post("/healthz"), 405)


async def test_bad_list_parameters_are_400(client: httpx.AsyncClient) -> None:
    assert_status(await client.get(models_path(), params={"limit": "ten"}), 400, "limit='ten'")
    assert_status(await client.get(models_path(), params={"limit": "0"}), 400, "positive")
    assert_status(await client.get(models_path(), params={"labelSelector": "a in (b"}), 400)
    assert_status(await client.get(models_path(), params={"continue": "garbage"}), 400)


async def test_bad_content_length_is_400(client: httpx.AsyncClient) -> None:
    answer = await client.post(models_path(), content=b"{}", headers={"content-length": "lots"})
    assert_status(answer, 400, "Content-Length")


async def test_bad_delete_options_are_422(client: httpx.AsyncClient) -> None:
    await client.post(models_path(), json=model("x"))
    answer = await client.request("DELETE", models_path(name="x"), json={"gracePeriod": 1})
    body = assert_status(answer, 422, "DeleteOptions")
    assert body["details"]["causes"][0]["field"] == "gracePeriod"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["apiVersion", "kind", "metadata", "spec", "status", "name", "x"]),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)

near_objects = st.fixed_dictionaries(
    {
        "apiVersion": st.just("corral.dev/v1alpha1") | json_values,
        "kind": st.just("Model") | json_values,
        "metadata": st.fixed_dictionaries(
            {"name": st.just("target") | json_values},
            optional={
                "namespace": st.just("default") | json_values,
                "labels": st.dictionaries(st.text(max_size=5), json_values, max_size=2),
                "resourceVersion": json_values,
                "finalizers": json_values,
            },
        )
        | json_values,
    },
    optional={
        "spec": st.fixed_dictionaries(
            {"source": st.just("file:///m.gguf") | json_values},
            optional={"contextLength": json_values, "pricing": json_values},
        )
        | json_values,
        "status": json_values,
    },
)


@pytest.fixture
def fuzz_target(tmp_path: Path) -> Iterator[tuple[asyncio.Runner, httpx.AsyncClient]]:
    """One store, app and client for every example (hypothesis calls the test many times)."""
    with asyncio.Runner() as runner:
        store = runner.run(open_store(f"sqlite:///{tmp_path / 'fuzz.db'}"))
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(store, admin_token=TOKEN)),
            base_url="http://corral.test",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        try:
            runner.run(ensure_builtin_namespaces(store))
            runner.run(store.create(model("target"), actor="test"))
            yield runner, http
        finally:
            runner.run(http.aclose())
            runner.run(store.close())


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    body=near_objects | json_values,
    method=st.sampled_from(["POST", "PUT", "PATCH"]),
    raw=st.binary(max_size=24),
)
def test_arbitrary_bodies_never_cause_a_server_error(
    fuzz_target: tuple[asyncio.Runner, httpx.AsyncClient], body: Any, method: str, raw: bytes
) -> None:
    runner, http = fuzz_target

    async def exercise() -> None:
        headers = {"content-type": "application/merge-patch+json"}
        path = models_path() if method == "POST" else models_path(name="target")
        # The stdlib encoder, unlike orjson, writes integers beyond 64 bits.
        for content in (json.dumps(body).encode(), raw):
            answer = await http.request(method, path, content=content, headers=headers)
            assert answer.status_code < 500, answer.text
            assert answer.headers["content-type"] == "application/json"
        for apply_body in ({"items": [body]}, body):
            answer = await http.post(f"{API}/apply", content=json.dumps(apply_body).encode())
            assert answer.status_code < 500, answer.text

    runner.run(exercise())
