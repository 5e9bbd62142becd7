"""Each kind exports a JSON Schema that accepts what validation accepts and refuses unknowns."""

import jsonschema
import pytest

from corral.api import all_kinds, lookup_kind
from corral.api.schema import kind_json_schema
from corral.api.validation import validate_object


@pytest.mark.parametrize("info", all_kinds(), ids=lambda info: info.kind)
def test_schema_is_valid_json_schema(info):
    jsonschema.Draft202012Validator.check_schema(kind_json_schema(info))


def test_valid_endpoint_passes_and_unknown_field_fails():
    info = lookup_kind("Endpoint")
    assert info is not None
    doc = {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Endpoint",
        "metadata": {"name": "chat"},
        "spec": {"models": [{"model": "small", "weight": 100}]},
    }
    validator = jsonschema.Draft202012Validator(kind_json_schema(info))
    validator.validate(validate_object(doc))
    doc["spec"]["replicaz"] = 1
    assert list(validator.iter_errors(doc))
