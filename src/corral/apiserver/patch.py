"""JSON Merge Patch (RFC 7386), the one PATCH flavour the API server accepts.

The PATCH handler applies :func:`merge_patch` to the object it just read and writes the result
with the read resourceVersion, so a concurrent writer turns into a Conflict and a retry rather
than a lost update.
"""

from __future__ import annotations

from typing import Any


def merge_patch(target: Any, patch: Any) -> Any:
    """``target`` with ``patch`` merged in; neither argument is modified.

    Objects merge key by key, ``null`` removes a key, and anything else (arrays included)
    replaces the target value whole.
    """
    if not isinstance(patch, dict):
        return patch
    merged: dict[str, Any] = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged
