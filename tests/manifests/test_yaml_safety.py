"""Untrusted YAML is refused before it can cost memory or time: bombs, loops, deep nesting."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.api.manifest import (
    MAX_ALIASES_PER_DOCUMENT,
    MAX_MANIFEST_BYTES,
    MAX_NESTING_DEPTH,
    ManifestError,
    load_manifests,
    parse_manifest,
)

BILLION_LAUGHS = b"""\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def only_cause(error: pytest.ExceptionInfo[ManifestError]) -> str:
    assert len(error.value.causes) == 1
    return str(error.value.causes[0])


def test_billion_laughs_is_refused_naming_the_file() -> None:
    with pytest.raises(ManifestError) as error:
        parse_manifest(BILLION_LAUGHS, "bomb.yaml")
    cause = only_cause(error)
    assert cause.startswith("bomb.yaml[0] line ")
    assert "alias bomb" in cause


def test_merge_key_bomb_is_refused() -> None:
    levels = ["l0: &l0 {a: 1, b: 2, c: 3}"]
    for level in range(1, 12):
        merges = ", ".join([f"*l{level - 1}"] * 4)
        levels.append(f"l{level}: &l{level} {{<<: [{merges}], k{level}: {level}}}")
    with pytest.raises(ManifestError) as error:
        parse_manifest("\n".join(levels).encode(), "merge.yaml")
    assert "alias bomb" in only_cause(error)


def test_recursive_alias_is_refused() -> None:
    with pytest.raises(ManifestError) as error:
        parse_manifest(b"spec: &loop\n  again: *loop\n", "loop.yaml")
    assert "refers to itself" in only_cause(error)


def test_too_many_aliases_are_refused() -> None:
    many = ", ".join(["*x"] * (MAX_ALIASES_PER_DOCUMENT + 1))
    with pytest.raises(ManifestError) as error:
        parse_manifest(f"x: &x 1\ny: [{many}]\n".encode(), "aliases.yaml")
    assert f"more than {MAX_ALIASES_PER_DOCUMENT} YAML aliases" in only_cause(error)


def test_modest_aliases_still_work() -> None:
    docs = parse_manifest(b"base: &base {team: search}\nlabels: *base\n", "ok.yaml")
    assert docs[0].body == {"base": {"team": "search"}, "labels": {"team": "search"}}


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 200_000,
        b"- " * 200_000 + b"x",
        b"a:\n" + b"".join(b" " * i + b"b:\n" for i in range(1, 300)),
    ],
    ids=["flow", "compact-sequences", "block-mappings"],
)
def test_deep_nesting_is_refused_without_crashing(payload: bytes) -> None:
    with pytest.raises(ManifestError) as error:
        parse_manifest(payload, "deep.yaml")
    assert f"nests deeper than {MAX_NESTING_DEPTH}" in only_cause(error)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"x: !!python/object/apply:os.system [ls]\n", "could not determine a constructor"),
        (b"x: !!binary aGVsbG8=\n", "!!binary has no JSON form"),
        (b"x: !!set {a, b}\n", "!!set has no JSON form"),
        (b"x: .nan\n", ".nan has no JSON form"),
        (b"? [a, b]\n: c\n", "mapping keys must be plain strings"),
    ],
)
def test_values_without_a_json_form_are_refused(text: bytes, expected: str) -> None:
    with pytest.raises(ManifestError) as error:
        parse_manifest(text, "tags.yaml")
    assert expected in only_cause(error)


def test_files_over_the_size_limit_are_refused_before_parsing(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as handle:
        handle.truncate(MAX_MANIFEST_BYTES + 1)
    with pytest.raises(ManifestError) as error:
        load_manifests([str(big)])
    assert (
        only_cause(error) == f"{big} is {MAX_MANIFEST_BYTES + 1} bytes or more; the limit is 16 MiB"
    )
