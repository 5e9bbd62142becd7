"""DRA device selectors: compile a CEL expression once, evaluate it on devices.

Where this sits: DeviceClass and ResourceClaim selectors (``selectors: [{cel: {expression}}]``)
are compiled at apply time by :func:`compile_selector` (a :class:`CelCompileError` names the
expression, line, column and the diagnostic) and evaluated by the claim scheduler on each
device (:meth:`CompiledSelector.matches`, or through ``cel_cache`` which answers identical
devices once).

The engine is ``common-expression-language`` (cel-rust bindings): parse errors come with
positions; it has no type checker, so this module adds the checks that can be made before any
device is seen: every function must exist (built-in, the engine's string/list/math/sets
libraries, or the Kubernetes extensions in ``cel_functions``), every identifier must be
``device``, a type name or a macro variable, literal ``quantity("..")``/``semver("..")``
arguments must parse, and an expression that does not mention ``device`` is evaluated now and
must yield a bool. The rest is checked at evaluation: a missing attribute, capacity or domain
means "no match", as in DRA; any other runtime error and a non-bool result raise
:class:`CelEvaluationError` naming the expression and the device.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from typing import Any

import cel as engine
from cel.stdlib import EXTENSIONS as ENGINE_LIBRARIES
from cel.stdlib import add_stdlib_to_context

from corral.devices.cel_device import DeviceView, DeviceViewError
from corral.devices.cel_functions import EXTENSIONS
from corral.devices.cel_scan import Reference, device_uses, first_use, macro_variables, position
from corral.devices.cel_values import describe

__all__ = [
    "CelCompileError",
    "CelEvaluationError",
    "CompiledSelector",
    "DeviceView",
    "DeviceViewError",
    "compile_selector",
]

MAX_EXPRESSION_LENGTH = 10 * 1024  # Kubernetes' limit for one DRA selector expression
_LIBRARIES = ["strings", "lists", "sets", "math"]
BUILTIN_FUNCTIONS = frozenset(
    [
        "size",
        "contains",
        "startsWith",
        "endsWith",
        "matches",
        "int",
        "uint",
        "double",
        "string",
        "bytes",
        "timestamp",
        "duration",
        "dyn",
        "type",
        "getFullYear",
        "getMonth",
        "getDayOfYear",
        "getDayOfMonth",
        "getDate",
        "getDayOfWeek",
        "getHours",
        "getMinutes",
        "getSeconds",
        "getMilliseconds",
    ]
)
_LIBRARY_FUNCTIONS = frozenset(name for library in _LIBRARIES for name in ENGINE_LIBRARIES[library])
KNOWN_FUNCTIONS = BUILTIN_FUNCTIONS | _LIBRARY_FUNCTIONS | frozenset(EXTENSIONS)
_TYPE_NAMES = frozenset(
    ["int", "uint", "double", "string", "bool", "bytes", "list", "map", "null_type", "type"]
)
_PARSE_POSITION = re.compile(r"<input>:(\d+):(\d+): (.*)")
_LITERAL_CALL = re.compile(
    r"""\b(quantity|semver)\s*\(\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')\s*\)"""
)
_FUNCTION_FAILED = re.compile(r"Python function call failed: \w+: (.*?)\. Check function", re.S)


class CelCompileError(ValueError):
    """A selector that does not compile; ``line``/``column`` are 1-based."""

    def __init__(self, expression: str, line: int, column: int, diagnostic: str) -> None:
        self.expression = expression
        self.line, self.column = line, column
        self.diagnostic = diagnostic
        super().__init__(
            f"CEL expression {expression!r}: line {line}, column {column}: {diagnostic}"
        )


class CelEvaluationError(ValueError):
    """A selector that failed on a device for a reason other than a missing attribute."""

    def __init__(self, expression: str, device: str, reason: str) -> None:
        self.expression, self.device, self.reason = expression, device, reason
        super().__init__(f"CEL expression {expression!r} on device {device!r}: {reason}")


class _EngineLogFilter(logging.Filter):
    """The engine logs each failing Python function; we raise CelEvaluationError instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Python function" not in record.getMessage()


logging.getLogger("cel").addFilter(_EngineLogFilter())
_local = threading.local()


def _context() -> Any:
    """This thread's engine context with every function registered (built once per thread)."""
    context = getattr(_local, "context", None)
    if context is None:
        context = engine.Context()
        add_stdlib_to_context(context, _LIBRARIES)
        for name, function in EXTENSIONS.items():  # ours win where a library reuses a name
            context.add_function(name, function)
        _local.context = context
    return context


