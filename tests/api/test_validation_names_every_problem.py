"""Validation reports every problem with its manifest location and field path, and defaults."""

from typing import Any

import pytest

from corral.api import Invalid
from corral.api.objects import MAX_OBJECT_BYTES
from corral.api.validation import validate_object


def endpoint(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Endpoint",
        "metadata": {"name": "chat"},
        "spec": {"models": [{"model": "small"}], **spec},
    }


def problems(doc: Any, location: str = "chat.yaml[1]") -> list[str]:
    with pytest.raises(Invalid) as caught:
        validate_object(doc, location=location)
    return [str(cause) for cause in caught.value.causes]


def test_defaults_are_filled_and_namespace_defaults():
    obj = validate_object(endpoint())
    assert obj["metadata"]["namespace"] == "default"
    assert obj["spec"]["replicas"] == 1
    assert obj["spec"]["runtime"]["type"] == "llamacpp"
    assert obj["spec"]["models"] == [{"model": "small", "weight": 100}]


def test_field_path_and_location_in_each_cause():
    doc = endpoint(models=[{"model": "small", "weight": 101}])
    assert problems(doc) == [
        "chat.yaml[1] spec.models[0].weight: Input should be less than or equal to 100"
    ]


def test_unknown_fields_are_errors_everywhere():
    doc = endpoint(replicaz=2)
    doc["extra"] = True
    doc["metadata"]["labelz"] = {}
    found = problems(doc)
    assert "chat.yaml[1] extra: unknown field" in found
    assert "chat.yaml[1] metadata.labelz: unknown field" in found


def test_spec_problems_reported_together_with_name_problems():
    doc = endpoint(replicas=-1)
    doc["metadata"]["name"] = "Not_A_Name"
    found = problems(doc)
    assert any(p.startswith("chat.yaml[1] metadata.name:") and "DNS-1123" in p for p in found)
    assert any(p.startswith("chat.yaml[1] spec.replicas:") for p in found)


@pytest.mark.parametrize(
    ("api_version", "kind", "expected"),
    [
        ("v1", "Endpoint", "apiVersion: must be 'corral.dev/v1alpha1'"),
        ("corral.dev/v1alpha1", "Pod", "kind: unknown kind 'Pod'"),
        ("corral.dev/v1alpha1", "endpoint", "kind: unknown kind 'endpoint'"),
    ],
)
def test_wrong_api_version_or_kind(api_version: str, kind: str, expected: str):
    doc = endpoint()
    doc["apiVersion"], doc["kind"] = api_version, kind
    assert any(expected in p for p in problems(doc))


def test_cluster_scoped_kind_refuses_namespace():
    doc = {"apiVersion": "corral.dev/v1alpha1", "kind": "Namespace", "metadata": {"name": "a"}}
    assert validate_object(doc)["metadata"].get("namespace") is None
    doc["metadata"]["namespace"] = "default"
    assert problems(doc) == [
        "chat.yaml[1] metadata.namespace: Namespace is cluster-scoped: no namespace"
    ]


def test_label_keys_and_values_checked():
    doc = endpoint()
    doc["metadata"]["labels"] = {"team": "ok", "bad key!": "x", "app": "v" * 64}
    found = problems(doc)
    assert len(found) == 2
    assert all("metadata.labels." in p for p in found)


def test_cross_field_rules():
    assert any(
        "runtime.baseURL is required" in p for p in problems(endpoint(runtime={"type": "openai"}))
    )
    zero = endpoint(models=[{"model": "a", "weight": 0}])
    assert any("at least one weight" in p for p in problems(zero))
    twice = endpoint(models=[{"model": "a"}, {"model": "a"}])
    assert any("each Model may appear once" in p for p in problems(twice))


def test_model_source_and_digest_formats():
    doc = {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Model",
        "metadata": {"name": "m"},
        "spec": {"source": "s3://bucket/x", "digest": "md5:abc"},
    }
    found = problems(doc)
    assert any(p.startswith("chat.yaml[1] spec.source:") for p in found)
    assert any(p.startswith("chat.yaml[1] spec.digest:") for p in found)


def test_oversized_object_refused():
    doc = endpoint()
    doc["metadata"]["annotations"] = {"blob": "x" * MAX_OBJECT_BYTES}
    assert any("the limit is" in p for p in problems(doc))


def test_not_a_mapping():
    assert problems(["a", "list"]) == ["chat.yaml[1] expected a mapping (an object), got list"]


def test_status_is_dropped_on_the_way_in():
    doc = endpoint()
    doc["status"] = {"readyReplicas": 5}
    assert "status" not in validate_object(doc)


def test_batch_names_both_places_of_a_duplicate_and_keeps_the_valid_ones():
    from corral.api.validation import validate_documents

    bad = endpoint(replicas=-1)
    valid, found = validate_documents(
        [(endpoint(), "a.yaml[0]"), (endpoint(), "b.yaml[2]"), (bad, "c.yaml[0]")]
    )
    assert [location for _, location in valid] == ["a.yaml[0]"]
    assert str(found[0]) == (
        "b.yaml[2] metadata.name: Endpoint/default/chat is declared twice: at a.yaml[0] and here"
    )
    assert found[1].location == "c.yaml[0]"
    assert found[1].path == "spec.replicas"
