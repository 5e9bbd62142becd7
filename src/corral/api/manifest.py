"""Loading manifests: files, directories and stdin into documents tagged with their location.

This is the first step of ``corral apply``: bytes in, plain JSON-shaped documents out, each
named ``file.yaml[i]`` (its index within the file) so every later error can say where it came
from. Validation against the kind schemas happens next, in :mod:`corral.api.validation`.

Input is untrusted, so parsing is defensive: UTF-8 only, a size cap per file, YAML's safe
loader with alias bombs, recursive aliases and deep nesting refused before anything is built,
duplicate keys refused, and only JSON-representable values (timestamps stay strings). Pure:
no network, no store.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import orjson
import yaml
from yaml.constructor import ConstructorError
from yaml.error import MarkedYAMLError, YAMLError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from corral.api.errors import BadRequest, FieldError

MAX_MANIFEST_BYTES = 16 * 1024 * 1024
"""Files (and stdin) larger than this are refused before parsing."""
MAX_ALIASES_PER_DOCUMENT = 1_000
MAX_EXPANDED_NODES = 100_000
"""A document using aliases may expand to at most this many nodes (billion-laughs guard)."""
MAX_NESTING_DEPTH = 100
"""Deeper documents are refused: no real resource nests this far, and deep input is an attack."""
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
STDIN = "-"

try:
    # The libyaml parser is ~8x faster; it is the same safe loader, only in C.
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # PyYAML built without libyaml: same behaviour, slower
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]


@dataclass(frozen=True)
class ManifestDocument:
    """One document of a manifest: its parsed body and where it came from (``f.yaml[0]``)."""

    location: str
    body: Any


class ManifestError(BadRequest):
    """Manifests could not be read; ``causes`` names every file (and line) that failed."""


def load_manifests(
    sources: Sequence[str], *, stdin: BinaryIO | None = None
) -> list[ManifestDocument]:
    """Read every file, directory (recursively, sorted) or ``-`` (stdin) in ``sources``.

    Empty documents are skipped and ``kind: List`` documents are flattened into their items.
    Raises :class:`ManifestError` naming every source that failed; nothing is returned then.
    """
    documents: list[ManifestDocument] = []
    problems: list[FieldError] = []
    for source in sources:
        for name, path in _expand_source(source, problems):
            try:
                data = _read_stdin(stdin) if path is None else _read_file(path, name)
                documents.extend(parse_manifest(data, name))
            except ManifestError as error:
                problems.extend(error.causes)
    if problems:
        raise ManifestError(_summary(problems), causes=problems)
    return documents


def parse_manifest(data: bytes, name: str) -> list[ManifestDocument]:
    """Parse the bytes of one manifest file called ``name`` (``.json`` files as JSON)."""
    text = _decode_utf8(data, name)
    body_list = (
        _parse_json(text, name) if name.endswith(".json") else _parse_yaml_stream(text, name)
    )
    return _flatten(body_list, name)


def _expand_source(source: str, problems: list[FieldError]) -> Iterable[tuple[str, Path | None]]:
    if source == STDIN:
        return [("stdin", None)]
    path = Path(source)
    if path.is_dir():
        found = sorted(_manifest_files(path))
        return [(str(file), file) for file in found]
    if not path.exists():
        problems.append(FieldError("", "does not exist", source))
        return []
    return [(source, path)]


def _manifest_files(directory: Path) -> Iterable[Path]:
    # os.walk does not follow directory symlinks, so a link loop cannot trap us.
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for file in files:
            if file.endswith(MANIFEST_SUFFIXES):
                yield Path(root) / file


def _read_file(path: Path, name: str) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise _too_large(name, size)
        with path.open("rb") as handle:
            data = handle.read(MAX_MANIFEST_BYTES + 1)
    except OSError as error:
        raise _error(name, "", f"cannot be read: {error.strerror or error}") from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise _too_large(name, len(data))
    return data


def _read_stdin(stdin: BinaryIO | None) -> bytes:
    stream = stdin if stdin is not None else sys.stdin.buffer
    data = stream.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise _too_large("stdin", len(data))
    return data


def _decode_utf8(data: bytes, name: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        bad = data[error.start : error.start + 1].hex()
        message = f"is not UTF-8: invalid byte 0x{bad} at byte offset {error.start}"
        raise _error(name, "", message) from None
    return text.removeprefix("\ufeff")


def _parse_json(text: str, name: str) -> list[tuple[int, Any]]:
    try:
        return [(0, orjson.loads(text))]
    except orjson.JSONDecodeError as error:
        where = f"line {error.lineno}, column {error.colno}"
        raise _error(name, "", f"{where}: invalid JSON: {error.msg}") from None


class _ManifestLoader(_BaseLoader):
    """The safe loader, narrowed to JSON: string keys only, no duplicates, no binary or dates."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        _refuse_duplicate_keys(node)
        self.flatten_mapping(node)
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise ConstructorError(
                    None, None, "mapping keys must be plain strings", key_node.start_mark
                )
            # The raw text, so `yes:` or `1:` stay the keys the author wrote.
            mapping[key_node.value] = self.construct_object(value_node, deep=deep)
        return mapping

    def construct_timestamp_text(self, node: ScalarNode) -> str:
        return str(self.construct_scalar(node))

    def construct_json_float(self, node: ScalarNode) -> float:
        value: float = self.construct_yaml_float(node)
        if not math.isfinite(value):
            raise ConstructorError(None, None, f"{node.value} has no JSON form", node.start_mark)
        return value

    def refuse_non_json(self, node: Node) -> Any:
        raise ConstructorError(
            None,
            None,
            f"tag {node.tag.replace('tag:yaml.org,2002:', '!!')} has no JSON form; quote the value",
            node.start_mark,
        )


