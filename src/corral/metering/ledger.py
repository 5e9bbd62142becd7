"""The budget ledger: reserve the worst case before the upstream call, settle the real cost after.

``reserve`` holds an amount against every budget that applies, atomically (all or none): a
hard budget refuses when spent + held + this request would pass its limit, so concurrent
requests in any number of processes never overspend it. ``settle`` returns the hold and
charges the real cost exactly once per reservation id (a second settle is a no-op);
``release`` returns the hold of a request that failed. A hold nobody settles (its gateway
crashed) expires after ``hold_ttl_s`` and is returned by the next sweep (run
``sweep_expired`` on a timer; a refusal caused by holds also sweeps, at most once a second).
The TTL must outlast the longest request: a settle after expiry still charges the real cost,
and with the hold gone that charge is not covered by the limit check.

The counters live in a :class:`CounterBackend` (``corral.store.budget_ledger`` has PostgreSQL,
Redis and SQLite ones). This module turns budgets into counter lines, refusals into reasons
and retry hints, and soft budgets into alerts; backends only keep integers atomic.
"""

from __future__ import annotations

import itertools
import math
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from corral.metering.budgets import BudgetRule, CounterLine
from corral.metering.pricing import Amount

CounterState = tuple[str, int, int]
"""(counter key, spent, held)."""


class CounterBackend(Protocol):
    """Shared integer counters with atomic multi-counter holds, keyed by reservation id."""

    async def reserve(
        self, reservation_id: str, holds: Sequence[tuple[str, int, int | None]], expires_at: float
    ) -> tuple[bool, list[CounterState]]:
        """Hold (key, amount, limit or None) on every counter, or on none of them.

        Refuses when spent + held + amount > limit on any limited counter. Returns (True, the
        counters after the hold) or (False, [the first counter that refused])."""
        ...

    async def settle(
        self, reservation_id: str, actual: Mapping[str, int]
    ) -> tuple[str, list[CounterState]]:
        """Return the holds and charge ``actual`` per key, once. Returns the state the
        reservation was in ("held" or "expired": charged now; "settled", "released" or
        "unknown": nothing done) and the counters after."""
        ...

    async def release(self, reservation_id: str) -> str:
        """Return the holds without charging; the state the reservation was in."""
        ...

    async def expire(self, now: float) -> int:
        """Return the holds of reservations whose ``expires_at`` has passed; how many."""
        ...

    async def counters(self, keys: Sequence[str]) -> dict[str, tuple[int, int]]:
        """(spent, held) per key; a key never charged reads (0, 0)."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Alert:
    """A soft budget's limit is at risk ("projected", at reserve) or passed ("exceeded")."""

    budget: str
    unit: str
    limit: int
    used: int
    kind: str
    message: str


@dataclass(frozen=True, slots=True, init=False)
class Reservation:
    id: str
    amount: Amount
    lines: tuple[CounterLine, ...]
    expires_at: float
    alerts: tuple[Alert, ...]

    def __init__(
        self,
        id: str,
        amount: Amount,
        lines: tuple[CounterLine, ...],
        expires_at: float,
        alerts: tuple[Alert, ...] = (),
    ) -> None:
        # One per gateway request: the slots are set directly, not through a frozen
        # dataclass's generated ``__init__`` (``object.__setattr__`` per field).
        _set_id(self, id)
        _set_amount(self, amount)
        _set_lines(self, lines)
        _set_expires_at(self, expires_at)
        _set_alerts(self, alerts)


_set_id = Reservation.__dict__["id"].__set__
_set_amount = Reservation.__dict__["amount"].__set__
_set_lines = Reservation.__dict__["lines"].__set__
_set_expires_at = Reservation.__dict__["expires_at"].__set__
_set_alerts = Reservation.__dict__["alerts"].__set__


@dataclass(frozen=True)
class Refusal:
    """A hard budget said no. ``retry_after`` is seconds until it could say yes, if ever."""

    budget: str
    reason: str
    retry_after: float | None


@dataclass(frozen=True)
class Settlement:
    charged: bool
    """False when this reservation was already settled or released: nothing was charged."""
    late: bool
    """The hold had expired before the settle; the real cost is charged all the same."""
    alerts: tuple[Alert, ...] = ()


_CHARGED = Settlement(charged=True, late=False)
_NOT_CHARGED = Settlement(charged=False, late=False)


class UnknownReservation(LookupError):
    pass


_LINES_CACHE_SIZE = 4096


class _ReservationIds:
    """Unique reservation ids without a system call each: a random per-ledger prefix (unique
    across the processes sharing the counters) and a sequence number."""

    def __init__(self) -> None:
        self._prefix = uuid.uuid4().hex[:16]
        self._sequence = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._sequence):x}"


