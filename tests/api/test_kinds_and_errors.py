"""The kind registry answers kubectl-style names; errors survive the wire as Status bodies."""

import pytest

from corral.api import Conflict, FieldError, Invalid, NotFound, all_kinds, lookup_kind
from corral.api.errors import ApiError, error_from_status


@pytest.mark.parametrize("alias", ["Endpoint", "endpoints", "endpoint", "EP", "ep"])
def test_lookup_by_any_alias(alias: str):
    info = lookup_kind(alias)
    assert info is not None
    assert info.kind == "Endpoint"


def test_unknown_kind_is_none():
    assert lookup_kind("pods") is None


def test_builtin_kinds_registered():
    kinds = {info.kind for info in all_kinds()}
    assert {"Namespace", "Model", "Endpoint", "Lease", "Secret"} <= kinds
    namespace = lookup_kind("ns")
    assert namespace is not None
    assert not namespace.namespaced


@pytest.mark.parametrize("cls", [NotFound, Conflict, Invalid])
def test_status_round_trip_keeps_type_and_causes(cls: type[ApiError]):
    error = cls("boom", causes=[FieldError("spec.x", "bad", "f.yaml[0]")])
    status = error.to_status()
    assert status["code"] == cls.code
    rebuilt = error_from_status(status, cls.code)
    assert type(rebuilt) is cls
    assert rebuilt.causes == error.causes
    assert str(rebuilt) == "boom\n  f.yaml[0] spec.x: bad"


def test_unknown_reason_becomes_generic_error():
    rebuilt = error_from_status({"reason": "Weird", "message": "m"}, 500)
    assert type(rebuilt) is ApiError
    assert rebuilt.message == "m"
