"""The watch loop both backends share: replay the event log after a version, then follow it.

A backend supplies ``read_events(after)``: one consistent read of the log returning the events
after ``after`` (filtered by kind and namespace), how far the read got, and whether more rows
remain; it raises Gone when ``after`` is outside the retained window. The backend wakes watchers
through a :class:`ChangeSignal` right after each commit (SQLite: in-process; Postgres: on
LISTEN/NOTIFY), and a poll interval covers writers the signal cannot see.

Watchers never skip a version: each read starts after the last version scanned (not only the
last one yielded), and versions are dense and committed in order, so "after N" is exactly the
missed suffix. Label selectors follow Kubernetes' watch cache: an object that starts matching
arrives as ADDED, one that stops matching as DELETED.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import orjson

from corral.api.errors import Gone
from corral.store.protocol import EventType, WatchEvent
from corral.store.selectors import LabelSelector
from corral.store.semantics import labels_of


@dataclass(frozen=True)
class EventRow:
    rv: int
    type: EventType
    data: bytes | str  # JSON as the database returns it (SQLite BLOB, Postgres text)
    prev_labels: bytes | str | None


@dataclass(frozen=True)
class EventBatch:
    rows: list[EventRow]
    scanned_to: int
    """Every version up to here has been looked at (rows beyond the kind filter included)."""
    more: bool
    """The batch was cut at its size limit: read again before waiting."""


def check_window(after: int, oldest: int | None, head: int) -> None:
    """Raise Gone unless every event after ``after`` is still in the log."""
    if after > head:
        raise Gone(
            f"resourceVersion {after} is newer than the store's current {head}: "
            "the store was replaced; list again"
        )
    if after < head and (oldest is None or after < oldest - 1):
        retained = f"the oldest retained is {oldest}" if oldest is not None else "none retained"
        raise Gone(
            f"resourceVersion {after} is too old: events were compacted ({retained}); "
            "list again and watch from the list's resourceVersion"
        )


class ChangeSignal:
    """Wakes every waiting watcher; a waiter takes ``current()`` before reading so no wake-up
    between its read and its wait is lost."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def current(self) -> asyncio.Event:
        return self._event

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()


def translate(row: EventRow, selector: LabelSelector | None) -> WatchEvent | None:
    """The event a watcher with ``selector`` sees for ``row``, or None when it sees nothing."""
    obj = orjson.loads(row.data)
    if selector is None:
        return WatchEvent(row.type, obj, row.rv)
    matches_now = selector.matches(labels_of(obj))
    matched_before = row.prev_labels is not None and selector.matches(orjson.loads(row.prev_labels))
    if row.type == "ADDED":
        event_type: EventType | None = "ADDED" if matches_now else None
    elif row.type == "DELETED":
        event_type = "DELETED" if matches_now or matched_before else None
    elif matches_now:
        event_type = "MODIFIED" if matched_before else "ADDED"
    else:
        event_type = "DELETED" if matched_before else None
    return None if event_type is None else WatchEvent(event_type, obj, row.rv)


async def follow(
    read_events: Callable[[int], Awaitable[EventBatch]],
    current_version: Callable[[], Awaitable[int]],
    signal: ChangeSignal,
    is_closed: Callable[[], bool],
    *,
    resource_version: int | None,
    selector: LabelSelector | None,
    poll_interval: float,
) -> AsyncIterator[WatchEvent]:
    """Replay events after ``resource_version`` (None: from now), then follow live ones."""
    last = await current_version() if resource_version is None else resource_version
    while not is_closed():
        wake = signal.current()
        try:
            batch = await read_events(last)
        except Exception:
            if is_closed():
                return  # the store closed under us: the watch simply ends
            raise
        for row in batch.rows:
            event = translate(row, selector)
            if event is not None:
                yield event
        last = max(last, batch.scanned_to)
        if batch.more:
            continue
        if is_closed():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), poll_interval)
