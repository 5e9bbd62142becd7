"""Lists: ordered by namespace and name, filtered by Kubernetes label selectors, paged with
continue tokens that always resume exactly where the last page ended."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from corral.api.errors import BadRequest
from corral.store import Store, open_store, parse_selector


async def page_all(store: Store, **arguments: Any) -> tuple[list[str], list[int], int]:
    names: list[str] = []
    versions: list[int] = []
    token = None
    pages = 0
    while True:
        page = await store.list("Endpoint", continue_token=token, **arguments)
        pages += 1
        names += [f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in page.items]
        versions.append(page.resource_version)
        token = page.continue_token
        if token is None:
            return names, versions, pages


async def test_list_is_ordered_and_filters_by_namespace(store: Store, make: Any):
    for namespace, name in [("prod", "b"), ("default", "z"), ("prod", "a"), ("default", "a-b")]:
        await store.create(make(name, namespace=namespace))
    everything = await store.list("Endpoint")
    assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in everything.items] == [
        ("default", "a-b"),
        ("default", "z"),
        ("prod", "a"),
        ("prod", "b"),
    ]
    assert everything.resource_version == await store.current_resource_version()
    assert everything.continue_token is None
    prod = await store.list("Endpoint", "prod")
    assert [o["metadata"]["name"] for o in prod.items] == ["a", "b"]
    assert (await store.list("Lease")).items == []


async def test_paging_visits_every_object_once_at_one_resource_version(store: Store, make: Any):
    expected = []
    for index in range(130):
        namespace = ("default", "prod", "team-a")[index % 3]
        await store.create(make(f"obj-{index:03d}", namespace=namespace))
        expected.append(f"{namespace}/obj-{index:03d}")
    names, versions, pages = await page_all(store, limit=25)
    assert names == sorted(expected)
    assert pages == 6  # 25 * 5 = 125, then 5: no empty trailing page
    assert len(set(versions)) == 1


async def test_paging_with_writes_between_pages_reports_the_first_version(store: Store, make: Any):
    for index in range(10):
        await store.create(make(f"o{index}"))
    first = await store.list("Endpoint", limit=4)
    await store.create(make("o5a"))  # lands after the cursor
    await store.delete("Endpoint", "default", "o1")  # before the cursor: not revisited
    rest, versions, _ = await page_all_from(store, first.continue_token, limit=4)
    assert versions == [first.resource_version] * len(versions)
    seen = [o["metadata"]["name"] for o in first.items] + rest
    assert seen == ["o0", "o1", "o2", "o3", "o4", "o5", "o5a", "o6", "o7", "o8", "o9"]


async def page_all_from(
    store: Store, token: str | None, **arguments: Any
) -> tuple[list[str], list[int], int]:
    names: list[str] = []
    versions: list[int] = []
    pages = 0
    while token is not None:
        page = await store.list("Endpoint", continue_token=token, **arguments)
        pages += 1
        names += [o["metadata"]["name"] for o in page.items]
        versions.append(page.resource_version)
        token = page.continue_token
    return names, versions, pages


async def test_label_selectors_filter_lists(store: Store, make: Any):
    await store.create(make("a", labels={"team": "search", "tier": "gpu"}))
    await store.create(make("b", labels={"team": "ads"}))
    await store.create(make("c", labels={"team": "search", "old": ""}))
    await store.create(make("d"))

    async def names(selector: str) -> list[str]:
        listed = await store.list("Endpoint", label_selector=selector)
        return [o["metadata"]["name"] for o in listed.items]

    assert await names("team=search") == ["a", "c"]
    assert await names("team==search,tier=gpu") == ["a"]
    assert await names("team!=search") == ["b", "d"]  # != matches objects without the label
    assert await names("team in (ads, search)") == ["a", "b", "c"]
    assert await names("team notin (search)") == ["b", "d"]
    assert await names("tier") == ["a"]
    assert await names("!team") == ["d"]
    assert await names("old=") == ["c"]
    assert await names("") == ["a", "b", "c", "d"]


async def test_selector_with_paging_fills_pages_with_matches(store: Store, make: Any):
    for index in range(60):
        await store.create(make(f"o{index:02d}", labels={"even": str(index % 2 == 0).lower()}))
    names, _, pages = await page_all(store, limit=7, label_selector="even=true")
    assert names == [f"default/o{i:02d}" for i in range(0, 60, 2)]
    assert pages == 5


async def test_garbled_or_foreign_continue_tokens_are_bad_request(store: Store, make: Any):
    for index in range(5):
        await store.create(make(f"o{index}"))
    page = await store.list("Endpoint", limit=2)
    assert page.continue_token is not None
    with pytest.raises(BadRequest, match="garbled"):
        await store.list("Endpoint", continue_token="not-a-token!")
    with pytest.raises(BadRequest, match="garbled"):
        await store.list("Endpoint", continue_token=base64.urlsafe_b64encode(b"[1,2]").decode())
    with pytest.raises(BadRequest, match="another list"):
        await store.list("Endpoint", "prod", continue_token=page.continue_token)
    with pytest.raises(BadRequest, match="another list"):
        await store.list("Endpoint", label_selector="a=b", continue_token=page.continue_token)


async def test_continue_token_from_another_store_is_bad_request(tmp_path: Any, make: Any):
    busy = await open_store(f"sqlite:///{tmp_path}/busy.db")
    fresh = await open_store(f"sqlite:///{tmp_path}/fresh.db")
    try:
        for index in range(5):
            await busy.create(make(f"o{index}"))
        page = await busy.list("Endpoint", limit=2)
        # The token names resourceVersion 5; a store that never got that far refuses it.
        with pytest.raises(BadRequest, match="another store"):
            await fresh.list("Endpoint", limit=2, continue_token=page.continue_token)
    finally:
        await busy.close()
        await fresh.close()


async def test_invalid_selectors_and_limits_are_bad_request(store: Store):
    with pytest.raises(BadRequest, match="position 8"):
        await store.list("Endpoint", label_selector="team in search")
    with pytest.raises(BadRequest, match="limit"):
        await store.list("Endpoint", limit=-1)


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("a=b,", "expected a label key at position 4"),
        ("a in x", "expected '(' opening the value set at position 5"),
        ("a in ()", "value set at position 5 is empty"),
        ("=b", "expected a label key at position 0"),
        ("a b", "position 2, found 'b'"),
        ("a=b)", "expected ',' between requirements at position 3"),
        ("a?b", "unexpected character '?' at position 1"),
        ("!", "expected a label key at position 1, found end of selector"),
        ("-a=b", "position 0"),
        ("a=" + "v" * 64, "label value"),
    ],
)
def test_selector_errors_name_the_position(selector: str, message: str):
    with pytest.raises(BadRequest) as caught:
        parse_selector(selector)
    assert message in str(caught.value)
    assert repr(selector) in str(caught.value)


def test_selector_matching_semantics():
    selector = parse_selector("env in (dev,prod), team!=ads, !legacy, app")
    assert selector.matches({"env": "dev", "app": "x"})
    assert selector.matches({"env": "prod", "team": "search", "app": ""})
    assert not selector.matches({"env": "dev", "team": "ads", "app": "x"})
    assert not selector.matches({"env": "dev", "legacy": "1", "app": "x"})
    assert not selector.matches({"env": "dev"})
    assert not selector.matches({"env": "qa", "app": "x"})
    assert parse_selector("").matches(None)
