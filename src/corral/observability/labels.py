"""Metric label values with a ceiling, so callers cannot grow the number of time series.

Endpoint, team and model names reach metrics from requests; a client that sends a new model
name per request would otherwise create a new series each time until Prometheus (or the
process) falls over. A ``BoundedLabel`` admits the first ``max_values`` distinct values it sees
and maps every later newcomer, and any over-long value, to ``other``.
"""

from __future__ import annotations

import threading

OVERFLOW = "other"
MAX_VALUE_CHARS = 128


class BoundedLabel:
    """Admits at most ``max_values`` distinct values; the rest become ``OVERFLOW``."""

    __slots__ = ("_lock", "_max_values", "_seen")

    def __init__(self, max_values: int) -> None:
        if max_values < 1:
            raise ValueError(f"max_values must be >= 1, got {max_values}")
        self._max_values = max_values
        self._seen: dict[str, str] = {}
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        # The hit path is a lock-free dict read: admitted values never leave the table.
        admitted = self._seen.get(value)
        if admitted is not None:
            return admitted
        if len(value) > MAX_VALUE_CHARS:
            return OVERFLOW
        with self._lock:
            if value in self._seen:
                return self._seen[value]
            if len(self._seen) >= self._max_values:
                return OVERFLOW
            self._seen[value] = value
            return value

    @property
    def admitted(self) -> frozenset[str]:
        return frozenset(self._seen)
