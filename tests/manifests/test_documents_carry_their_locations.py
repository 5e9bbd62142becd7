"""Every document comes back with ``file[i]``: multi-document files, directories, Lists, stdin."""

from __future__ import annotations

import io
from pathlib import Path

from corral.api.manifest import load_manifests, parse_manifest


def locations_and_names(docs: list) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(doc.location, doc.body["metadata"]["name"]) for doc in docs]


def model(name: str) -> str:
    return f"kind: Model\nmetadata: {{name: {name}}}\n"


def test_multi_document_file_indexes_documents_and_skips_empty_ones() -> None:
    text = f"---\n{model('a')}---\n---\n# only a comment\n---\n{model('b')}".encode()
    docs = parse_manifest(text, "stack.yaml")
    assert locations_and_names(docs) == [("stack.yaml[0]", "a"), ("stack.yaml[3]", "b")]


def test_list_kind_is_flattened_into_its_items() -> None:
    text = (
        f"{model('first')}---\nkind: List\nitems:\n"
        "- {kind: Model, metadata: {name: x}}\n- null\n- {kind: Model, metadata: {name: y}}\n"
    )
    docs = parse_manifest(text.encode(), "list.yaml")
    assert locations_and_names(docs) == [
        ("list.yaml[0]", "first"),
        ("list.yaml[1].items[0]", "x"),
        ("list.yaml[1].items[2]", "y"),
    ]


def test_directories_are_read_recursively_in_sorted_order(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "a.yaml").write_text(model("one"))
    (tmp_path / "b" / "c.yml").write_text(model("two") + "---\n" + model("three"))
    (tmp_path / "b" / "d.json").write_text('{"kind": "Model", "metadata": {"name": "four"}}')
    (tmp_path / "b" / "notes.txt").write_text("not a manifest: [")
    (tmp_path / "z.yaml").write_text(model("five"))
    docs = load_manifests([str(tmp_path)])
    assert locations_and_names(docs) == [
        (f"{tmp_path / 'a.yaml'}[0]", "one"),
        (f"{tmp_path / 'b' / 'c.yml'}[0]", "two"),
        (f"{tmp_path / 'b' / 'c.yml'}[1]", "three"),
        (f"{tmp_path / 'b' / 'd.json'}[0]", "four"),
        (f"{tmp_path / 'z.yaml'}[0]", "five"),
    ]


def test_stdin_is_read_for_a_dash() -> None:
    docs = load_manifests(["-"], stdin=io.BytesIO(model("piped").encode()))
    assert locations_and_names(docs) == [("stdin[0]", "piped")]


def test_values_stay_json_shaped() -> None:
    text = (
        b"metadata:\n  annotations:\n    at: 2024-05-01T10:00:00Z\n    day: 2024-05-01\n"
        b"  labels: {yes: on, 1: x}\n"
    )
    body = parse_manifest(text, "values.yaml")[0].body
    assert body["metadata"]["annotations"] == {"at": "2024-05-01T10:00:00Z", "day": "2024-05-01"}
    # Keys keep the author's text; YAML 1.1 booleans still apply to values.
    assert body["metadata"]["labels"] == {"yes": True, "1": "x"}
