"""The store refuses what it cannot store faithfully, saying what and where, and writes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from corral.api.errors import BadRequest, Invalid
from corral.api.objects import MAX_OBJECT_BYTES
from corral.store import Store


async def test_objects_over_one_mib_are_refused_on_every_write_path(store: Store, make: Any):
    with pytest.raises(Invalid, match=r"Endpoint/default/big.*1 MiB"):
        await store.create(make("big", blob="x" * MAX_OBJECT_BYTES))
    created = await store.create(make("grows"))
    with pytest.raises(Invalid, match="1 MiB"):
        await store.update({**created, "spec": {"blob": "x" * MAX_OBJECT_BYTES}})
    with pytest.raises(Invalid, match="1 MiB"):
        await store.update_status({**created, "status": {"log": "x" * MAX_OBJECT_BYTES}})
    assert await store.get("Endpoint", "default", "grows") == created
    assert await store.current_resource_version() == 1


async def test_an_object_just_under_the_limit_is_stored(store: Store, make: Any):
    stored = await store.create(make("fits", blob="x" * (MAX_OBJECT_BYTES - 1024)))
    assert len(stored["spec"]["blob"]) == MAX_OBJECT_BYTES - 1024
    assert await store.get("Endpoint", "default", "fits") == stored


async def test_missing_kind_or_name_is_invalid_with_field_paths(store: Store):
    with pytest.raises(Invalid) as caught:
        await store.create({"metadata": {}, "spec": {}})
    assert {cause.path for cause in caught.value.causes} == {"kind", "metadata.name"}


async def test_non_json_values_are_invalid(store: Store, make: Any):
    obj = make("odd")
    obj["spec"]["when"] = {1, 2}
    with pytest.raises(Invalid, match="not JSON-serialisable"):
        await store.create(obj)


async def test_a_non_numeric_resource_version_is_refused(store: Store, make: Any):
    await store.create(make("a"))
    bad = make("a")
    bad["metadata"]["resourceVersion"] = "abc"
    with pytest.raises(Invalid, match="resourceVersion"):
        await store.update(bad)
    with pytest.raises(BadRequest, match="decimal"):
        await store.delete("Endpoint", "default", "a", resource_version="abc")


async def test_malformed_labels_and_finalizers_are_invalid(store: Store, make: Any):
    obj = make("odd")
    obj["metadata"]["labels"] = {"team": 7}
    obj["metadata"]["finalizers"] = "not-a-list"
    with pytest.raises(Invalid) as caught:
        await store.create(obj)
    assert {cause.path for cause in caught.value.causes} == {
        "metadata.labels",
        "metadata.finalizers",
    }
