"""Objects go in and come back out through the Kubernetes-style paths, with the store's metadata."""

from __future__ import annotations

import httpx

from .helpers import API, model, models_path, namespace


async def test_create_get_replace_delete_round_trip(client: httpx.AsyncClient) -> None:
    created = await client.post(models_path(), json=model("small"))
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["metadata"]["generation"] == 1
    assert body["metadata"]["uid"]
    assert body["spec"]["format"] == "gguf"  # defaults filled by validation

    fetched = await client.get(models_path(name="small"))
    assert fetched.status_code == 200
    assert fetched.json() == body

    changed = fetched.json()
    changed["spec"]["contextLength"] = 4096
    replaced = await client.put(models_path(name="small"), json=changed)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["metadata"]["generation"] == 2
    assert int(replaced.json()["metadata"]["resourceVersion"]) > int(
        body["metadata"]["resourceVersion"]
    )

    deleted = await client.delete(models_path(name="small"))
    assert deleted.status_code == 200
    assert deleted.json()["metadata"]["name"] == "small"
    gone = await client.get(models_path(name="small"))
    assert gone.status_code == 404
    assert gone.json()["reason"] == "NotFound"


async def test_list_in_a_namespace_and_across_namespaces(client: httpx.AsyncClient) -> None:
    assert (await client.post(f"{API}/namespaces", json=namespace("team-a"))).status_code == 201
    for ns, name in (("default", "one"), ("default", "two"), ("team-a", "three")):
        assert (await client.post(models_path(ns), json=model(name, ns))).status_code == 201

    in_default = (await client.get(models_path())).json()
    assert in_default["kind"] == "ModelList"
    assert [item["metadata"]["name"] for item in in_default["items"]] == ["one", "two"]
    assert int(in_default["metadata"]["resourceVersion"]) > 0

    everywhere = (await client.get(f"{API}/models")).json()
    assert sorted(item["metadata"]["name"] for item in everywhere["items"]) == [
        "one",
        "three",
        "two",
    ]


async def test_list_pages_with_limit_and_continue(client: httpx.AsyncClient) -> None:
    for index in range(5):
        await client.post(models_path(), json=model(f"m{index}"))
    names: list[str] = []
    params = {"limit": "2"}
    pages = 0
    while True:
        page = (await client.get(models_path(), params=params)).json()
        pages += 1
        names += [item["metadata"]["name"] for item in page["items"]]
        if not page["metadata"].get("continue"):
            break
        params["continue"] = page["metadata"]["continue"]
    assert names == ["m0", "m1", "m2", "m3", "m4"]
    assert pages == 3


async def test_list_filters_by_label_selector(client: httpx.AsyncClient) -> None:
    await client.post(models_path(), json=model("a", labels={"team": "search"}))
    await client.post(models_path(), json=model("b", labels={"team": "ads"}))
    page = (await client.get(models_path(), params={"labelSelector": "team=search"})).json()
    assert [item["metadata"]["name"] for item in page["items"]] == ["a"]


async def test_body_without_namespace_takes_the_path_namespace(client: httpx.AsyncClient) -> None:
    await client.post(f"{API}/namespaces", json=namespace("team-b"))
    created = await client.post(models_path("team-b"), json=model("x", namespace=None))
    assert created.status_code == 201, created.text
    assert created.json()["metadata"]["namespace"] == "team-b"


async def test_body_that_disagrees_with_the_path_is_refused(client: httpx.AsyncClient) -> None:
    other_ns = await client.post(models_path(), json=model("x", namespace="elsewhere"))
    assert other_ns.status_code == 400
    assert "does not match the namespace in the path" in other_ns.json()["message"]

    other_name = await client.put(models_path(name="y"), json=model("x"))
    assert other_name.status_code == 400
    assert "does not match the name in the path" in other_name.json()["message"]

    other_kind = await client.post(models_path(), json={**model("x"), "kind": "Endpoint"})
    assert other_kind.status_code == 400
    assert "'models' in the path holds Model" in other_kind.json()["message"]


async def test_create_in_a_missing_namespace_names_it(client: httpx.AsyncClient) -> None:
    answer = await client.post(models_path("nowhere"), json=model("x", "nowhere"))
    assert answer.status_code == 404
    assert "namespace 'nowhere' not found" in answer.json()["message"]


