"""How objects look on a terminal: tables, ages, condition summaries, YAML and diffs.

Pure formatting (strings and rich renderables), no I/O: the commands decide where output goes.
rich is imported here, and this module only from inside commands, to keep start-up light.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

from corral.api.registry import KindInfo

Object = dict[str, Any]
NONE = "<none>"
_MAX_VALUE_CHARS = 120

try:
    from yaml import CSafeDumper as _Dumper
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeDumper as _Dumper  # type: ignore[assignment]


def to_yaml(value: Any) -> str:
    return yaml.dump(value, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


def to_json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def as_list(items: list[Object]) -> Object:
    """The ``kind: List`` wrapper ``get -o yaml|json`` prints (``apply -f`` reads it back)."""
    from corral.api.objects import API_VERSION

    return {"apiVersion": API_VERSION, "kind": "List", "items": items}


def age(timestamp: str | None, now: datetime | None = None) -> str:
    """``42s``, ``5m``, ``3h``, ``2d`` since ``timestamp`` (RFC 3339), ``-`` when unknown."""
    if not timestamp:
        return "-"
    try:
        then = datetime.fromisoformat(timestamp)
    except ValueError:
        return "-"
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    seconds = max(0, int(((now or datetime.now(UTC)) - then).total_seconds()))
    minutes, rest = divmod(seconds, 60)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 600:
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if seconds < 3 * 3600:
        return f"{minutes}m"
    if seconds < 2 * 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def conditions_of(obj: Object) -> list[dict[str, Any]]:
    status = obj.get("status") or {}
    conditions = status.get("conditions") if isinstance(status, dict) else None
    return [c for c in conditions or [] if isinstance(c, dict)]


def status_summary(obj: Object) -> str:
    """One word, kubectl-style: ``Ready``, else the Ready condition's reason (``ModelNotReady``),
    ``NotReady`` or ``Unknown`` without one, ``Terminating``, or ``-`` before any report."""
    if obj.get("metadata", {}).get("deletionTimestamp"):
        return "Terminating"
    ready = next((c for c in conditions_of(obj) if c.get("type") == "Ready"), None)
    if ready is None:
        return "-"
    if ready.get("status") == "True":
        return "Ready"
    fallback = "NotReady" if ready.get("status") == "False" else "Unknown"
    return str(ready.get("reason") or fallback).replace(" ", "")


def conditions_summary(obj: Object) -> str:
    parts = []
    for condition in conditions_of(obj):
        part = f"{condition.get('type')}={condition.get('status')}"
        if condition.get("status") != "True" and condition.get("reason"):
            part += f"({condition['reason']})"
        parts.append(part)
    return " ".join(parts) or "-"


def lookup_path(obj: Object, dotted: str) -> Any:
    value: Any = obj
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def columns(info: KindInfo, *, wide: bool, all_namespaces: bool) -> list[str]:
    headers = ["NAMESPACE"] if all_namespaces and info.namespaced else []
    headers += ["NAME", "STATUS", "AGE"]
    if wide:
        headers += [header for header, _ in info.printer_columns]
        headers.append("CONDITIONS")
    return headers


def row(info: KindInfo, obj: Object, *, wide: bool, all_namespaces: bool) -> list[str]:
    metadata = obj.get("metadata") or {}
    values = [metadata.get("namespace", "")] if all_namespaces and info.namespaced else []
    values += [
        metadata.get("name", ""),
        status_summary(obj),
        age(metadata.get("creationTimestamp")),
    ]
    if wide:
        values += [cell(lookup_path(obj, path)) for _, path in info.printer_columns]
        values.append(conditions_summary(obj))
    return [str(value) for value in values]


def table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], *, show_header: bool = True
) -> Table:
    """A borderless, kubectl-like table."""
    grid = Table(
        box=None, show_edge=False, pad_edge=False, header_style="bold", show_header=show_header
    )
    for header in headers:
        grid.add_column(header, overflow="fold")
    for values in rows:
        grid.add_row(*values)
    return grid


def pointer_to_field(pointer: str) -> str:
    """``/spec/models/0/weight`` → ``spec.models[0].weight`` (RFC 6901 escapes undone)."""
    field = ""
    for raw in pointer.lstrip("/").split("/") if pointer else []:
        part = raw.replace("~1", "/").replace("~0", "~")
        field += f"[{part}]" if part.isdigit() else (f".{part}" if field else part)
    return field or "(whole object)"


def short_value(value: Any) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 1] + "…"


def diff_lines(diff: list[dict[str, Any]]) -> list[Text]:
    """One coloured line per operation: ``+ added``, ``- removed``, ``~ replaced``."""
    lines = []
    for operation in diff:
        op = operation.get("op")
        field = pointer_to_field(str(operation.get("path", "")))
        if op == "add":
            lines.append(Text(f"+ {field}: {short_value(operation.get('value'))}", "green"))
        elif op == "remove":
            lines.append(Text(f"- {field}", "red"))
        else:
            lines.append(Text(f"~ {field}: {short_value(operation.get('value'))}", "yellow"))
    return lines


def diff_summary(diff: list[dict[str, Any]], *, limit: int = 3) -> str:
    """``~spec.replicas +metadata.labels.tier`` and ``(+2 more)`` past ``limit``."""
    marks = {"add": "+", "remove": "-"}
    parts = [
        f"{marks.get(str(op.get('op')), '~')}{pointer_to_field(str(op.get('path', '')))}"
        for op in diff[:limit]
    ]
    if len(diff) > limit:
        parts.append(f"(+{len(diff) - limit} more)")
    return " ".join(parts) or "-"


def history_table(entries: list[dict[str, Any]]) -> Table:
    rows = [
        [
            str(entry.get("generation", "")),
            f"{entry.get('timestamp', '')} ({age(entry.get('timestamp'))} ago)",
            str(entry.get("actor") or "-"),
            str(entry.get("action", "")),
            diff_summary(entry.get("diff") or []),
        ]
        for entry in entries
    ]
    return table(["GENERATION", "WHEN", "WHO", "ACTION", "CHANGES"], rows)


def emit(*renderables: Any) -> None:
    """Print to stdout: coloured on a terminal; plain, unfolded and unpadded when piped."""
    terminal = Console(highlight=False)
    if terminal.is_terminal:
        for renderable in renderables:
            terminal.print(renderable)
        return
    # Piped output is for scripts: never fold a row to an imagined 80 columns.
    piped = Console(highlight=False, width=10_000)
    with piped.capture() as captured:
        for renderable in renderables:
            piped.print(renderable)
    text = "\n".join(line.rstrip() for line in captured.get().splitlines())
    sys.stdout.write(text + "\n")


def indented(text: str, by: int = 2) -> str:
    return "\n".join(" " * by + line for line in text.rstrip("\n").splitlines())
