"""The session journal store keeps its contract on SQLite and Postgres: exactly-once appends,
group commit, lease fencing and claims, acquiring free and lapsed sessions, keyset listing,
retention GC."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from corral.store.session_journal import SessionConflict


def ev(session_id: str, seq: int, kind: str = "user_message") -> tuple[str, int, str, bytes, float]:
    return (session_id, seq, kind, b'{"text":"x"}', time.time())


async def new(
    journal: Any,
    session_id: str,
    *,
    owner: str | None = "w1",
    state: str = "active",
    agent: str = "helper",
) -> None:
    await journal.create(
        session_id,
        "default",
        agent,
        [ev(session_id, 1, "session_created")],
        state=state,
        owner=owner,
        lease_seconds=30,
        now=time.time(),
    )


async def test_appends_are_exactly_once_per_sequence_number(journal: Any) -> None:
    await new(journal, "s1")
    await journal.append("s1", [ev("s1", 2), ev("s1", 3)], owner="w1")
    with pytest.raises(SessionConflict, match="sequence 3 is taken"):
        await journal.append("s1", [ev("s1", 3)], owner="w1")
    events = await journal.read_events("s1")
    assert [e.seq for e in events] == [1, 2, 3]
    assert [e.seq for e in await journal.read_events("s1", after_seq=2)] == [3]


async def test_a_taken_sequence_fails_only_its_session_in_a_shared_commit(journal: Any) -> None:
    await new(journal, "a")
    await new(journal, "b")
    await journal.append("a", [ev("a", 2)], owner="w1")
    results = await asyncio.gather(
        journal.append("b", [ev("b", 2)], owner="w1"),
        journal.append("a", [ev("a", 2)], owner="w1"),  # taken
        journal.append("a", [ev("a", 3)], owner="w1"),  # would leave a gap after the failure
        journal.append("b", [ev("b", 3)], owner="w1"),
        return_exceptions=True,
    )
    assert results[0] is None
    assert results[3] is None
    assert isinstance(results[1], SessionConflict)
    assert isinstance(results[2], SessionConflict)
    assert [e.seq for e in await journal.read_events("a")] == [1, 2]
    assert [e.seq for e in await journal.read_events("b")] == [1, 2, 3]


async def test_concurrent_appends_share_commits(journal: Any) -> None:
    ids = [f"s{i:03}" for i in range(200)]
    for session_id in ids:
        await new(journal, session_id)
    before = journal.committer.batches
    await asyncio.gather(*(journal.append(i, [ev(i, 2)], owner="w1") for i in ids))
    batches = journal.committer.batches - before
    assert batches < 20, f"200 concurrent appends took {batches} commits"
    assert [len(await journal.read_events(i)) for i in ids] == [2] * 200


async def test_an_append_is_fenced_by_the_lease(journal: Any) -> None:
    await new(journal, "s1", owner="w1")
    with pytest.raises(SessionConflict, match="leased by another worker"):
        await journal.append("s1", [ev("s1", 2)], owner="w2")
    assert [e.seq for e in await journal.read_events("s1")] == [1]


async def test_passivation_releases_and_a_claim_activates(journal: Any) -> None:
    await new(journal, "s1")
    await journal.append(
        "s1",
        [ev("s1", 2, "final")],
        owner="w1",
        state="waiting_input",
        release=True,
        wake_at=time.time() + 3600,
    )
    row = await journal.get("s1")
    assert (row.state, row.owner, row.lease_expires) == ("waiting_input", None, None)
    await journal.append(
        "s1", [ev("s1", 3)], owner="w2", state="active", claim=("waiting_input",), lease_seconds=30
    )
    row = await journal.get("s1")
    assert (row.state, row.owner, row.wake_at) == ("active", "w2", None)
    with pytest.raises(SessionConflict, match="cannot take the session"):
        await journal.append(
            "s1",
            [ev("s1", 4)],
            owner="w3",
            state="active",
            claim=("waiting_input",),
            lease_seconds=30,
        )


async def test_acquire_takes_unleased_active_sessions_and_due_wakeups(journal: Any) -> None:
    await new(journal, "free", owner=None)
    await new(journal, "waiting", owner=None, state="waiting_approval")
    await new(journal, "mine", owner="w1")
    await journal.append("waiting", [ev("waiting", 2)], wake_at=time.time() - 1)
    got = await journal.acquire("w1", lease_seconds=30, limit=10, now=time.time())
    assert sorted(r.id for r in got) == ["free", "waiting"]
    assert all(r.owner == "w1" for r in got)
    assert await journal.acquire("w1", lease_seconds=30, limit=10, now=time.time()) == []
    assert await journal.renew("w1", lease_seconds=30) == {"free", "waiting", "mine"}
    await journal.release("w1", ["free"])
    assert (await journal.get("free")).owner is None


async def test_lapsed_leases_are_taken_over(journal: Any) -> None:
    await journal.create(
        "s1",
        "default",
        "helper",
        [ev("s1", 1)],
        state="active",
        owner="dead",
        lease_seconds=0.01,
        now=time.time(),
    )
    await asyncio.sleep(0.05)
    got = await journal.acquire("w2", lease_seconds=30, limit=10, now=time.time())
    assert [r.id for r in got] == ["s1"]
    assert await journal.renew("dead", lease_seconds=30) == set()


async def test_listing_by_agent_pages_newest_first(journal: Any) -> None:
    for i in range(25):
        await new(journal, f"s{i:03}", owner=None, state="completed" if i % 2 else "waiting_input")
    await new(journal, "zzz", owner=None, agent="other")
    seen: list[str] = []
    cursor = None
    while True:
        page, cursor = await journal.list_sessions("default", "helper", limit=10, after=cursor)
        seen += [row.id for row in page]
        if cursor is None:
            break
    assert seen == [f"s{i:03}" for i in reversed(range(25))]
    done, _ = await journal.list_sessions("default", "helper", limit=100, state="completed")
    assert len(done) == 12
    with pytest.raises(ValueError, match=r"1\.\.1000"):
        await journal.list_sessions("default", "helper", limit=0)


async def test_gc_removes_old_ended_sessions_with_their_events(journal: Any) -> None:
    await new(journal, "old", owner=None, state="completed")
    await new(journal, "live", owner=None, state="waiting_input")
    assert await journal.gc(before=time.time() + 1, states=["completed"]) == 1
    assert await journal.get("old") is None
    assert await journal.read_events("old") == []
    assert await journal.get("live") is not None


async def test_a_taken_session_id_is_a_conflict(journal: Any) -> None:
    await new(journal, "s1")
    with pytest.raises(SessionConflict, match="exists"):
        await new(journal, "s1")


async def test_sqlite_checkpoints_its_wal_less_often_than_sqlite_would(tmp_path: Any) -> None:
    """Fewer, larger checkpoints (a live session's pages change many times between two)."""
    from corral.store.session_journal_sqlite import WAL_AUTOCHECKPOINT, SqliteSessionJournal

    journal = await SqliteSessionJournal.open(str(tmp_path / "s.db"))
    try:
        pages = await journal._on_thread(
            lambda: journal._writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        )
        assert pages == WAL_AUTOCHECKPOINT > 1_000
    finally:
        await journal.close()