async def test_invalid_object_lists_field_causes(client: httpx.AsyncClient) -> None:
    bad = model("x")
    bad["spec"] = {"source": "ftp://nope", "colour": "blue"}
    answer = await client.post(models_path(), json=bad)
    assert answer.status_code == 422
    causes = {cause["field"]: cause["message"] for cause in answer.json()["details"]["causes"]}
    assert "spec.source" in causes
    assert causes["spec.colour"] == "unknown field"


async def test_cluster_scoped_namespace_paths(client: httpx.AsyncClient) -> None:
    created = await client.post(f"{API}/namespaces", json=namespace("scratch"))
    assert created.status_code == 201
    assert "namespace" not in created.json()["metadata"]
    names = [
        item["metadata"]["name"] for item in (await client.get(f"{API}/namespaces")).json()["items"]
    ]
    assert {"default", "corral-system", "scratch"} <= set(names)
    labelled = (await client.get(f"{API}/namespaces/scratch")).json()
    labelled["metadata"]["labels"] = {"env": "dev"}
    replaced = await client.put(f"{API}/namespaces/scratch", json=labelled)
    assert replaced.json()["metadata"]["labels"] == {"env": "dev"}
    assert (await client.delete(f"{API}/namespaces/scratch")).status_code == 200


async def test_namespace_with_objects_cannot_be_deleted(client: httpx.AsyncClient) -> None:
    await client.post(f"{API}/namespaces", json=namespace("busy"))
    await client.post(models_path("busy"), json=model("keep", "busy"))
    refused = await client.delete(f"{API}/namespaces/busy")
    assert refused.status_code == 409
    assert "namespace 'busy' is not empty" in refused.json()["message"]
    assert "Model/keep" in refused.json()["message"]

    await client.delete(models_path("busy", "keep"))
    assert (await client.delete(f"{API}/namespaces/busy")).status_code == 200


async def test_builtin_namespaces_exist_and_cannot_be_deleted(client: httpx.AsyncClient) -> None:
    for name in ("default", "corral-system"):
        assert (await client.get(f"{API}/namespaces/{name}")).status_code == 200
        refused = await client.delete(f"{API}/namespaces/{name}")
        assert refused.status_code == 403


async def test_history_records_each_generation_with_the_admin_actor(
    client: httpx.AsyncClient,
) -> None:
    created = (await client.post(models_path(), json=model("h"))).json()
    await client.patch(
        models_path(name="h"),
        content=b'{"spec": {"contextLength": 8192}}',
        headers={"content-type": "application/merge-patch+json"},
    )
    history = (await client.get(models_path(name="h") + "/history")).json()
    assert history["kind"] == "HistoryList"
    entries = history["items"]
    assert [entry["generation"] for entry in entries] == [1, 2]
    assert [entry["action"] for entry in entries] == ["created", "updated"]
    assert {entry["actor"] for entry in entries} == {"admin"}
    assert entries[0]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert entries[1]["spec"]["contextLength"] == 8192

    missing = await client.get(models_path(name="never") + "/history")
    assert missing.status_code == 404


async def test_delete_with_finalizers_marks_then_removes(client: httpx.AsyncClient) -> None:
    await client.post(models_path(), json=model("fin", finalizers=["corral.dev/cleanup"]))
    marked = await client.delete(models_path(name="fin"))
    assert marked.status_code == 200
    assert "deletionTimestamp" in marked.json()["metadata"]
    release = await client.patch(
        models_path(name="fin"),
        content=b'{"metadata": {"finalizers": null}}',
        headers={"content-type": "application/merge-patch+json"},
    )
    assert release.status_code == 200, release.text
    assert (await client.get(models_path(name="fin"))).status_code == 404


async def test_discovery_lists_every_kind(client: httpx.AsyncClient) -> None:
    resources = (await client.get(API)).json()["resources"]
    by_name = {resource["name"]: resource for resource in resources}
    assert by_name["models"]["kind"] == "Model"
    assert by_name["models"]["namespaced"] is True
    assert by_name["namespaces"]["namespaced"] is False
    assert "endpoints/status" in by_name
    assert (await client.get(f"{API}/")).json()["resources"] == resources


async def test_trailing_slashes_are_accepted(client: httpx.AsyncClient) -> None:
    assert (await client.post(models_path() + "/", json=model("slash"))).status_code == 201
    assert (await client.get(models_path(name="slash") + "/")).status_code == 200
