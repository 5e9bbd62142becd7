"""The pending claims, in the order the scheduler tries them: priority, then fair share.

Higher ``spec.priority`` goes first. Among equal priorities the claim whose queue holds the
smallest dominant share of its quota goes first (a team far below its nominal amount is served
before one that is borrowing), then the older claim, then the key, so the order is total and
the same on every scheduler. Ordering is best effort FIFO (Kueue's BestEffortFIFO): a claim
that cannot be placed does not block the ones behind it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from corral.devices.demand import Demand
from corral.devices.quotas import QuotaBook


@dataclass(eq=False)
class ClaimQueue:
    pending: dict[str, Demand] = field(default_factory=dict)

    def push(self, demand: Demand) -> None:
        self.pending[demand.key] = demand

    def remove(self, key: str) -> Demand | None:
        return self.pending.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self.pending

    def __len__(self) -> int:
        return len(self.pending)

    def ordered(self, book: QuotaBook) -> list[Demand]:
        shares: dict[str, float] = {}

        def rank(demand: Demand) -> tuple[int, float, str, str]:
            share = shares.get(demand.queue)
            if share is None:
                share = shares[demand.queue] = book.share(demand.queue)
            return (-demand.priority, share, demand.created, demand.key)

        return sorted(self.pending.values(), key=rank)

    def __iter__(self) -> Iterator[Demand]:
        return iter(self.pending.values())
