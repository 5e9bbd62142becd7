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
weight 0 never takes traffic.

A request with a session key (``session_key``: the ``x-session-id`` header, else the OpenAI
``user`` field) skips the deck: weighted rendezvous hashing puts the key on one version (each
version scores ``weight / -ln(u)`` with ``u`` the key's hash salted by that version; the highest
wins), so a session stays on its version while weights stay put, and when a weight changes or a
version stops serving only the sessions that must move do. Replica choice per
``spec.routing.strategy``, over the replicas not ejected (``corral.gateway.resilience``):

- ``least-outstanding``: fewest requests in flight from this process, ties taken in turn;
- ``round-robin``: strictly in turn;
- ``prefix-affinity``: rendezvous hashing on the prompt's first message, so requests that share a
  prefix meet the same replica's KV cache, unless that replica has more than
  ``AFFINITY_SLACK`` requests in flight beyond the least loaded one (then least-outstanding).
"""

from __future__ import annotations

import hashlib
import math
import random as _random
import time
import zlib
from bisect import bisect_right
from collections.abc import Callable, Collection, Mapping, Sequence
from itertools import accumulate
from typing import Any

import orjson

from corral.gateway.resilience import Ejections, RetryBudget
from corral.gateway.routes import EndpointRoute, VersionRoute

AFFINITY_SLACK = 2
_MAX_DECKS = 4096
_AFFINITY_KEY_CHARS = 1024
_MASK64 = (1 << 64) - 1


class Balancer:
    """Load and health state of this gateway process; ``random`` and ``clock`` are injectable."""

    __slots__ = ("_budgets", "_cursors", "_decks", "_random", "clock", "ejections", "in_flight")

    def __init__(
        self,
        random: Callable[[], float] = _random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._random = random
        self._cursors: dict[str, int] = {}
        self._decks: dict[tuple[tuple[str, int], ...], list[int]] = {}
        self._budgets: dict[str, RetryBudget] = {}
        self.clock = clock
        self.ejections = Ejections(clock)
        self.in_flight: dict[str, int] = {}

    def choose(
        self, endpoint: EndpointRoute, affinity: int | None = None, exclude: Collection[str] = ()
    ) -> str | None:
        """The address for the next try, or None when no routable replica is left."""
        picked = self.pick(endpoint, affinity, exclude)
        return None if picked is None else picked[1]

    def pick(
        self,
        endpoint: EndpointRoute,
        affinity: int | None = None,
        exclude: Collection[str] = (),
        session: int | None = None,
    ) -> tuple[VersionRoute, str] | None:
        """The version and replica address for the next try, or None when none is left.

        ``session`` is ``session_key``'s hash: it pins the version, not the replica.
        """
        if exclude:
            return self._pick_excluding(endpoint, affinity, exclude, session)
        serving = endpoint.serving
        if not serving:
            return None
        if len(serving) == 1:
            version = serving[0]
        elif session is not None:
            version = serving[_rendezvous(serving, session)]
        else:
            version = self._weighted(serving, endpoint.deck_key)
        addresses = version.addresses
        if self.ejections.ejected:
            addresses = self.ejections.routable(addresses)
        return version, self._replica(version, addresses, endpoint.strategy, affinity)

    def succeeded(self, address: str) -> None:
        self.ejections.succeeded(address)

    def failed(self, endpoint: EndpointRoute, version: VersionRoute, address: str) -> bool:
        """Count a failed try; True when it ejected the replica."""
        return self.ejections.failed(address, version.addresses, endpoint.policy)

    def count_request(self, endpoint: EndpointRoute) -> None:
        budget = self._budgets.get(endpoint.public_name)
        if budget is None:
            budget = self._budgets[endpoint.public_name] = RetryBudget()
        budget.count_request(self.clock(), endpoint.policy)

    def take_retry(self, endpoint: EndpointRoute) -> bool:
        """Spend one retry from the Endpoint's budget; False (nothing spent) when it is spent."""
        budget = self._budgets.get(endpoint.public_name)
        if budget is None:
            budget = self._budgets[endpoint.public_name] = RetryBudget()
        now = self.clock()
        if not budget.allows_retry(now, endpoint.policy):
            return False
        budget.count_retry(now, endpoint.policy)
        return True

    def acquire(self, address: str) -> None:
        self.in_flight[address] = self.in_flight.get(address, 0) + 1

    def release(self, address: str) -> None:
        remaining = self.in_flight[address] - 1
        if remaining:
            self.in_flight[address] = remaining
        else:
            del self.in_flight[address]

    def _pick_excluding(
        self,
        endpoint: EndpointRoute,
        affinity: int | None,
        exclude: Collection[str],
        session: int | None,
    ) -> tuple[VersionRoute, str] | None:
        # Retry path only: rebuild the candidate set without the replicas that already failed.
        candidates: list[tuple[VersionRoute, tuple[str, ...]]] = []
        for version in endpoint.serving:
            left = tuple(address for address in version.addresses if address not in exclude)
            if left:
                candidates.append((version, self.ejections.routable(left)))
        if not candidates:
            return None
        if session is not None:
            index = _rendezvous([version for version, _ in candidates], session)
        else:
            cumulative = tuple(accumulate(version.weight for version, _ in candidates))
            index = bisect_right(cumulative, self._random() * cumulative[-1])
        version, addresses = candidates[index]
        return version, self._replica(version, addresses, endpoint.strategy, affinity)

    def _weighted(
        self, serving: tuple[VersionRoute, ...], deck_key: tuple[tuple[str, int], ...]
    ) -> VersionRoute:
        # The key is precomputed in the route snapshot: a table swap that keeps the serving
        # versions and weights keeps dealing from the same deck.
        deck = self._decks.get(deck_key)
        if not deck:
            if len(self._decks) > _MAX_DECKS:
                self._decks.clear()  # stale keys of old weights and serving sets
            deck = self._decks[deck_key] = self._shuffled_deck(serving)
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


def session_key(payload: Mapping[str, Any], header: bytes | None) -> int | None:
    """The hash of a request's session (``x-session-id``, else ``user``), None without one."""
    if header:
        key = header
    else:
        user = payload.get("user")
        if not isinstance(user, str) or not user:
            return None
        key = user.encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


def _rendezvous(versions: Sequence[VersionRoute], session: int) -> int:
    best, best_score = 0, -1.0
    for index, version in enumerate(versions):
        # splitmix64's finaliser: a well-mixed 64-bit value per (session, version) pair
        mixed = (session ^ version.salt) & _MASK64
        mixed = ((mixed ^ (mixed >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        mixed = ((mixed ^ (mixed >> 27)) * 0x94D049BB133111EB) & _MASK64
        mixed ^= mixed >> 31
        unit = ((mixed >> 11) + 0.5) / 9007199254740992.0  # in (0, 1), never 0 or 1
        score = version.weight / -math.log(unit)
        if score > best_score:
            best, best_score = index, score
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
