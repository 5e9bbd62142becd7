"""Cheap one-shot deadlines for the request path: many of them share one event-loop timer.

Every gateway request arms three timeouts (the body read, the replica try, the wait for the
upstream's headers) and almost always disarms them a millisecond later. A loop timer costs about
3 µs to arm and disarm on uvloop, ``asyncio.timeout`` about 5.5 µs: together ~3% of a governed
request's CPU. Here a deadline is an entry in a set keyed by when it is due: arming and disarming
are a set insert and discard, and one loop timer wakes for the earliest due time.

Due times are rounded up to a granularity of 1–2% of the timeout (10 ms × a power of two, at
least 10 ms), so a deadline fires at most that much late and far deadlines share few buckets (a
300 s timeout armed thousands of times a second makes ~60 buckets, not thousands). Never early.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections.abc import Callable

MIN_GRANULARITY_S = 0.01
RELATIVE_GRANULARITY = 0.01


class Deadline:
    """An armed deadline; ``cancel()`` disarms it (harmless after it fired)."""

    __slots__ = ("_bucket", "_callback")

    def __init__(self, bucket: set[Deadline], callback: Callable[[], None]) -> None:
        self._bucket = bucket
        self._callback = callback

    def cancel(self) -> None:
        self._bucket.discard(self)


class _Wheel:
    __slots__ = ("_buckets", "_due", "_loop", "_timer", "_timer_at")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._buckets: dict[float, set[Deadline]] = {}
        self._due: list[float] = []  # a heap of the buckets' due times
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def arm(self, delay: float, callback: Callable[[], None]) -> Deadline:
        granularity = _granularity(delay)
        due = math.ceil((self._loop.time() + delay) / granularity) * granularity
        bucket = self._buckets.get(due)
        if bucket is None:
            bucket = self._buckets[due] = set()
            heapq.heappush(self._due, due)
            if due < self._timer_at:
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = self._loop.call_at(due, self._fire)
                self._timer_at = due
        deadline = Deadline(bucket, callback)
        bucket.add(deadline)
        return deadline

    def _fire(self) -> None:
        self._timer, self._timer_at = None, math.inf
        now = self._loop.time()
        due, buckets = self._due, self._buckets
        while due and due[0] <= now:
            for deadline in list(buckets.pop(heapq.heappop(due))):
                deadline._callback()
        if due:
            self._timer_at = due[0]
            self._timer = self._loop.call_at(due[0], self._fire)


def _granularity(delay: float) -> float:
    """The smallest of 10 ms × 2**k (k >= 0) that is at least 1% of ``delay``: a few fixed
    steps, so deadlines of about the same length land in the same buckets."""
    wanted = delay * RELATIVE_GRANULARITY
    if wanted <= MIN_GRANULARITY_S:
        return MIN_GRANULARITY_S
    return MIN_GRANULARITY_S * float(2 ** math.ceil(math.log2(wanted / MIN_GRANULARITY_S)))


_wheels: dict[asyncio.AbstractEventLoop, _Wheel] = {}


def arm(delay: float, callback: Callable[[], None]) -> Deadline:
    """Call ``callback`` once, ``delay`` seconds from now (rounded up, see the module doc),
    unless the returned ``Deadline`` is cancelled first. Must run on an event loop."""
    loop = asyncio.get_running_loop()
    wheel = _wheels.get(loop)
    if wheel is None:
        for stale in [other for other in _wheels if other.is_closed()]:
            del _wheels[stale]
        wheel = _wheels[loop] = _Wheel(loop)
    return wheel.arm(delay, callback)
