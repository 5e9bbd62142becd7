"""Which devices a request may use: DeviceClass selectors AND the claim's own, cached per row.

A selector is a CEL expression over one device; whether a device matches never changes until
its Node object changes. So each distinct expression is compiled once and evaluated once per
device, and the answer is kept as a boolean (node × device) matrix refreshed only for rows whose
``spec_generation`` moved. A request's eligible devices are the AND of its class's and its own
matrices.

The CEL engine is a seam: :class:`Selection` takes a ``compile`` callable (expression → device
predicate over the Node's device dict). The claim controller passes the one built on
``corral.devices.cel``; tests may pass plain Python predicates. A predicate that raises is a
runtime error: the device does not match and the error is remembered for the claim's condition
(a missing attribute is not an error: the CEL layer returns False for it, as DRA does).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from corral.devices.fleet_index import BoolArray, FleetIndex, IntArray

DeviceMatcher = Callable[[Mapping[str, Any]], bool]
SelectorCompiler = Callable[[str], DeviceMatcher]


class SelectorProblem(ValueError):
    """A selector that does not compile, or a class that does not exist."""


@dataclass(eq=False)
class _Matches:
    matcher: DeviceMatcher | None
    compile_error: str
    matrix: BoolArray
    seen: IntArray
    runtime_error: str = ""


@dataclass(eq=False)
class Selection:
    """Eligible-device matrices for selector expressions and device classes."""

    index: FleetIndex
    compile: SelectorCompiler
    classes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    _cache: dict[str, _Matches] = field(default_factory=dict)

    def set_class(self, name: str, expressions: tuple[str, ...]) -> None:
        self.classes[name] = expressions

    def remove_class(self, name: str) -> None:
        self.classes.pop(name, None)

    def eligible(self, device_class: str, selectors: tuple[str, ...]) -> BoolArray:
        """Devices of the class that also match ``selectors``; SelectorProblem when unusable."""
        expressions = self.classes.get(device_class)
        if expressions is None:
            raise SelectorProblem(f"DeviceClass {device_class!r} does not exist")
        result: BoolArray = self.index.present.copy()
        for expression in (*expressions, *selectors):
            result &= self.matrix(expression)
        return result

    def matrix(self, expression: str) -> BoolArray:
        entry = self._entry(expression)
        if entry.matcher is None:
            raise SelectorProblem(
                f"selector {expression!r} does not compile: {entry.compile_error}"
            )
        index = self.index
        if entry.matrix.shape != index.present.shape:
            entry.matrix = _resized(entry.matrix, index.present.shape)
            seen = np.full(len(index), -1, dtype=np.int64)
            kept = min(entry.seen.size, len(index))
            seen[:kept] = entry.seen[:kept]
            entry.seen = seen
        stale = np.flatnonzero(entry.seen != index.spec_generation)
        for row in stale:
            entry.matrix[row] = False
            node = index.rows[row]
            if node is not None:
                for column, slot in enumerate(node.slots):
                    entry.matrix[row, column] = self._match(entry, slot.raw)
            entry.seen[row] = index.spec_generation[row]
        return entry.matrix

    def runtime_error(self, expression: str) -> str:
        entry = self._cache.get(expression)
        return entry.runtime_error if entry else ""

    def _entry(self, expression: str) -> _Matches:
        entry = self._cache.get(expression)
        if entry is None:
            matcher: DeviceMatcher | None
            try:
                matcher, error = self.compile(expression), ""
            except Exception as exc:  # the engine's own error types vary; keep its message
                matcher, error = None, str(exc) or type(exc).__name__
            shape = self.index.present.shape
            entry = self._cache[expression] = _Matches(
                matcher, error, np.zeros(shape, dtype=bool), np.full(shape[0], -1, dtype=np.int64)
            )
        return entry

    @staticmethod
    def _match(entry: _Matches, device: Mapping[str, Any]) -> bool:
        assert entry.matcher is not None
        try:
            return bool(entry.matcher(device))
        except Exception as exc:  # a runtime error means no match; remember it for the claim
            if not entry.runtime_error:
                name = device.get("name", "?")
                entry.runtime_error = f"device {name}: {exc}"
            return False


def _resized(matrix: BoolArray, shape: tuple[int, ...]) -> BoolArray:
    grown = np.zeros(shape, dtype=bool)
    rows, cols = min(matrix.shape[0], shape[0]), min(matrix.shape[1], shape[1])
    grown[:rows, :cols] = matrix[:rows, :cols]
    return grown
