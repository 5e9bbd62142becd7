"""A Policy is refused at the write gate unless it parses and validates against the schema."""

from pathlib import Path

import pytest
import yaml
from policy_harness import policy

from corral.api import Invalid
from corral.api.validation import validate_object
from corral.policy import CEDAR_SCHEMA

EXAMPLES = Path(__file__).parents[2] / "examples" / "policies"


def causes(cedar: str) -> list[str]:
    with pytest.raises(Invalid) as caught:
        validate_object(policy("p", cedar), location="p.yaml[0]")
    return [str(cause) for cause in caught.value.causes]


def test_valid_policy_is_accepted_with_defaults():
    obj = validate_object(policy("p", 'permit(principal, action == Action::"invoke", resource);'))
    assert obj["spec"] == {
        "cedar": 'permit(principal, action == Action::"invoke", resource);',
        "description": "",
        "enabled": True,
    }


def test_parse_error_names_line_and_column_of_the_statement():
    cedar = (
        "permit(principal, action, resource);\n\n  forbid(principal, action, resource) when { 1 +"
    )
    cedar += " };"
    assert causes(cedar) == [
        "p.yaml[0] spec.cedar: line 3, column 3 (statement 2): unexpected token `}`"
    ]


def test_semicolons_in_strings_and_comments_do_not_split_statements():
    cedar = (
        "// a comment; with a semicolon\n"
        'permit(principal, action == Action::"invoke", resource) when { context.model == "a;b" };\n'
        "forbid(principal, action, resource) when { resource.nope };"
    )
    at = "p.yaml[0] spec.cedar: line 3, column 1 (statement 2): attribute `nope` on entity type"
    assert causes(cedar) == [
        f"{at} `{kind}` not found" for kind in ("Agent", "Endpoint", "Resource", "Tool")
    ]


def test_unknown_attribute_and_wrong_type_are_schema_violations():
    found = causes(
        'permit(principal, action == Action::"invoke", resource) when { resource.owner == "x" };\n'
        'permit(principal, action == Action::"invoke", resource)\n'
        '  when { context.estimated_tokens < "many" };'
    )
    assert any("line 1, column 1 (statement 1)" in c and "`owner`" in c for c in found)
    assert any("line 2, column 1 (statement 2)" in c and "expected Long" in c for c in found)


def test_unknown_entity_type_and_action_are_refused():
    found = causes('permit(principal is Robot, action == Action::"fly", resource);')
    assert found
    assert all(c.startswith("p.yaml[0] spec.cedar: line 1, column 1") for c in found)
    assert any("unrecognized entity type `Robot`" in c for c in found)
    assert any('unrecognized action `Action::"fly"`' in c for c in found)


def test_empty_text_and_templates_are_refused():
    assert causes("// nothing here\n") == ["p.yaml[0] spec.cedar: no permit or forbid statement"]
    assert causes("permit(?principal, action, resource);") == [
        "p.yaml[0] spec.cedar: line 1, column 1 (statement 1): unexpected token `?principal`"
    ]


def test_missing_cedar_is_a_field_error():
    doc = policy("p", "x")
    del doc["spec"]["cedar"]
    with pytest.raises(Invalid) as caught:
        validate_object(doc)
    assert [c.path for c in caught.value.causes] == ["spec.cedar"]


def test_quickstart_example_and_schema_are_valid():
    for path in sorted(EXAMPLES.glob("*.yaml")):
        validate_object(yaml.safe_load(path.read_text()), location=path.name)
    assert "action invoke appliesTo" in CEDAR_SCHEMA
