"""Selector answers shared by identical devices: what makes CEL affordable on a large fleet.

Where this sits: between the claim scheduler's per-device selection (``selection.Selection``
asks ``expression -> device predicate``) and ``corral.devices.cel``. One CEL evaluation costs
tens of microseconds (the device crosses into the engine as a fresh map); a 5,000-node fleet
with 8 GPUs per node has 40,000 devices but only a handful of distinct kinds of device. So each
answer is kept per (expression, key), the key being the device fields the expression reads
(``CompiledSelector.fields``; a per-GPU ``uuid`` it never reads does not split the kinds) or,
when it reads the device in ways the scan cannot follow, everything CEL can see of it. A device
whose key was seen is answered by one dict lookup. A runtime error is an answer too: it is
remembered and raised again, naming the device asked about.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from corral.devices.cel import CelEvaluationError, CompiledSelector, compile_selector
from corral.devices.cel_device import DeviceView

_Answer = bool | CelEvaluationError


class SelectorCache:
    """Answers of compiled selectors per device signature; forgets everything when full."""

    def __init__(self, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._answers: dict[tuple[str, Any], _Answer] = {}

    def __len__(self) -> int:
        return len(self._answers)

    def matches(self, selector: CompiledSelector, device: DeviceView) -> bool:
        key = (selector.expression, selector.key(device))
        answer = self._answers.get(key)
        if answer is None:
            self.misses += 1
            try:
                answer = selector.matches(device)
            except CelEvaluationError as exc:
                answer = exc
            if len(self._answers) >= self.max_entries:
                self._answers.clear()  # signatures are few; a full cache means churn, start over
            self._answers[key] = answer
        else:
            self.hits += 1
        if isinstance(answer, CelEvaluationError):
            raise CelEvaluationError(answer.expression, device.name, answer.reason)
        return answer


def match_devices(
    selector: CompiledSelector, devices: Iterable[DeviceView], cache: SelectorCache | None = None
) -> list[bool]:
    """Whether each device matches, in order; identical devices are evaluated once."""
    cache = cache if cache is not None else SelectorCache()
    return [cache.matches(selector, device) for device in devices]


def _plain(raw: Any) -> Any:
    # Node spec values are one-key maps ({"string": "A100"}, {"value": "80Gi"}): as item tuples
    # they hash without serializing. Something unhashable inside makes the lookup raise
    # TypeError, and the predicate then keys on the built view instead.
    return tuple(raw.items()) if isinstance(raw, dict) else raw


def _raw_key_function(selector: CompiledSelector) -> Callable[[Mapping[str, Any]], Any]:
    """Equal keys, equal answers, taken from the Node's device dict without building a view."""
    if selector.fields is None:

        def whole(entry: Mapping[str, Any]) -> Any:
            # What CEL can see, serialized with sorted keys (the name is not among it).
            shared = entry.get("allowMultipleAllocations", False)
            visible = [entry.get("driver"), entry.get("attributes"), entry.get("capacity"), shared]
            return orjson.dumps(visible, option=orjson.OPT_SORT_KEYS)

        return whole
    # Qualified spellings prepared once; the short one counts when the domain is the driver's.
    lookups = [
        (section, f"{domain}/{name}", domain, name) for section, domain, name in selector.fields
    ]

    def fields(entry: Mapping[str, Any]) -> Any:
        driver = entry.get("driver")
        key: list[Any] = [driver, entry.get("allowMultipleAllocations", False)]
        for section, qualified, domain, name in lookups:
            table = entry.get(section) or {}
            key.append(_plain(table.get(qualified)))
            if domain == driver:
                key.append(_plain(table.get(name)))
        return tuple(key)

    return fields


def device_predicate(
    expression: str, max_entries: int = 200_000
) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate over Node ``spec.devices[]`` dicts (the scheduler's selector seam).

    Compiles now (CelCompileError), then answers each distinct device kind once, keyed on the
    raw fields the selector reads (or all it could read). A device entry the view cannot be
    built from raises DeviceViewError; a runtime error raises CelEvaluationError.
    """
    selector = compile_selector(expression)
    raw_key = _raw_key_function(selector)
    answers: dict[Any, _Answer] = {}

    def predicate(entry: Mapping[str, Any]) -> bool:
        key = raw_key(entry)
        try:
            answer = answers.get(key)
        except TypeError:  # an unhashable value in the spec: key on what the view shows
            key = ("view", selector.key(DeviceView.from_node_device(entry)))
            answer = answers.get(key)
        if answer is None:
            view = DeviceView.from_node_device(entry)
            try:
                answer = selector.matches(view)
            except CelEvaluationError as exc:
                answer = exc
            if len(answers) >= max_entries:
                answers.clear()
            answers[key] = answer
        if isinstance(answer, CelEvaluationError):
            name = str(entry.get("name", ""))
            raise CelEvaluationError(answer.expression, name, answer.reason)
        return answer

    return predicate