def _reason(exc: Exception) -> str:
    failed = _FUNCTION_FAILED.search(str(exc))
    return failed.group(1) if failed else (str(exc) or type(exc).__name__)


@dataclass(frozen=True, eq=False)
class CompiledSelector:
    """A compiled selector; :meth:`matches` evaluates it on one device."""

    expression: str
    program: Any
    # (section, domain) looked up with a literal: Kubernetes answers an unknown domain with an
    # empty map, so `!has(device.attributes["x.dev"].y)` holds on a device without that domain.
    domains: tuple[tuple[str, str], ...] = ()
    # The (section, domain, name) fields the answer depends on, or None for the whole device.
    fields: tuple[Reference, ...] | None = None

    def matches(self, device: DeviceView) -> bool:
        return self.evaluate_value(device.cel_value(), device.name)

    def key(self, device: DeviceView) -> tuple[Any, ...]:
        """Equal keys, equal answers: the fields this selector reads, else the whole signature."""
        if self.fields is None:
            return device.signature
        found = device.fields.get
        return (device.driver, device.allow_multiple_allocations, *map(found, self.fields))

    def evaluate_value(self, value: dict[str, Any], device_name: str) -> bool:
        """Evaluate on an already-built ``device`` value."""
        for section, domain in self.domains:
            if domain not in value.get(section, {}):
                value = {**value, section: {**value.get(section, {}), domain: {}}}
        context = _context()
        context.add_variable("device", value)
        try:
            result = self.program.execute(context)
        except KeyError:
            return False  # a missing attribute, capacity or domain: no match, as DRA
        except Exception as exc:  # the engine raises TypeError/RuntimeError/ZeroDivisionError...
            raise CelEvaluationError(self.expression, device_name, _reason(exc)) from None
        if not isinstance(result, bool):
            raise CelEvaluationError(
                self.expression, device_name, f"must evaluate to a bool, got {describe(result)}"
            )
        return result


def compile_selector(expression: str) -> CompiledSelector:
    """Compile a DRA selector; CelCompileError with the position when it cannot work."""
    if not isinstance(expression, str) or not expression.strip():
        raise CelCompileError(str(expression), 1, 1, "must be a non-empty CEL expression")
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise CelCompileError(
            expression[:40] + "...",
            1,
            MAX_EXPRESSION_LENGTH + 1,
            f"longer than {MAX_EXPRESSION_LENGTH} characters",
        )
    try:
        program = engine.compile(expression)
    except ValueError as exc:
        found = _PARSE_POSITION.search(str(exc))
        if found is None:
            raise CelCompileError(expression, 1, 1, str(exc)) from None
        line, column, message = found.groups()
        raise CelCompileError(expression, int(line), int(column), message.strip()) from None
    _check_names(expression, program)
    _check_literals(expression)
    uses = device_uses(expression)
    selector = CompiledSelector(expression, program, uses.domains, uses.fields)
    if "device" not in program.variables():
        _check_constant(selector)
    return selector


def _check_names(expression: str, program: Any) -> None:
    for name in program.functions():
        if name[:1] in "_@!" or name in KNOWN_FUNCTIONS:
            continue
        if name == "bind" and "cel" in program.variables():
            where = first_use(expression, "bind", call=True)
            raise CelCompileError(expression, *where, "cel.bind is not supported by this engine")
        where = first_use(expression, name.rpartition(".")[2], call=True)
        raise CelCompileError(expression, *where, f"undeclared function {name!r}")
    bound = macro_variables(expression)
    for name in program.variables():
        if name != "device" and name not in _TYPE_NAMES and name not in bound:
            where = first_use(expression, name, call=False)
            message = f"undeclared reference to {name!r} (a selector sees only 'device')"
            raise CelCompileError(expression, *where, message)


def _check_literals(expression: str) -> None:
    for found in _LITERAL_CALL.finditer(expression):
        function, literal = found.group(1), found.group(2)[1:-1]
        if "\\" in literal:
            continue  # an escape sequence: the engine's unescaping decides, at evaluation
        try:
            EXTENSIONS[function](literal)
        except ValueError as exc:
            where = position(expression, found.start(2))
            raise CelCompileError(expression, *where, str(exc)) from None


def _check_constant(selector: CompiledSelector) -> None:
    """An expression that never looks at the device has one answer: it must be a bool."""
    try:
        selector.evaluate_value({}, "(none)")
    except CelEvaluationError as exc:
        raise CelCompileError(selector.expression, 1, 1, exc.reason) from None
