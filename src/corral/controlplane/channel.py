"""Keys from outside the store: a source a controller's queue can listen to besides informers.

Some changes never pass through the store (a runtime supervisor sees a replica crash, a probe
turns healthy). Whoever notices calls :meth:`KeyChannel.send` with the key to reconcile, and
every running controller that lists the channel in ``Controller(channels=...)`` enqueues it
(controller-runtime's ``source.Channel``). A key sent while no such controller runs (this
replica does not lead, or is starting) is dropped: a controller reconciles every object of its
kind when it starts, so nothing is lost. ``send`` may be called from any thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from corral.api.objects import ObjectKey

KeyReceiver = Callable[[ObjectKey], None]


class KeyChannel:
    def __init__(self) -> None:
        self._receivers: list[tuple[asyncio.AbstractEventLoop, KeyReceiver]] = []

    def send(self, key: ObjectKey) -> None:
        if not isinstance(key, ObjectKey):
            raise TypeError(f"KeyChannel.send needs an ObjectKey (got {key!r})")
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for loop, receive in list(self._receivers):
            if loop is current:
                receive(key)
            elif not loop.is_closed():
                loop.call_soon_threadsafe(receive, key)

    def subscribe(self, receive: KeyReceiver) -> Callable[[], None]:
        """Deliver sent keys to ``receive`` on the running loop; returns the unsubscribe."""
        entry = (asyncio.get_running_loop(), receive)
        self._receivers.append(entry)

        def unsubscribe() -> None:
            if entry in self._receivers:
                self._receivers.remove(entry)

        return unsubscribe
