"""Apply-time checks of the CEL selectors in DeviceClass and ResourceClaim specs.

Where this sits: the kind registry runs a kind's ``check_spec`` hook at the write gate
(``corral.api.registry.KindInfo.check_spec``: typed spec -> ``[(field path, message)]``). The
api layer cannot import ``corral.devices``, so the composition root sets
:func:`selector_problems` as the hook of both kinds. Every selector is compiled; one that does
not compile is reported at its own field path with the line, column and diagnostic, and the
apply is rejected.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from corral.devices.cel import CelCompileError, compile_selector


def _selectors(where: str, selectors: Any) -> Iterator[tuple[str, Any]]:
    for index, selector in enumerate(selectors if isinstance(selectors, list) else []):
        cel = selector.get("cel") if isinstance(selector, Mapping) else None
        if isinstance(cel, Mapping):
            yield f"{where}[{index}].cel.expression", cel.get("expression")


def _expressions(spec: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """(field path, expression) for a DeviceClass or a ResourceClaim spec."""
    yield from _selectors("spec.selectors", spec.get("selectors"))
    devices = spec.get("devices")
    requests = devices.get("requests") if isinstance(devices, Mapping) else None
    for r, request in enumerate(requests if isinstance(requests, list) else []):
        if not isinstance(request, Mapping):
            continue
        where = f"spec.devices.requests[{r}]"
        exactly = request.get("exactly")
        if isinstance(exactly, Mapping):
            yield from _selectors(f"{where}.exactly.selectors", exactly.get("selectors"))
        alternatives = request.get("firstAvailable")
        for a, alternative in enumerate(alternatives if isinstance(alternatives, list) else []):
            if isinstance(alternative, Mapping):
                path = f"{where}.firstAvailable[{a}].selectors"
                yield from _selectors(path, alternative.get("selectors"))


def selector_problems(spec: Any) -> list[tuple[str, str]]:
    """``(field path, message)`` for each selector of the spec that does not compile."""
    if hasattr(spec, "model_dump"):  # the typed spec the registry hands over
        spec = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    if not isinstance(spec, Mapping):
        raise TypeError(f"expected a DeviceClass or ResourceClaim spec, got {type(spec).__name__}")
    problems: list[tuple[str, str]] = []
    for path, expression in _expressions(spec):
        try:
            compile_selector(expression)
        except CelCompileError as exc:
            where = f"line {exc.line}, column {exc.column}"
            problems.append((path, f"CEL does not compile: {where}: {exc.diagnostic}"))
    return problems
