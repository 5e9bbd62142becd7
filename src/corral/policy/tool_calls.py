"""Tool-call decisions: may this principal call this MCP tool now, and must a person approve?

Where it sits: the agent runtime's tool gate (``corral.agents.authority_gate``) asks
:func:`decide_tool_call` before every tool call; the gateway and the API server never do.
Two Cedar questions, both about the ``Tool`` resource (its ``risk`` attribute and its labels
as tags) with one context: ``tool`` (the MCP tool's name), ``risk`` (its effective risk, after
the Tool's per-tool overrides), ``user`` (on whose behalf, when anyone's), the ``arguments``
(tags of a per-call ``Arguments`` entity), ``argument_names`` and ``time``.

1. ``Action::"call"``: deny by default. A deny ends the call; its reason names the deciding
   ``forbid`` statements, or says that no policy permits it.
2. ``Action::"call_without_approval"``: may the call skip a person's approval?

   - ``write``/``destructive`` tools wait for approval unless a ``permit`` of this action
     applies (and no ``forbid`` does);
   - any tool, ``read`` included, waits for approval when a ``forbid`` of this action applies
     (a statement that errors counts as applying: fail closed, as the engine does for ``call``).

The caller may add its own rules (an Agent's ``approvals.require``) on top; see
``corral.agents.authority_gate``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from corral.policy.engine import Decision, PolicySnapshot, decide
from corral.policy.entities import Entity, call_context

CALL = "call"
CALL_WITHOUT_APPROVAL = "call_without_approval"
RISKS_NEEDING_APPROVAL = frozenset({"write", "destructive"})

Effect = Literal["allow", "deny", "approve"]


@dataclass(frozen=True, slots=True)
class ToolCallDecision:
    """What policy says about one tool call.

    ``approval`` is ``"required"`` (write/destructive and no waiver), ``"forced"`` (a
    ``forbid`` of ``call_without_approval`` applied), ``"waived"`` (a ``permit`` of it did) or
    ``"none"`` (a read tool nothing forced).
    """

    effect: Effect
    reason: str
    approval: Literal["required", "forced", "waived", "none"]
    call: Decision
    without_approval: Decision | None = None

    @property
    def policies(self) -> tuple[str, ...]:
        """The Policy objects (``namespace/name``) that decided, each once."""
        both = self.call.policies + (
            self.without_approval.policies if self.without_approval is not None else ()
        )
        return tuple(dict.fromkeys(both))


def tool_call_context(
    call_id: str,
    *,
    tool: str,
    risk: str,
    arguments: Mapping[str, Any],
    now: datetime,
    user: str | None = None,
) -> tuple[dict[str, Any], Entity]:
    """The context of a call from an agent session, and its ``Arguments`` entity."""
    context, entity = call_context(call_id, arguments, now=now)
    context["tool"] = tool
    context["risk"] = risk
    if user is not None:
        context["user"] = user
    return context, entity


def decide_tool_call(
    snapshot: PolicySnapshot,
    principal: Entity,
    resource: Entity,
    *,
    call_id: str,
    tool: str,
    risk: str,
    arguments: Mapping[str, Any],
    now: datetime,
    user: str | None = None,
) -> ToolCallDecision:
    """Ask both questions (see the module docstring) against ``snapshot``."""
    if resource.type != "Tool":
        raise ValueError(f"a tool call's resource is a Tool entity, not {resource.type}")
    context, args = tool_call_context(
        call_id, tool=tool, risk=risk, arguments=arguments, now=now, user=user
    )
    call = decide(snapshot, principal, CALL, resource, context, entities=[args])
    if not call.allowed:
        return ToolCallDecision("deny", _denial(call, tool, resource), "none", call)
    waiver = decide(snapshot, principal, CALL_WITHOUT_APPROVAL, resource, context, entities=[args])
    if waiver.allowed:
        return ToolCallDecision("allow", _because(waiver), "waived", call, waiver)
    if waiver.reasons or waiver.errors:
        reason = f"approval forced by {_because(waiver)}"
        return ToolCallDecision("approve", reason, "forced", call, waiver)
    if risk in RISKS_NEEDING_APPROVAL:
        reason = f"{risk} tool {tool} needs approval (no policy permits call_without_approval)"
        return ToolCallDecision("approve", reason, "required", call, waiver)
    return ToolCallDecision("allow", _because(call), "none", call, waiver)


def _denial(decision: Decision, tool: str, resource: Entity) -> str:
    where = f"call of {tool} on Tool {resource.id}"
    if decision.reasons:
        return f"{where} denied by {_because(decision)}"
    if decision.errors:
        return f"{where} denied: {'; '.join(decision.errors)}"
    return f"{where} denied: no policy permits it"


def _because(decision: Decision) -> str:
    parts = [str(ref) for ref in decision.reasons]
    if decision.errors:
        parts.append("errors: " + "; ".join(decision.errors))
    return ", ".join(parts) or "no deciding policy"
