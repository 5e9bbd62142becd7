"""``Agent``: instructions, a model Endpoint, the Tools it may call, and the rules it runs under.

The agents role runs its sessions (``corral.agents``): every step is journaled, model calls go
through the gateway as the agent, and each tool call is a policy decision. Tools are Tool
names (``files``, ``other-ns/files``), optionally narrowed to some of the server's MCP tools
(``{tool: files, allow: [read_file]}``), or another agent (``agent:planner``) called over A2A.

Limits bound each session (steps, seconds, tokens, USD) and the agent as a whole (sessions
running at once; more wait in a queue). Approval rules name risk levels or tool names whose
calls wait for a person (``write`` and ``destructive`` by default).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from corral.api.objects import DNS1123_SUBDOMAIN, ResourceStatus
from corral.api.registry import KindInfo, register_kind

AGENT_TOOL_PREFIX = "agent:"
RISK_LEVELS = ("read", "write", "destructive")


def _check_ref(ref: str) -> str:
    """``name``, ``namespace/name`` or ``agent:`` plus either: each part a DNS-1123 name."""
    target = ref.removeprefix(AGENT_TOOL_PREFIX)
    parts = target.split("/")
    if len(parts) > 2 or not all(DNS1123_SUBDOMAIN.match(part) for part in parts):
        raise ValueError(
            f"{ref!r} is not a Tool reference: use 'name', 'namespace/name' or 'agent:name'"
        )
    return ref


class ToolRef(BaseModel):
    """A Tool with only some of its MCP tools allowed."""

    model_config = ConfigDict(extra="forbid")

    tool: str = Field(min_length=1, description="Tool name, namespace/name, or agent:name")
    allow: list[str] = Field(
        min_length=1, description="the server's MCP tool names the agent may call"
    )

    _ref = field_validator("tool")(_check_ref)

    @field_validator("allow")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        if any(not name for name in value) or len(set(value)) != len(value):
            raise ValueError("allow: names must be non-empty and listed once")
        return value


class AgentLimits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    maxSteps: int = Field(default=50, gt=0, le=100_000, description="steps per session")
    maxDurationSeconds: float = Field(
        default=3600.0, gt=0, le=30 * 86_400, description="wall time per session"
    )
    maxConcurrentSessions: int | None = Field(
        default=None, gt=0, description="sessions running at once; more wait in a queue"
    )
    maxTokens: int | None = Field(default=None, gt=0, description="model tokens per session")
    maxCostUSD: float | None = Field(default=None, gt=0, description="model cost per session")


class ApprovalRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    require: list[str] = Field(
        default_factory=lambda: ["write", "destructive"],
        description="risk levels (read|write|destructive) or tool names that need a person",
    )
    timeoutSeconds: float = Field(
        default=3600.0, gt=0, le=30 * 86_400, description="an unanswered request is denied"
    )

    @field_validator("require")
    @classmethod
    def _entries(cls, value: list[str]) -> list[str]:
        if any(not entry for entry in value):
            raise ValueError("require: entries must be non-empty")
        return value


class AgentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instructions: str = Field(default="", max_length=100_000, description="the system prompt")
    model: str = Field(min_length=1, description="an Endpoint name the gateway serves")
    tools: list[str | ToolRef] = Field(default_factory=list, max_length=128)
    limits: AgentLimits = Field(default_factory=AgentLimits)
    budget: str | None = Field(default=None, description="a Budget charged for the model calls")
    approvals: ApprovalRules = Field(default_factory=ApprovalRules)
    memory: Literal["none", "conversation"] = Field(
        default="conversation", description="whether a session keeps earlier turns"
    )
    retentionSeconds: float = Field(
        default=7 * 86_400.0, gt=0, description="how long an ended session's journal is kept"
    )
    toolChoice: str | None = Field(
        default=None,
        min_length=1,
        description="the first model call of each turn: auto, required, none or a function "
        "name (makes small models call a tool); later calls of the turn are the model's choice",
    )

    @field_validator("tools")
    @classmethod
    def _tool_refs(cls, value: list[str | ToolRef]) -> list[str | ToolRef]:
        seen: set[str] = set()
        for index, entry in enumerate(value):
            ref = entry if isinstance(entry, str) else entry.tool
            try:
                _check_ref(ref)
            except ValueError as error:
                raise ValueError(f"tools[{index}]: {error}") from None
            if ref in seen:
                raise ValueError(f"tools[{index}]: {ref!r} is listed twice")
            seen.add(ref)
        return value

    @field_validator("budget")
    @classmethod
    def _budget_name(cls, value: str | None) -> str | None:
        if value is not None and not DNS1123_SUBDOMAIN.match(value):
            raise ValueError(f"{value!r} is not a valid Budget name (DNS-1123)")
        return value

    @model_validator(mode="after")
    def _approval_names(self) -> AgentSpec:
        # A misspelt risk level would silently never match: only the known ones look like one.
        for entry in self.approvals.require:
            if entry.lower() in RISK_LEVELS and entry not in RISK_LEVELS:
                raise ValueError(f"approvals.require: risk levels are lower case ({entry!r})")
        return self


AGENT = register_kind(
    KindInfo(
        kind="Agent",
        plural="agents",
        spec_model=AgentSpec,
        status_model=ResourceStatus,
        description="Instructions, a model and Tools, run as durable sessions.",
        printer_columns=(("MODEL", "spec.model"), ("MEMORY", "spec.memory")),
    )
)
