"""The HTTP client's verbs against a real server: typed errors rebuilt from Status bodies."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from corral.api.errors import AlreadyExists, BadRequest, Conflict, Invalid, NotFound
from corral.client import CorralClient, resolve_connection

from .helpers import ServerProcess


@pytest.fixture
def client(server: ServerProcess) -> Iterator[CorralClient]:
    connection = resolve_connection(state_dir=server.state_dir)
    with CorralClient(connection.url, connection.token) as opened:
        yield opened


def model(name: str) -> dict[str, object]:
    return {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Model",
        "metadata": {"name": name, "labels": {"suite": "client"}},
        "spec": {"source": f"file:///models/{name}.gguf"},
    }


def test_create_get_patch_list_and_delete(client: CorralClient) -> None:
    created = client.create(model("verbs"))
    assert created["metadata"]["generation"] == 1
    with pytest.raises(AlreadyExists):
        client.create(model("verbs"))

    patched = client.patch("mdl", "verbs", {"metadata": {"labels": {"tier": "gold"}}})
    assert patched["metadata"]["labels"] == {"suite": "client", "tier": "gold"}
    assert client.get("models", "verbs")["metadata"]["labels"]["tier"] == "gold"

    listed = client.list("Model", label_selector="tier=gold")
    assert [item["metadata"]["name"] for item in listed.items] == ["verbs"]
    assert listed.resource_version >= int(patched["metadata"]["resourceVersion"])

    with pytest.raises(Conflict):
        client.delete("Model", "verbs", resource_version=created["metadata"]["resourceVersion"])
    client.delete("Model", "verbs")
    with pytest.raises(NotFound):
        client.get("Model", "verbs")


def test_invalid_objects_come_back_as_invalid_with_causes(client: CorralClient) -> None:
    broken = model("broken")
    broken["spec"] = {"source": "ftp://nowhere", "surprise": True}
    with pytest.raises(Invalid) as error:
        client.create(broken)
    assert {cause.path for cause in error.value.causes} == {"spec.source", "spec.surprise"}


def test_bad_selector_and_unknown_kind_are_bad_requests(client: CorralClient) -> None:
    with pytest.raises(BadRequest):
        client.list("Model", label_selector="a in (")
    with pytest.raises(BadRequest, match="unknown kind 'widgets'"):
        client.get("widgets", "x")


def test_watch_replays_after_a_resource_version(client: CorralClient) -> None:
    since = client.list("Model").resource_version
    client.create(model("watched-by-client"))
    client.patch("Model", "watched-by-client", {"spec": {"contextLength": 2048}})
    events = client.watch("Model", resource_version=since)
    try:
        first = next(events)
        # Controllers may write status in between: skip to the patched spec.
        patched = next(e for e in events if e["object"]["spec"].get("contextLength") == 2048)
    finally:
        events.close()
    assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "watched-by-client")
    assert patched["type"] == "MODIFIED"


def test_apply_dry_run_reports_without_writing(client: CorralClient) -> None:
    outcomes = client.apply([model("apply-by-client")], locations=["inline[0]"], dry_run=True)
    assert [(o["name"], o["action"]) for o in outcomes] == [("apply-by-client", "created")]
    with pytest.raises(NotFound):
        client.get("Model", "apply-by-client")
