"""POST /apply validates every item first (all problems, with file locations), then applies all
of them in one transaction or none; it dry-runs and prunes."""

from __future__ import annotations

from typing import Any

import httpx

from .helpers import API, model, models_path, namespace

APPLY = f"{API}/apply"


def causes_of(answer: httpx.Response) -> list[dict[str, str]]:
    causes: list[dict[str, str]] = answer.json()["details"]["causes"]
    return causes


async def apply(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post(APPLY, json=body)


async def test_apply_creates_configures_and_leaves_unchanged(client: httpx.AsyncClient) -> None:
    first = await apply(client, items=[model("a"), model("b")])
    assert first.status_code == 200, first.text
    assert [(item["name"], item["action"]) for item in first.json()["items"]] == [
        ("a", "created"),
        ("b", "created"),
    ]
    changed = model("b")
    changed["spec"]["contextLength"] = 64
    second = (await apply(client, items=[model("a"), changed])).json()["items"]
    assert [item["action"] for item in second] == ["unchanged", "configured"]
    assert second[0]["kind"] == "Model"
    assert second[0]["namespace"] == "default"
    assert any(change["path"] == "/spec/contextLength" for change in second[1]["diff"])
    history = (await client.get(models_path(name="b") + "/history")).json()["items"]
    assert history[-1]["actor"] == "admin"


async def test_one_invalid_item_applies_nothing_and_names_every_problem(
    client: httpx.AsyncClient,
) -> None:
    bad_source = model("bad")
    bad_source["spec"]["source"] = "ftp://x"
    bad_name = model("Not_A_Name")
    answer = await apply(
        client,
        items=[model("good"), bad_source, bad_name],
        locations=["models.yaml[0]", "models.yaml[1]", "more.yaml[0]"],
    )
    assert answer.status_code == 422
    assert "nothing was applied" in answer.json()["message"]
    found = {(cause["location"], cause["field"]) for cause in causes_of(answer)}
    assert found == {("models.yaml[1]", "spec.source"), ("more.yaml[0]", "metadata.name")}
    assert (await client.get(models_path(name="good"))).status_code == 404


async def test_locations_default_to_item_indexes(client: httpx.AsyncClient) -> None:
    answer = await apply(client, items=[model("ok"), {"kind": "Nope"}])
    assert answer.status_code == 422
    assert {cause["location"] for cause in causes_of(answer)} == {"items[1]"}


async def test_duplicates_in_one_apply_name_both_locations(client: httpx.AsyncClient) -> None:
    answer = await apply(
        client, items=[model("twice"), model("twice")], locations=["a.yaml[0]", "b.yaml[3]"]
    )
    assert answer.status_code == 422
    (cause,) = causes_of(answer)
    assert cause["location"] == "b.yaml[3]"
    assert "a.yaml[0]" in cause["message"]
    assert "Model/default/twice" in cause["message"]


async def test_missing_namespace_is_a_problem_unless_declared(client: httpx.AsyncClient) -> None:
    refused = await apply(client, items=[model("m", "team-x")], locations=["x.yaml[0]"])
    assert refused.status_code == 422
    (cause,) = causes_of(refused)
    assert (cause["location"], cause["field"]) == ("x.yaml[0]", "metadata.namespace")
    assert "'team-x' does not exist" in cause["message"]

    accepted = await apply(client, items=[model("m", "team-x"), namespace("team-x")])
    assert accepted.status_code == 200, accepted.text
    assert (await client.get(models_path("team-x", "m"))).status_code == 200


async def test_dry_run_reports_outcomes_and_writes_nothing(client: httpx.AsyncClient) -> None:
    before = (await client.get(models_path())).json()["metadata"]["resourceVersion"]
    answer = await apply(client, items=[model("dry")], dryRun=True)
    assert answer.status_code == 200
    assert answer.json()["dryRun"] is True
    assert [item["action"] for item in answer.json()["items"]] == ["created"]
    assert (await client.get(models_path(name="dry"))).status_code == 404
    after = (await client.get(models_path())).json()["metadata"]["resourceVersion"]
    assert after == before


async def test_prune_deletes_matching_objects_no_longer_declared(
    client: httpx.AsyncClient,
) -> None:
    labels = {"app": "chat"}
    await apply(client, items=[model("keep", labels=labels), model("old", labels=labels)])
    await client.post(models_path(), json=model("unrelated"))
    answer = await apply(
        client,
        items=[model("keep", labels=labels)],
        prune={"selector": "app=chat", "kinds": ["models"]},
    )
    assert answer.status_code == 200, answer.text
    actions = {item["name"]: item["action"] for item in answer.json()["items"]}
    assert actions == {"keep": "unchanged", "old": "pruned"}
    names = [item["metadata"]["name"] for item in (await client.get(models_path())).json()["items"]]
    assert names == ["keep", "unrelated"]


async def test_prune_without_kinds_covers_every_kind_but_namespace(
    client: httpx.AsyncClient,
) -> None:
    labels = {"app": "x"}
    await apply(client, items=[model("old", labels=labels)])
    answer = await apply(client, items=[], prune={"selector": "app=x"})
    assert [item["action"] for item in answer.json()["items"]] == ["pruned"]


async def test_malformed_apply_bodies_are_bad_requests(client: httpx.AsyncClient) -> None:
    cases: list[tuple[Any, str]] = [
        (["not", "an", "object"], "must be a JSON object"),
        ({"objects": []}, "unknown field(s) in the apply body: objects"),
        ({"items": {}}, "items: required"),
        ({"items": [model("a")], "locations": ["x", "y"]}, "locations: expected a list of 1"),
        ({"items": [], "dryRun": "yes"}, "dryRun"),
        ({"items": [], "prune": {"kinds": ["Model"]}}, "prune.selector"),
        ({"items": [], "prune": {"selector": "a=b", "kinds": ["Nope"]}}, "unknown kind 'Nope'"),
        ({"items": [], "prune": {"selector": "a=b", "kinds": ["Namespace"]}}, "never pruned"),
    ]
    for body, message in cases:
        answer = await client.post(APPLY, json=body)
        assert answer.status_code == 400, body
        assert message in answer.json()["message"], (body, answer.json()["message"])


async def test_bad_prune_selector_is_refused_by_the_store(client: httpx.AsyncClient) -> None:
    answer = await apply(client, items=[], prune={"selector": "a in (b"})
    assert answer.status_code == 400


async def test_apply_only_accepts_post(client: httpx.AsyncClient) -> None:
    answer = await client.get(APPLY)
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"