class _LineSet:
    """The counter lines of a tuple of budgets in their current windows (``valid_from`` until
    ``valid_until``), with what every reserve and settle derives from them worked out once."""

    __slots__ = (
        "budgets",
        "by_key",
        "hard_micro_usd",
        "hard_tokens",
        "holds",
        "lines",
        "soft",
        "valid_from",
        "valid_until",
    )

    def __init__(
        self,
        budgets: tuple[BudgetRule, ...],
        lines: tuple[CounterLine, ...],
        valid_from: float,
        valid_until: float,
    ) -> None:
        self.budgets = budgets
        self.lines = lines
        self.valid_from = valid_from
        self.valid_until = valid_until
        self.by_key = {line.key: line for line in lines}
        # (key, whether it counts tokens (else micro-USD), its limit or None for a soft one)
        self.holds = tuple(
            (line.key, line.unit == "tokens", line.limit if line.budget.hard else None)
            for line in lines
        )
        self.soft = any(not line.budget.hard for line in lines)
        # The smallest hard limit per unit: an amount within both fits every whole limit.
        hard = [line for line in lines if line.budget.hard]
        self.hard_tokens = min(
            (line.limit for line in hard if line.unit == "tokens"), default=math.inf
        )
        self.hard_micro_usd = min(
            (line.limit for line in hard if line.unit == "usd"), default=math.inf
        )


IN_FLIGHT_RETRY_S = 1.0
"""Retry hint when a budget is full only because of holds of requests still in flight."""


