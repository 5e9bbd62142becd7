"""``Policy``: Cedar ``permit``/``forbid`` statements over corral's principals and resources.

A Policy is checked twice at the write gate: pydantic checks the envelope of the spec, then
``check_cedar`` (the kind's ``check_spec`` hook) parses the text and validates it against
``CEDAR_SCHEMA``, so a policy that could never be evaluated is refused at ``corral apply``
with Cedar's diagnostics, each placed at the line and column where its statement starts.
Cedar itself (``cedarpy``) is imported only when a Policy is checked, so importing the API
layer stays cheap. ``corral.policy`` compiles stored Policies into the engine the gateway asks.

The schema lives here, beside the kind, because the write gate needs it and this layer imports
nothing else of corral's; ``corral.policy`` re-exports it and docs/policy.md explains it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from corral.api.registry import KindInfo, register_kind

CEDAR_SCHEMA = """\
// Principals carry their team's labels as tags (principal.getTag("tier")); ``act`` is the
// delegation chain (RFC 8693), the acting party first. Teams are namespaced: "ns/name".
entity Namespace;
entity Team in [Namespace] = { name: String, namespace: String } tags String;
entity User in [Team] = { name: String, act: Set<String>, team?: String } tags String;
entity ApiKey in [Team] = {
  name: String, namespace: String, team: String, act: Set<String>
} tags String;
// An agent acting for a user (a token with sub = the user, act.sub = the agent) is the Agent,
// with the user in ``user``.
entity Agent in [Team, Namespace] = {
  name: String, namespace: String, act: Set<String>, team?: String, user?: String
} tags String;

// Resources: an object's labels are its tags (resource.getTag("team")).
entity Endpoint in [Namespace] = { name: String, namespace: String } tags String;
entity Model in [Namespace] = { name: String, namespace: String } tags String;
entity Tool in [Namespace] = { name: String, namespace: String, risk: String } tags String;
entity Resource in [Namespace] = { kind: String, name: String, namespace: String } tags String;

// One tool call's arguments: scalar values as strings, nested values as JSON text.
entity Arguments tags String;

type Clock = { hour: Long, weekday: Long };

// invoke on an Agent: start and talk to its sessions (model "agent:NAME" or the sessions API).
action invoke appliesTo {
  principal: [User, ApiKey, Agent],
  resource: [Endpoint, Agent],
  context: {
    model: String, estimated_tokens: Long, time: Clock, client_ip?: ipaddr, stream?: Bool
  }
};
// call_without_approval: asked after a permitted call; a permit waives the approval that
// write/destructive tools need, a forbid makes any call wait for a person. tool (the MCP tool),
// risk (its effective risk) and user (on whose behalf) are set on calls from agent sessions.
action call, call_without_approval appliesTo {
  principal: [User, ApiKey, Agent],
  resource: [Tool],
  context: {
    arguments: Arguments, argument_names: Set<String>, time: Clock, client_ip?: ipaddr,
    tool?: String, risk?: String, user?: String
  }
};
action apply, delete appliesTo {
  principal: [User, ApiKey, Agent],
  resource: [Resource],
  context: { time: Clock, client_ip?: ipaddr }
};
"""
"""corral's Cedar schema (Cedar schema syntax): every Policy is validated against it."""


class PolicySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cedar: str = Field(
        min_length=1, description="Cedar policy text: one or more permit/forbid statements"
    )
    description: str = Field(default="", description="what the policy is for, for readers")
    enabled: bool = Field(default=True, description="false keeps the policy stored but unused")


@dataclass(frozen=True)
class Statement:
    """One ``permit``/``forbid`` statement's place in the policy text (1-based)."""

    number: int
    line: int
    column: int
    text: str


def split_statements(text: str) -> list[Statement]:
    """The statements of ``text`` in order, each with where it starts.

    Cedar reports errors per statement without positions; this split (aware of strings and
    ``//`` comments) lets every diagnostic name a line and column.
    """
    statements: list[Statement] = []
    start: tuple[int, int, int] | None = None  # offset, line, column
    line, column, index = 1, 1, 0
    in_string = False
    while index < len(text):
        char = text[index]
        if in_string:
            if char == "\\":
                index, column = index + 1, column + 1
            elif char == '"':
                in_string = False
        elif text.startswith("//", index):
            end = text.find("\n", index)
            index = len(text) if end < 0 else end
            continue
        elif not char.isspace():
            if start is None:
                start = (index, line, column)
            if char == '"':
                in_string = True
            elif char == ";":
                statements.append(
                    Statement(len(statements) + 1, start[1], start[2], text[start[0] : index + 1])
                )
                start = None
        if char == "\n":
            line, column = line + 1, 1
        else:
            column += 1
        index += 1
    if start is not None:
        statements.append(Statement(len(statements) + 1, start[1], start[2], text[start[0] :]))
    return statements


def cedar_problems(text: str) -> list[str]:
    """Every reason ``text`` is not a valid corral policy, each placed by line and column."""
    import cedarpy  # deferred: only the write gate and the policy engine need Cedar

    statements = split_statements(text)
    try:
        parsed: dict[str, Any] = json.loads(cedarpy.policies_to_json_str(text))
    except ValueError as whole_error:
        parse_errors = []
        for statement in statements:
            try:
                cedarpy.policies_to_json_str(statement.text)
            except ValueError as error:
                parse_errors.append(f"{_place(statement)}: {error}")
        return parse_errors or [f"cannot parse: {whole_error}"]
    count = len(parsed.get("staticPolicies") or {})
    if parsed.get("templates"):
        return ["templates (?principal, ?resource slots) are not supported; name the entities"]
    if count == 0:
        return ["no permit or forbid statement"]
    by_id = {f"policy{i}": s for i, s in enumerate(statements)} if count == len(statements) else {}
    result = cedarpy.validate_policies(text, _schema())
    located: list[tuple[int, str]] = []
    for finding in result.errors:
        where = by_id.get(finding.policy_id)
        message = finding.error.replace(f"for policy `{finding.policy_id}`, ", "")
        located.append((where.number, f"{_place(where)}: {message}") if where else (0, message))
    # Cedar's order varies between runs; statement order, then text, reads and diffs well.
    return [message for _, message in sorted(located)]


def _place(statement: Statement) -> str:
    return f"line {statement.line}, column {statement.column} (statement {statement.number})"


_SCHEMA_HANDLE: list[Any] = []


def _schema() -> Any:
    # Parsed once per process: compiling the schema costs far more than validating a policy.
    import cedarpy

    if not _SCHEMA_HANDLE:
        _SCHEMA_HANDLE.append(cedarpy.Schema.from_str(CEDAR_SCHEMA))
    return _SCHEMA_HANDLE[0]


def _check_policy_spec(spec: Any) -> list[tuple[str, str]]:
    if not isinstance(spec, PolicySpec):
        raise TypeError(f"expected a PolicySpec, got {type(spec).__name__}")
    return [("spec.cedar", problem) for problem in cedar_problems(spec.cedar)]


POLICY = register_kind(
    KindInfo(
        kind="Policy",
        plural="policies",
        spec_model=PolicySpec,
        short_names=("pol",),
        description="Cedar permit/forbid statements deciding who may do what.",
        printer_columns=(("ENABLED", "spec.enabled"), ("DESCRIPTION", "spec.description")),
        check_spec=_check_policy_spec,
    )
)
