"""Watch replays exactly what a watcher missed, then follows; compaction forces a relist (Gone)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from corral.api.errors import BadRequest, Gone
from corral.store import Store

WRITER = Path(__file__).with_name("writer_process.py")


async def test_watch_from_a_version_replays_missed_events_in_order_then_follows_live(
    store: Store, make: Any, events: Any
):
    created = await store.create(make("a"))
    start = int(created["metadata"]["resourceVersion"])
    await store.update({**created, "spec": {"replicas": 2}})
    await store.create(make("b"))
    await store.delete("Endpoint", "default", "a")
    async with contextlib.aclosing(store.watch("Endpoint", resource_version=start)) as watch:
        replayed = await events(watch, 3)
        assert [(e.type, e.object["metadata"]["name"]) for e in replayed] == [
            ("MODIFIED", "a"),
            ("ADDED", "b"),
            ("DELETED", "a"),
        ]
        assert [e.resource_version for e in replayed] == [start + 1, start + 2, start + 3]
        assert all(
            e.object["metadata"]["resourceVersion"] == str(e.resource_version) for e in replayed
        )
        live = asyncio.create_task(events(watch, 1))
        await asyncio.sleep(0.05)
        await store.create(make("c"))
        (event,) = await live
        assert (event.type, event.object["metadata"]["name"]) == ("ADDED", "c")


async def test_watch_from_now_sees_only_new_events(store: Store, make: Any, events: Any):
    await store.create(make("old"))
    async with contextlib.aclosing(store.watch("Endpoint")) as watch:
        first = asyncio.create_task(events(watch, 1))
        await asyncio.sleep(0.05)
        await store.create(make("new"))
        (event,) = await first
        assert event.object["metadata"]["name"] == "new"


async def test_restarted_watcher_sees_no_gap(store: Store, make: Any, events: Any):
    await store.create(make("a"))
    seen: list[int] = []
    async with contextlib.aclosing(store.watch("Endpoint", resource_version=0)) as watch:
        seen += [e.resource_version for e in await events(watch, 1)]
    # While nobody watches, more writes land; the restarted watcher resumes from its last seen.
    for name in ("b", "c", "d"):
        await store.create(make(name))
    async with contextlib.aclosing(store.watch("Endpoint", resource_version=seen[-1])) as watch:
        seen += [e.resource_version for e in await events(watch, 3)]
    assert seen == list(range(seen[0], seen[0] + 4))


async def test_watch_filters_by_kind_and_namespace(store: Store, make: Any, events: Any):
    start = await store.current_resource_version()
    await store.create(make("other-ns", namespace="prod"))
    await store.create({"kind": "Lease", "metadata": {"name": "x", "namespace": "default"}})
    await store.create(make("mine"))
    watch = store.watch("Endpoint", "default", resource_version=start)
    async with contextlib.aclosing(watch):
        (event,) = await events(watch, 1)
        assert event.object["metadata"]["name"] == "mine"
    async with contextlib.aclosing(store.watch(resource_version=start)) as everything:
        assert [e.object["kind"] for e in await events(everything, 3)] == [
            "Endpoint",
            "Lease",
            "Endpoint",
        ]


async def test_watch_with_selector_sees_objects_enter_and_leave_it(
    store: Store, make: Any, events: Any
):
    start = await store.current_resource_version()
    obj = await store.create(make("a", labels={"team": "search"}))
    await store.create(make("b", labels={"team": "ads"}))
    moved = await store.update({**obj, "metadata": {**obj["metadata"], "labels": {"team": "ads"}}})
    await store.update({**moved, "metadata": {**moved["metadata"], "labels": {"team": "search"}}})
    await store.delete("Endpoint", "default", "a")
    watch = store.watch("Endpoint", resource_version=start, label_selector="team=search")
    async with contextlib.aclosing(watch):
        seen = await events(watch, 4)
    assert [(e.type, e.object["metadata"]["name"]) for e in seen] == [
        ("ADDED", "a"),
        ("DELETED", "a"),  # stopped matching
        ("ADDED", "a"),  # matches again
        ("DELETED", "a"),
    ]


async def test_invalid_selector_on_watch_is_bad_request(store: Store):
    with pytest.raises(BadRequest, match="position"):
        store.watch("Endpoint", label_selector="team in search")


async def test_watch_from_a_compacted_version_is_gone(target: Any, make: Any, events: Any):
    store = await target.open(event_retention=5)
    first = await store.create(make("a"))
    for replicas in range(2, 12):
        await store.update(make("a", replicas=replicas))
    head = await store.current_resource_version()
    with pytest.raises(Gone, match="compacted"):
        await anext(
            store.watch("Endpoint", resource_version=int(first["metadata"]["resourceVersion"]))
        )
    # The oldest retained window still replays completely.
    async with contextlib.aclosing(store.watch("Endpoint", resource_version=head - 5)) as watch:
        assert [e.resource_version for e in await events(watch, 5)] == list(
            range(head - 4, head + 1)
        )


async def test_watcher_that_falls_behind_compaction_gets_gone(target: Any, make: Any, events: Any):
    store = await target.open(event_retention=3)
    start = await store.current_resource_version()
    watch = store.watch("Endpoint", resource_version=start)
    await store.create(make("a"))
    async with contextlib.aclosing(watch):
        await events(watch, 1)
        for replicas in range(2, 10):
            await store.update(make("a", replicas=replicas))
        with pytest.raises(Gone):
            await asyncio.wait_for(anext(watch), 10)


async def test_watch_from_a_version_newer_than_the_store_is_gone(store: Store, make: Any):
    await store.create(make("a"))
    with pytest.raises(Gone, match="newer"):
        await anext(store.watch(resource_version=10_000))


async def test_another_store_instance_writes_and_this_watcher_sees_it(
    target: Any, make: Any, events: Any
):
    # For SQLite the other writer is seen by polling the file; Postgres delivers via NOTIFY.
    watcher_store = await target.open(poll_interval=0.05)
    writer_store = await target.open()
    async with contextlib.aclosing(watcher_store.watch("Endpoint")) as watch:
        pending = asyncio.create_task(events(watch, 2))
        await asyncio.sleep(0.1)
        await writer_store.create(make("x"))
        await writer_store.create(make("y"))
        assert [e.object["metadata"]["name"] for e in await pending] == ["x", "y"]


@pytest.mark.postgres
async def test_postgres_watcher_sees_commits_of_another_process(postgres_target: Any, events: Any):
    target = postgres_target
    store = await target.open(poll_interval=60)  # NOTIFY, not polling, must deliver
    start = await store.current_resource_version()
    async with contextlib.aclosing(store.watch("Endpoint", resource_version=start)) as watch:
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(WRITER), target.url, "5", stdout=asyncio.subprocess.PIPE
        )
        output, _ = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0
        acknowledged = [int(line.split()[1]) for line in output.decode().splitlines()]
        seen = await events(watch, 5)
    assert [e.resource_version for e in seen] == acknowledged


@pytest.mark.postgres
async def test_postgres_watch_survives_losing_its_listen_connection(
    postgres_target: Any, make: Any, events: Any
):
    target = postgres_target
    store = await target.open(poll_interval=60)
    async with contextlib.aclosing(store.watch("Endpoint")) as watch:
        first = asyncio.create_task(events(watch, 1))
        await asyncio.sleep(0.05)
        await store.create(make("before"))
        await first
        admin = await asyncpg.connect(target.url)
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'corral-watch' AND datname = current_database()"
            )
            assert killed == 1
            for name in ("during-1", "during-2"):
                await store.create(make(name))
        finally:
            await admin.close()
        seen = await events(watch, 2)
        assert [e.object["metadata"]["name"] for e in seen] == ["during-1", "during-2"]
        after = asyncio.create_task(events(watch, 1))
        await asyncio.sleep(0.05)
        await store.create(make("after"))
        assert (await after)[0].object["metadata"]["name"] == "after"


async def test_closing_the_store_ends_its_watches(target: Any, make: Any, events: Any):
    store = await target.open()
    watch = store.watch("Endpoint")
    pending = asyncio.create_task(events(watch, 1))
    await asyncio.sleep(0.05)
    await store.create(make("a"))
    await pending
    waiting = asyncio.create_task(anext(watch, None))
    await asyncio.sleep(0.05)
    await store.close()
    assert await asyncio.wait_for(waiting, 10) is None


async def test_concurrent_writers_never_make_a_watcher_skip_a_version(
    target: Any, make: Any, events: Any
):
    watching = await target.open(poll_interval=0.05)
    writers = [watching, await target.open()]
    start = await watching.current_resource_version()

    async def write(writer: int) -> list[int]:
        store = writers[writer % 2]
        created = [await store.create(make(f"w{writer}-{i}")) for i in range(12)]
        return [int(obj["metadata"]["resourceVersion"]) for obj in created]

    async with contextlib.aclosing(watching.watch("Endpoint", resource_version=start)) as watch:
        collecting = asyncio.create_task(events(watch, 72))
        acknowledged = sorted(
            rv for rvs in await asyncio.gather(*(write(w) for w in range(6))) for rv in rvs
        )
        seen = [event.resource_version for event in await collecting]
    assert seen == acknowledged == list(range(start + 1, start + 73))