class BudgetLedger:
    def __init__(
        self,
        backend: CounterBackend,
        *,
        hold_ttl_s: float = 600.0,
        clock: Callable[[], float] = time.time,
        on_alert: Callable[[Alert], None] | None = None,
    ) -> None:
        if not hold_ttl_s > 0:
            raise ValueError(f"hold_ttl_s must be > 0, got {hold_ttl_s}")
        self._backend = backend
        self._hold_ttl_s = hold_ttl_s
        self._clock = clock
        self._on_alert = on_alert
        self._last_sweep = float("-inf")
        # The line sets of the budget tuples callers pass (the gateway passes the same tuple
        # object for every request of a caller), by the tuple's id, and of their lines, by the
        # lines' id; each entry holds its tuple, so the id stays its own while it is kept.
        self._line_sets: dict[int, _LineSet] = {}
        self._line_sets_by_lines: dict[int, _LineSet] = {}
        self._ids = _ReservationIds()

    async def reserve(self, budgets: Sequence[BudgetRule], amount: Amount) -> Reservation | Refusal:
        """Hold ``amount`` against every budget in ``budgets``, or refuse without holding any."""
        now = self._clock()
        line_set = self._line_set(budgets, now)
        lines = line_set.lines
        tokens, micro_usd = amount.tokens, amount.micro_usd
        if tokens > line_set.hard_tokens or micro_usd > line_set.hard_micro_usd:
            for line in lines:
                need = line.share_of(amount)
                if line.budget.hard and need > line.limit:
                    return Refusal(
                        line.budget.ref,
                        f"budget {line.budget.ref}: this request may cost up to "
                        f"{_show(line, need)}, more than the whole {_period(line)} limit of "
                        f"{_show(line, line.limit)}",
                        None,
                    )
        reservation_id = self._ids.next()
        expires_at = now + self._hold_ttl_s
        if not lines:
            return Reservation(reservation_id, amount, (), expires_at)
        holds = [
            (key, tokens if counts_tokens else micro_usd, limit)
            for key, counts_tokens, limit in line_set.holds
        ]
        ok, states = await self._backend.reserve(reservation_id, holds, expires_at)
        held_elsewhere = not ok and states[0][2] > 0
        if held_elsewhere and self._clock() - self._last_sweep >= IN_FLIGHT_RETRY_S:
            # Abandoned holds may be what fills the budget: return them and try once more.
            await self.sweep_expired()
            ok, states = await self._backend.reserve(reservation_id, holds, expires_at)
        by_key = line_set.by_key
        if not ok:
            return self._refusal(by_key[states[0][0]], states[0], amount, now)
        alerts: tuple[Alert, ...] = ()
        if line_set.soft:
            alerts = tuple(
                self._alert(by_key[key], spent + held, "projected")
                for key, spent, held in states
                if not by_key[key].budget.hard and spent + held > by_key[key].limit
            )
        return Reservation(reservation_id, amount, lines, expires_at, alerts)

    def _line_set(self, budgets: Sequence[BudgetRule], now: float) -> _LineSet:
        """The counter lines of ``budgets`` at ``now``, remembered until a window ends: the
        same few budget tuples come back on every request of the same caller. A list (which
        could change in place) is worked out afresh each time."""
        remembered = type(budgets) is tuple
        if remembered:
            cached = self._line_sets.get(id(budgets))
            # A clock that moves back (before valid_from) recomputes too.
            if (
                cached is not None
                and cached.budgets is budgets
                and cached.valid_from <= now < cached.valid_until
            ):
                return cached
        lines = _dedupe(line for rule in budgets for line in rule.counter_lines(_utc(now)))
        ends = [line.window_end.timestamp() for line in lines if line.window_end is not None]
        line_set = _LineSet(tuple(budgets), tuple(lines), now, min(ends, default=math.inf))
        if remembered:
            # By lines grows with every window too: budgets or windows changed many times.
            if len(self._line_sets_by_lines) >= _LINES_CACHE_SIZE:
                self._line_sets.clear()  # start over
                self._line_sets_by_lines.clear()
            self._line_sets[id(budgets)] = line_set
            self._line_sets_by_lines[id(line_set.lines)] = line_set
        return line_set

    async def settle(self, reservation: Reservation, actual: Amount) -> Settlement:
        """Charge the real cost and return the hold; settling the same id again charges nothing."""
        lines = reservation.lines
        if not lines:
            return Settlement(charged=True, late=False)
        line_set = self._line_sets_by_lines.get(id(lines))
        if line_set is None or line_set.lines is not lines:
            line_set = _LineSet((), lines, 0.0, 0.0)  # reserved before a cache reset, or elsewhere
        tokens, micro_usd = actual.tokens, actual.micro_usd
        charges = {
            key: tokens if counts_tokens else micro_usd
            for key, counts_tokens, _limit in line_set.holds
        }
        state, states = await self._backend.settle(reservation.id, charges)
        if state == "unknown":
            raise UnknownReservation(f"no reservation {reservation.id} in the budget ledger")
        if state not in ("held", "expired"):
            return _NOT_CHARGED
        alerts: tuple[Alert, ...] = ()
        if line_set.soft:
            by_key = line_set.by_key
            alerts = tuple(
                self._alert(by_key[key], spent, "exceeded")
                for key, spent, _held in states
                if not by_key[key].budget.hard and spent - charges[key] <= by_key[key].limit < spent
            )
        if alerts or state == "expired":
            return Settlement(charged=True, late=state == "expired", alerts=alerts)
        return _CHARGED

    async def release(self, reservation: Reservation) -> bool:
        """Return the hold of a request that never reached the model; False if already done."""
        if not reservation.lines:
            return False
        state = await self._backend.release(reservation.id)
        if state == "unknown":
            raise UnknownReservation(f"no reservation {reservation.id} in the budget ledger")
        return state == "held"

    async def sweep_expired(self) -> int:
        """Return abandoned holds (run it on a timer too); how many reservations expired."""
        self._last_sweep = self._clock()
        return await self._backend.expire(self._last_sweep)

    async def usage(self, rule: BudgetRule) -> dict[str, tuple[int, int]]:
        """(spent, held) per limited unit of ``rule`` in the current window."""
        lines = rule.counter_lines(_utc(self._clock()))
        found = await self._backend.counters([line.key for line in lines])
        return {line.unit: found[line.key] for line in lines}

    def _refusal(
        self, line: CounterLine, state: CounterState, amount: Amount, now: float
    ) -> Refusal:
        _key, spent, held = state
        need = line.share_of(amount)
        until_reset = None if line.window_end is None else line.window_end.timestamp() - now
        used = f"{_show(line, spent)} of {_show(line, line.limit)} spent {_window(line)}"
        if spent + need > line.limit:
            reason = f"budget {line.budget.ref}: {used}; this request may cost up to "
            return Refusal(line.budget.ref, reason + _show(line, need), until_reset)
        in_flight = f"{_show(line, held)} held by requests in flight"
        retry = IN_FLIGHT_RETRY_S if until_reset is None else min(IN_FLIGHT_RETRY_S, until_reset)
        reason = f"budget {line.budget.ref}: {used}, {in_flight}; this request may cost up to "
        return Refusal(line.budget.ref, reason + _show(line, need), retry)

    def _alert(self, line: CounterLine, used: int, kind: str) -> Alert:
        verb = "may pass" if kind == "projected" else "passed"
        message = (
            f"soft budget {line.budget.ref} {verb} its {_period(line)} limit: "
            f"{_show(line, used)} of {_show(line, line.limit)}"
        )
        alert = Alert(line.budget.ref, line.unit, line.limit, used, kind, message)
        if self._on_alert is not None:
            self._on_alert(alert)
        return alert


def _dedupe(lines: Iterable[CounterLine]) -> list[CounterLine]:
    unique: dict[str, CounterLine] = {}
    for line in lines:
        unique.setdefault(line.key, line)
    return sorted(unique.values(), key=lambda line: line.key)


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


_LIMIT_NAMES = {"day": "daily", "week": "weekly", "month": "monthly", "total": "overall"}


def _period(line: CounterLine) -> str:
    return _LIMIT_NAMES[line.budget.period]


def _window(line: CounterLine) -> str:
    return "overall" if line.budget.period == "total" else f"this {line.budget.period}"


def _show(line: CounterLine, value: int) -> str:
    return f"{value} tokens" if line.unit == "tokens" else f"${value / 1_000_000:.6f}"
