"""Live event streams of sessions, for SSE consumers of the sessions API.

A subscriber gets the :class:`~corral.agents.events.StreamEvent` s its session publishes from
the moment it subscribed; the stream ends after a ``state`` event whose state is not
``active`` (the session passivated or ended), so a ``POST …/messages`` answer ends when the
turn does. Nothing is kept for sessions without subscribers: publishing to nobody is one dict
lookup, so the hot path of a session nobody watches pays nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection

from corral.agents.events import StreamEvent


class Subscription:
    """An async iterator of one session's events; ``close()`` (or leaving ``async with``)
    unsubscribes."""

    def __init__(self, hub: StreamHub, session_id: str) -> None:
        self._hub = hub
        self.session_id = session_id
        self._queue: asyncio.Queue[StreamEvent | None] = asyncio.Queue()
        self._done = False

    def put(self, event: StreamEvent | None) -> None:
        self._queue.put_nowait(event)

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self

    async def __anext__(self) -> StreamEvent:
        if self._done:
            raise StopAsyncIteration
        event = await self._queue.get()
        if event is None:
            self.close()
            raise StopAsyncIteration
        if event.type == "state" and event.data.get("state") != "active":
            self.close()
        return event

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._hub.drop(self)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class StreamHub:
    def __init__(self) -> None:
        self._subscribers: dict[str, list[Subscription]] = {}

    @property
    def watched_ids(self) -> Collection[str]:
        """The ids of sessions with subscribers, live (the same object for the hub's life):
        ``id in hub.watched_ids`` is ``hub.watched(id)`` without the call."""
        return self._subscribers.keys()

    def subscribe(self, session_id: str) -> Subscription:
        subscription = Subscription(self, session_id)
        self._subscribers.setdefault(session_id, []).append(subscription)
        return subscription

    def watched(self, session_id: str) -> bool:
        return session_id in self._subscribers

    def publish(self, event: StreamEvent) -> None:
        for subscription in self._subscribers.get(event.session_id, ()):
            subscription.put(event)

    def drop(self, subscription: Subscription) -> None:
        subscribers = self._subscribers.get(subscription.session_id)
        if subscribers and subscription in subscribers:
            subscribers.remove(subscription)
            if not subscribers:
                del self._subscribers[subscription.session_id]

    def close_all(self) -> None:
        for subscribers in list(self._subscribers.values()):
            for subscription in list(subscribers):
                subscription.put(None)
