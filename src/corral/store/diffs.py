"""JSON-patch style diffs, recorded in the history and returned by ``apply``.

The diff is a small subset of RFC 6902: ``add``, ``remove`` and ``replace`` with RFC 6901 paths
rooted at the object (``/spec/models/0/weight``). Lists are compared whole: one ``replace`` of
the list says more to a reader than index-by-index edits that shift under each other.
"""

from __future__ import annotations

from typing import Any

_MISSING = object()


def json_diff(old: Any, new: Any, path: str = "") -> list[dict[str, Any]]:
    """The operations that turn ``old`` into ``new``; empty when they are equal."""
    operations: list[dict[str, Any]] = []
    _diff_into(operations, old, new, path)
    return operations


def _diff_into(operations: list[dict[str, Any]], old: Any, new: Any, path: str) -> None:
    if old is _MISSING:
        operations.append({"op": "add", "path": path, "value": new})
    elif new is _MISSING:
        operations.append({"op": "remove", "path": path})
    elif isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(key for key in new if key not in old)]:
            old_value = old.get(key, _MISSING)
            new_value = new.get(key, _MISSING)
            if old_value != new_value:
                _diff_into(operations, old_value, new_value, f"{path}/{_escape(str(key))}")
    elif old != new:
        operations.append({"op": "replace", "path": path, "value": new})


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")
