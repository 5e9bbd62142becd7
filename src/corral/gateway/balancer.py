"""Picks the replica for one request: a version by weight, then a replica by the strategy.

The forwarding stage asks ``Balancer.pick`` for a version and a replica address on each try
and brackets the upstream call with ``acquire``/``release``. Versions come from the route
snapshot; the load state (in-flight counts per replica address, round-robin cursors) lives
here, in the process, so it survives route-table swaps.

Version choice deals from a shuffled deck per Endpoint: a deck holds each serving version as
many times as its weight, in random order, so every ``sum(weights)`` requests split exactly by
weight (a 70/30 canary is 70/30 over 100 requests, not 70 ± 9) while which request lands where
stays random, not tied to arrival order. A version whose replicas are all down gives its share
to the others (the deck is rebuilt when the serving set or a weight changes), and a version with
weight 0 never takes traffic. Replica choice per ``spec.routing.strategy``:

- ``least-outstanding``: fewest requests in flight from this process, ties taken in turn;
- ``round-robin``: strictly in turn;
- ``prefix-affinity``: rendezvous hashing on the prompt's first message, so requests that share a
  prefix meet the same replica's KV cache, unless that replica has more than
  ``AFFINITY_SLACK`` requests in flight beyond the least loaded one (then least-outstanding).
"""

from __future__ import annotations

import random as _random
import zlib
from bisect import bisect_right
from collections.abc import Callable, Collection, Mapping
from itertools import accumulate
from typing import Any

import orjson

from corral.gateway.routes import EndpointRoute, VersionRoute

AFFINITY_SLACK = 2
_MAX_DECKS = 4096
_AFFINITY_KEY_CHARS = 1024


class Balancer:
    """Load state of this gateway process; ``random`` is injectable for deterministic tests."""

    __slots__ = ("_cursors", "_decks", "_random", "in_flight")

    def __init__(self, random: Callable[[], float] = _random.random) -> None:
        self._random = random
        self._cursors: dict[str, int] = {}
        self._decks: dict[tuple[tuple[str, int], ...], list[int]] = {}
        self.in_flight: dict[str, int] = {}

    def choose(
        self, endpoint: EndpointRoute, affinity: int | None = None, exclude: Collection[str] = ()
    ) -> str | None:
        """The address for the next try, or None when no routable replica is left."""
        picked = self.pick(endpoint, affinity, exclude)
        return None if picked is None else picked[1]

    def pick(
        self, endpoint: EndpointRoute, affinity: int | None = None, exclude: Collection[str] = ()
    ) -> tuple[VersionRoute, str] | None:
        """The version and replica address for the next try, or None when none is left."""
        if exclude:
            return self._pick_excluding(endpoint, affinity, exclude)
        serving = endpoint.serving
        if not serving:
            return None
        version = serving[0] if len(serving) == 1 else self._weighted(serving)
        return version, self._replica(version, version.addresses, endpoint.strategy, affinity)

    def acquire(self, address: str) -> None:
        self.in_flight[address] = self.in_flight.get(address, 0) + 1

    def release(self, address: str) -> None:
        remaining = self.in_flight[address] - 1
        if remaining:
            self.in_flight[address] = remaining
        else:
            del self.in_flight[address]

    def _pick_excluding(
        self, endpoint: EndpointRoute, affinity: int | None, exclude: Collection[str]
    ) -> tuple[VersionRoute, str] | None:
        # Retry path only: rebuild the candidate set without the replicas that already failed.
        candidates: list[tuple[VersionRoute, tuple[str, ...]]] = []
        for version in endpoint.serving:
            left = tuple(address for address in version.addresses if address not in exclude)
            if left:
                candidates.append((version, left))
        if not candidates:
            return None
        cumulative = tuple(accumulate(version.weight for version, _ in candidates))
        index = bisect_right(cumulative, self._random() * cumulative[-1])
        version, addresses = candidates[index]
        return version, self._replica(version, addresses, endpoint.strategy, affinity)

    def _weighted(self, serving: tuple[VersionRoute, ...]) -> VersionRoute:
        signature = tuple((version.key, version.weight) for version in serving)
        deck = self._decks.get(signature)
        if not deck:
            if len(self._decks) > _MAX_DECKS:
                self._decks.clear()  # stale signatures of old weights and serving sets
            deck = self._decks[signature] = self._shuffled_deck(serving)
        return serving[deck.pop()]

    def _shuffled_deck(self, serving: tuple[VersionRoute, ...]) -> list[int]:
        deck = [index for index, version in enumerate(serving) for _ in range(version.weight)]
        for top in range(len(deck) - 1, 0, -1):  # Fisher-Yates with the injectable source
            other = int(self._random() * (top + 1))
            deck[top], deck[other] = deck[other], deck[top]
        return deck

    def _replica(
        self, version: VersionRoute, addresses: tuple[str, ...], strategy: str, affinity: int | None
    ) -> str:
        count = len(addresses)
        if count == 1:
            return addresses[0]
        cursor = self._cursors.get(version.key, 0)
        self._cursors[version.key] = cursor + 1
        if strategy == "round-robin":
            return addresses[cursor % count]
        in_flight = self.in_flight
        best, best_load = addresses[0], -1
        for offset in range(count):
            address = addresses[(cursor + offset) % count]
            load = in_flight.get(address, 0)
            if best_load < 0 or load < best_load:
                best, best_load = address, load
                if load == 0:
                    break
        if strategy != "prefix-affinity" or affinity is None:
            return best
        preferred = max(
            addresses, key=lambda address: hash((affinity, zlib.crc32(address.encode())))
        )
        if in_flight.get(preferred, 0) <= best_load + AFFINITY_SLACK:
            return preferred
        return best


def affinity_key(payload: Mapping[str, Any]) -> int | None:
    """A stable hash of the prompt's start (the first chat message, or the completion prompt)."""
    messages = payload.get("messages")
    if isinstance(messages, list) and messages:
        first = messages[0]
        head: Any = first.get("content") if isinstance(first, dict) else first
    else:
        head = payload.get("prompt")
    if head is None:
        return None
    text = head if isinstance(head, str) else orjson.dumps(head).decode()
    # crc32, not hash(): str hashes differ between processes, and gateway replicas must agree.
    return zlib.crc32(text[:_AFFINITY_KEY_CHARS].encode())