_ManifestLoader.add_constructor(
    "tag:yaml.org,2002:timestamp", _ManifestLoader.construct_timestamp_text
)
_ManifestLoader.add_constructor("tag:yaml.org,2002:float", _ManifestLoader.construct_json_float)
for _tag in ("binary", "set", "omap", "pairs"):
    _ManifestLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _ManifestLoader.refuse_non_json)


def _refuse_duplicate_keys(node: MappingNode) -> None:
    seen: set[str] = set()
    for key_node, _ in node.value:
        if isinstance(key_node, ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
            if key_node.value in seen:
                raise ConstructorError(
                    None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                )
            seen.add(key_node.value)


def _parse_yaml_stream(text: str, name: str) -> list[tuple[int, Any]]:
    """``(document index, body)`` pairs; the structure is checked before anything is built."""
    documents_with_aliases = _check_structure(text, name)
    loader = _ManifestLoader(text)
    bodies: list[tuple[int, Any]] = []
    index = -1
    try:
        while loader.check_node():
            index += 1
            node = loader.get_node()
            if node is None:
                break
            if index in documents_with_aliases:
                _check_expansion(node, name, index)
            bodies.append((index, loader.construct_document(node)))
    except YAMLError as error:
        raise _yaml_error(error, name, max(index, 0)) from None
    finally:
        loader.dispose()
    return bodies


def _check_structure(text: str, name: str) -> set[int]:
    """Walk the event stream (libyaml parses without recursion) checking depth and aliases.

    Returns the indices of documents that use aliases: only those need the expansion check.
    """
    index, depth, aliases = -1, 0, 0
    with_aliases: set[int] = set()
    opens, closes = _OPENING_EVENTS, _CLOSING_EVENTS
    parser = _ManifestLoader(text)
    try:
        # get_event() straight from the parser: this walk is a third of the loading time.
        while (event := parser.get_event()) is not None:
            kind = type(event)
            if kind is yaml.ScalarEvent:
                continue
            if kind in opens:
                depth += 1
                if depth > MAX_NESTING_DEPTH:
                    raise _marked(
                        name, index, event.start_mark, f"nests deeper than {MAX_NESTING_DEPTH}"
                    )
            elif kind in closes:
                depth -= 1
            elif kind is yaml.DocumentStartEvent:
                index, depth, aliases = index + 1, 0, 0
            elif kind is yaml.AliasEvent:
                aliases += 1
                with_aliases.add(index)
                if aliases > MAX_ALIASES_PER_DOCUMENT:
                    raise _marked(
                        name,
                        index,
                        event.start_mark,
                        f"uses more than {MAX_ALIASES_PER_DOCUMENT} YAML aliases; refused",
                    )
    except YAMLError as error:
        raise _yaml_error(error, name, max(index, 0)) from None
    finally:
        parser.dispose()
    return with_aliases


_OPENING_EVENTS = frozenset({yaml.SequenceStartEvent, yaml.MappingStartEvent})
_CLOSING_EVENTS = frozenset({yaml.SequenceEndEvent, yaml.MappingEndEvent})


def _check_expansion(root: Node, name: str, index: int) -> None:
    """Refuse a document whose aliases expand past the node limit, or refer to themselves.

    Aliases make the node graph a DAG; sizes are memoised per node so the walk stays linear in
    the graph while counting the expanded tree, which is what any consumer would materialise.
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        node_id = id(node)
        children = _children(node)
        if children_done:
            size = 1 + sum(sizes[id(child)] for child in children)
            if size > MAX_EXPANDED_NODES:
                raise _marked(
                    name,
                    index,
                    node.start_mark,
                    f"YAML aliases expand to more than {MAX_EXPANDED_NODES} nodes "
                    "(an alias bomb?); refused",
                )
            sizes[node_id] = size
            on_path.discard(node_id)
            continue
        if node_id in sizes:
            continue
        if node_id in on_path:
            raise _marked(name, index, node.start_mark, "a YAML alias refers to itself; refused")
        on_path.add(node_id)
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _flatten(bodies: list[tuple[int, Any]], name: str) -> list[ManifestDocument]:
    documents: list[ManifestDocument] = []
    for index, body in bodies:
        location = f"{name}[{index}]"
        if body is None:
            continue
        if isinstance(body, dict) and body.get("kind") == "List":
            items = body.get("items")
            if not isinstance(items, list):
                raise _error(location, "items", "a List needs a list of items")
            documents.extend(
                ManifestDocument(f"{location}.items[{i}]", item)
                for i, item in enumerate(items)
                if item is not None
            )
        else:
            documents.append(ManifestDocument(location, body))
    return documents


def _yaml_error(error: YAMLError, name: str, index: int) -> ManifestError:
    if isinstance(error, MarkedYAMLError) and error.problem_mark is not None:
        problem = error.problem or "invalid YAML"
        if "maximum nesting depth" in problem:
            # PyYAML >= 6.0.4 has a limit of its own that its scanner, running ahead of the
            # events, can reach first: the same refusal, in corral's words.
            return _marked(
                name, index, error.problem_mark, f"nests deeper than {MAX_NESTING_DEPTH}"
            )
        context = f" ({error.context})" if error.context else ""
        return _marked(name, index, error.problem_mark, f"{problem}{context}")
    return _error(f"{name}[{index}]", "", f"invalid YAML: {error}")


class _Mark(Protocol):
    line: int
    column: int


def _marked(name: str, index: int, mark: _Mark | None, message: str) -> ManifestError:
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return _error(f"{name}[{index}]", where, message)


def _error(location: str, where: str, message: str) -> ManifestError:
    cause = FieldError(where, message, location)
    return ManifestError(_summary([cause]), causes=[cause])


def _too_large(name: str, size: int) -> ManifestError:
    limit_mib = MAX_MANIFEST_BYTES // (1024 * 1024)
    return _error(name, "", f"is {size} bytes or more; the limit is {limit_mib} MiB")


def _summary(problems: list[FieldError]) -> str:
    count = len(problems)
    return f"cannot load manifests: {count} problem{'s' if count != 1 else ''}"
