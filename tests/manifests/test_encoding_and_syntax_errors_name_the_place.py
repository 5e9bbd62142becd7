"""Malformed manifests are refused with the file, and the line and column or byte offset."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.api.manifest import ManifestError, load_manifests, parse_manifest


def causes(error: pytest.ExceptionInfo[ManifestError]) -> list[str]:
    return [str(cause) for cause in error.value.causes]


def test_non_utf8_input_names_the_file_and_byte_offset() -> None:
    with pytest.raises(ManifestError) as error:
        parse_manifest(b"kind: Model\nname: caf\xe9\n", "latin1.yaml")
    assert causes(error) == ["latin1.yaml is not UTF-8: invalid byte 0xe9 at byte offset 21"]


def test_utf8_byte_order_mark_is_accepted() -> None:
    assert parse_manifest(b"\xef\xbb\xbfkind: Model\n", "bom.yaml")[0].body == {"kind": "Model"}


def test_yaml_syntax_error_names_file_document_line_and_column() -> None:
    text = b"kind: Model\n---\nkind: Endpoint\nmetadata:\n  name: chat\n   bad: indent\n"
    with pytest.raises(ManifestError) as error:
        parse_manifest(text, "app.yaml")
    (cause,) = causes(error)
    assert cause.startswith("app.yaml[1] line 6, column 7: ")
    assert "mapping values are not allowed" in cause


def test_unclosed_flow_sequence_points_at_where_it_broke() -> None:
    with pytest.raises(ManifestError) as error:
        parse_manifest(b"spec:\n  models: [a, b\n", "flow.yaml")
    (cause,) = causes(error)
    assert cause.startswith("flow.yaml[0] line 3, column 1: ")


def test_duplicate_keys_are_refused_where_the_second_one_is() -> None:
    with pytest.raises(ManifestError) as error:
        parse_manifest(b"metadata:\n  name: a\n  name: b\n", "dup.yaml")
    assert causes(error) == ["dup.yaml[0] line 3, column 3: duplicate key 'name'"]


def test_json_syntax_error_names_line_and_column() -> None:
    with pytest.raises(ManifestError) as error:
        parse_manifest(b'{\n  "kind": "Model",\n}\n', "obj.json")
    (cause,) = causes(error)
    assert cause == "obj.json line 2, column 18: invalid JSON: trailing comma is not allowed"


def test_every_broken_file_is_reported_at_once(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_bytes(b"x: [\n")
    (tmp_path / "b.yaml").write_bytes(b"kind: Model\n")
    (tmp_path / "c.yml").write_bytes(b"\xff\n")
    with pytest.raises(ManifestError) as error:
        load_manifests([str(tmp_path), str(tmp_path / "missing.yaml")])
    reported = causes(error)
    assert error.value.message == "cannot load manifests: 3 problems"
    assert reported[0].startswith(f"{tmp_path / 'a.yaml'}[0] line 2, column 1: ")
    assert reported[1] == f"{tmp_path / 'c.yml'} is not UTF-8: invalid byte 0xff at byte offset 0"
    assert reported[2] == f"{tmp_path / 'missing.yaml'} does not exist"


def test_a_list_without_items_is_refused() -> None:
    with pytest.raises(ManifestError) as error:
        parse_manifest(b"kind: List\nitems: {}\n", "list.yaml")
    assert causes(error) == ["list.yaml[0] items: a List needs a list of items"]
