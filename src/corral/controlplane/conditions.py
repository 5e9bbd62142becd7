"""Helpers for ``status.conditions``: the observations controllers report back to users.

Conditions follow Kubernetes ``metav1.Condition``: ``{type, status, reason, message,
lastTransitionTime, observedGeneration}``. ``lastTransitionTime`` moves only when ``status``
changes, so a reconciler can call :func:`set_condition` on every pass without making the object
look freshly changed (and without writing a new status when nothing changed).
"""

from __future__ import annotations

from typing import Any

from corral.api.objects import now_rfc3339

_STATUS_VALUES = ("True", "False", "Unknown")


def get_condition(status: dict[str, Any] | None, type: str) -> dict[str, Any] | None:
    """The condition of ``type`` in ``status`` (the object's ``status`` dict), or None."""
    for condition in (status or {}).get("conditions") or []:
        if isinstance(condition, dict) and condition.get("type") == type:
            return condition
    return None


def is_true(status: dict[str, Any] | None, type: str) -> bool:
    condition = get_condition(status, type)
    return condition is not None and condition.get("status") == "True"


def set_condition(
    status: dict[str, Any],
    type: str,
    status_value: str | bool,
    reason: str,
    message: str = "",
    observed_generation: int = 0,
) -> bool:
    """Add or update the condition of ``type`` in ``status`` in place.

    ``status_value`` is ``"True"``, ``"False"``, ``"Unknown"`` or a bool. Returns whether
    anything changed, so callers can skip a status write when it did not.
    """
    value = _status_value(status_value)
    if not type:
        raise ValueError("condition type must not be empty")
    conditions = status.setdefault("conditions", [])
    if not isinstance(conditions, list):
        raise ValueError(f"status.conditions must be a list (got {conditions.__class__.__name__})")
    wanted = {
        "type": type,
        "status": value,
        "reason": reason,
        "message": message,
        "observedGeneration": observed_generation,
    }
    current = get_condition(status, type)
    if current is None:
        conditions.append({**wanted, "lastTransitionTime": now_rfc3339()})
        return True
    unchanged = all(current.get(field) == wanted[field] for field in wanted)
    if unchanged:
        return False
    if current.get("status") != value or not current.get("lastTransitionTime"):
        current["lastTransitionTime"] = now_rfc3339()
    current.update(wanted)
    return True


def _status_value(value: str | bool) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if value not in _STATUS_VALUES:
        raise ValueError(f"condition status must be one of {_STATUS_VALUES} (got {value!r})")
    return value
