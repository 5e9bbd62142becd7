"""A selector that cannot work is rejected when it is applied, with the line and column."""

from __future__ import annotations

import pytest

from corral.devices.cel import BUILTIN_FUNCTIONS, CelCompileError, compile_selector


def error_of(expression: str) -> CelCompileError:
    with pytest.raises(CelCompileError) as caught:
        compile_selector(expression)
    return caught.value


def test_a_syntax_error_carries_the_engine_diagnostic_and_position() -> None:
    error = error_of('device.driver == "gpu.nvidia.com" &&')
    assert (error.line, error.column) == (1, 37)
    assert "Syntax error" in error.diagnostic
    assert str(error).startswith(
        "CEL expression 'device.driver == \"gpu.nvidia.com\" &&': line 1, column 37: Syntax error"
    )


def test_a_position_on_a_later_line_counts_lines_from_one() -> None:
    error = error_of('device.driver == "a" &&\n  device.attributes["a"].model ==')
    assert (error.line, error.column) == (2, 34)


def test_an_unknown_function_is_named_where_it_is_called() -> None:
    error = error_of('device.attributes["gpu.nvidia.com"].model.frobnicate()')
    assert error.diagnostic == "undeclared function 'frobnicate'"
    assert (error.line, error.column) == (1, 43)


def test_a_name_other_than_device_is_an_undeclared_reference() -> None:
    error = error_of("device.driver == driver")
    assert "undeclared reference to 'driver'" in error.diagnostic
    assert (error.line, error.column) == (1, 18)


def test_macro_variables_and_type_names_are_not_undeclared() -> None:
    compile_selector('device.attributes["a"].all(k, k != "") && type(device.driver) == string')


def test_a_bad_quantity_or_semver_literal_fails_at_compile_time() -> None:
    quantity = error_of('device.capacity["a"].memory.isGreaterThan(quantity("40 Gi"))')
    assert quantity.column == 52
    assert quantity.diagnostic.startswith("quantity: ")
    assert "40 Gi" in quantity.diagnostic
    semver = error_of('device.attributes["a"].v.isLessThan(semver("1.2"))')
    assert semver.column == 44
    assert "'1.2' is not a semantic version" in semver.diagnostic


def test_an_expression_that_never_reads_the_device_must_be_a_bool() -> None:
    assert error_of("1 + 2").diagnostic == "must evaluate to a bool, got int"
    assert error_of('"gpu"').diagnostic == "must evaluate to a bool, got string"
    assert compile_selector("true").matches is not None


def test_empty_and_oversized_expressions_are_rejected() -> None:
    assert error_of("   ").diagnostic == "must be a non-empty CEL expression"
    assert "longer than 10240 characters" in error_of("true || " * 2000 + "true").diagnostic


def test_cel_bind_is_reported_as_unsupported() -> None:
    error = error_of('cel.bind(d, device.attributes["a"], d.x)')
    assert error.diagnostic == "cel.bind is not supported by this engine"


STAMP = 'timestamp("2024-03-05T06:07:08.009Z")'
BUILTIN_USES = {
    "size": 'size("ab") == 2',
    "contains": '"ab".contains("b") && [1, 2].contains(2)',
    "startsWith": '"ab".startsWith("a")',
    "endsWith": '"ab".endsWith("b")',
    "matches": '"ab".matches("^a")',
    "int": 'int("1") == 1',
    "uint": "uint(1) == 1u",
    "double": "double(1) == 1.0",
    "string": 'string(1) == "1"',
    "bytes": 'bytes("a") == b"a"',
    "timestamp": f'{STAMP} > timestamp("2024-01-01T00:00:00Z")',
    "duration": 'duration("1s") == duration("1000ms")',
    "dyn": "dyn(1) == 1",
    "type": "type(1) == int",
    "getFullYear": f"{STAMP}.getFullYear() == 2024",
    "getMonth": f"{STAMP}.getMonth() == 2",
    "getDayOfYear": f"{STAMP}.getDayOfYear() == 64",
    "getDayOfMonth": f"{STAMP}.getDayOfMonth() == 4",
    "getDate": f"{STAMP}.getDate() == 5",
    "getDayOfWeek": f"{STAMP}.getDayOfWeek() == 2",
    "getHours": f"{STAMP}.getHours() == 6",
    "getMinutes": f"{STAMP}.getMinutes() == 7",
    "getSeconds": f"{STAMP}.getSeconds() == 8",
    "getMilliseconds": f"{STAMP}.getMilliseconds() == 9",
}


def test_every_builtin_the_checker_accepts_exists_in_the_engine() -> None:
    assert set(BUILTIN_USES) == BUILTIN_FUNCTIONS
    for name, expression in BUILTIN_USES.items():
        assert compile_selector(expression).evaluate_value({}, "none") is True, name
