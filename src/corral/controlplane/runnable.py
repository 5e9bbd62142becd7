"""What the Manager runs: anything with ``async def start(stop)``, plus a helper to write one.

A runnable runs until ``stop`` is set and then returns promptly, releasing what it holds. The
manager may also cancel it (leadership lost: stop at once), so cleanup belongs in ``finally``.
Runnables that act on the world (controllers, the garbage collector) need leadership when
leader election is on; caches (informers) run in every replica so a new leader starts warm.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Runnable(Protocol):
    async def start(self, stop: asyncio.Event) -> None: ...


def needs_leader_election(runnable: object) -> bool:
    """A runnable's ``needs_leader_election`` attribute; True when it has none (the safe side)."""
    return bool(getattr(runnable, "needs_leader_election", True))


async def run_until_stopped(work: Coroutine[Any, Any, None], stop: asyncio.Event) -> None:
    """Run ``work`` until it ends or ``stop`` is set (then cancel it); re-raise its error."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        task.cancel()
        stopper.cancel()
        await asyncio.gather(task, stopper, return_exceptions=True)
    error = None if task.cancelled() else task.exception()
    if error is not None:
        raise error
