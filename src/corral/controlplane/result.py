"""What a reconcile returns, and the error that tells the workqueue to stop retrying.

A reconciler is ``async def reconcile(key: ObjectKey) -> Result``. The key names one object
(kind, namespace, name) and nothing more: the reconciler re-reads state every time, so a missed,
repeated or merged event never leads it astray (controller-runtime's rule). The workqueue
(:mod:`corral.controlplane.loop`) is the only place that turns the outcome into a requeue:

- ``Result()``: done; the key's backoff is reset.
- ``Result(requeue_after=s)``: done for now; look again in ``s`` seconds (backoff reset).
- any exception: retry with per-key exponential backoff.
- :class:`TerminalError`: record it and stop retrying until the next event for the key.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from corral.api.objects import ObjectKey


@dataclass(frozen=True)
class Result:
    requeue_after: float | None = None
    """Seconds until the key is reconciled again; None: only when an event arrives."""

    def __post_init__(self) -> None:
        after = self.requeue_after
        if after is not None and (
            isinstance(after, bool)
            or not isinstance(after, int | float)
            or not math.isfinite(after)
            or after < 0
        ):
            raise ValueError(
                f"Result.requeue_after must be a finite number of seconds >= 0 (got {after!r})"
            )


class TerminalError(Exception):
    """The reconcile cannot succeed by retrying (bad spec, missing permission): do not retry.

    The workqueue counts it, logs it and forgets the key's backoff; the key is reconciled again
    only when a new event arrives for it. Reconcilers usually also record the reason in a
    status condition so users see it.
    """


Reconciler = Callable[[ObjectKey], Awaitable[Result]]
"""``async def reconcile(key) -> Result``: a function or a bound method."""
