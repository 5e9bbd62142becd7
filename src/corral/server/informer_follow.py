"""Run a set of informers until stop, and say once when they have all loaded.

The gateway's configuration feeds (routes, access) each follow several kinds and may only
publish a snapshot once every cache is whole: a route compiled before its Secret arrived, or a
key index built before its Teams, would briefly refuse what is valid.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from corral.controlplane import Informer


async def follow_informers(
    informers: Sequence[Informer], stop: asyncio.Event, on_synced: Callable[[], None]
) -> None:
    """Run ``informers`` until ``stop`` is set; call ``on_synced`` once all have synced."""
    tasks = [asyncio.create_task(informer.start(stop)) for informer in informers]
    synced = asyncio.ensure_future(
        asyncio.gather(*(informer.wait_for_sync() for informer in informers))
    )
    waits: list[asyncio.Future[Any]] = [synced, *tasks]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if synced.done() and not synced.cancelled():
            on_synced()
        await asyncio.gather(*tasks)
    finally:
        synced.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(synced, *tasks, return_exceptions=True)
