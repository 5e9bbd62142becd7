"""What the runtime needs to know about an Agent: a frozen, validated view of its spec.

The server builds an :class:`AgentConfig` from the ``Agent`` resource (and the ``Tool``
resources it names) and serves it through an :class:`AgentDirectory`; the runtime reads it
when it starts or resumes a session. Definitions are checked the moment they are built (as
Temporal's SDK checks workflow definitions), so a bad limit fails at apply time with the field
named, not in the middle of a session.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Risk = Literal["read", "write", "destructive"]
RISKS: tuple[Risk, ...] = ("read", "write", "destructive")
Memory = Literal["none", "conversation"]


@dataclass(frozen=True, slots=True)
class ToolBinding:
    """One function the model may call and where it goes: ``tool`` (a Tool resource) and
    ``name`` (the MCP tool on that server). ``function`` is the name the model sees."""

    function: str
    tool: str
    name: str
    description: str = ""
    input_schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})
    risk: Risk = "read"
    timeout_seconds: float = 30.0

    def __post_init__(self) -> None:
        if not self.function or not self.tool or not self.name:
            raise ValueError(f"tool binding {self.function!r}: function, tool and name are needed")
        if self.risk not in RISKS:
            raise ValueError(
                f"tool {self.function!r} risk {self.risk!r}: use read|write|destructive"
            )
        if not self.timeout_seconds > 0:
            raise ValueError(f"tool {self.function!r} timeoutSeconds must be > 0")

    def openai_tool(self) -> dict[str, Any]:
        """The chat-completions ``tools[]`` entry for this function."""
        return {
            "type": "function",
            "function": {
                "name": self.function,
                "description": self.description,
                "parameters": dict(self.input_schema),
            },
        }


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-session limits (``None``: no limit) and the per-agent concurrency limit."""

    max_steps: int = 50
    max_duration_seconds: float = 3_600.0
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    max_concurrent_sessions: int | None = None

    def __post_init__(self) -> None:
        _positive("limits.maxSteps", self.max_steps)
        _positive("limits.maxDurationSeconds", self.max_duration_seconds)
        _positive("limits.maxTokens", self.max_tokens)
        _positive("limits.maxCostUSD", self.max_cost_usd)
        _positive("limits.maxConcurrentSessions", self.max_concurrent_sessions)

    def to_json(self) -> dict[str, Any]:
        return {
            "steps": self.max_steps,
            "seconds": self.max_duration_seconds,
            "tokens": self.max_tokens,
            "cost": self.max_cost_usd,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Limits:
        return cls(
            max_steps=value["steps"],
            max_duration_seconds=value["seconds"],
            max_tokens=value.get("tokens"),
            max_cost_usd=value.get("cost"),
        )


@dataclass(frozen=True, slots=True)
class Approvals:
    """Tool calls that wait for a person: by risk level or by function/tool name."""

    require: frozenset[str] = frozenset({"write", "destructive"})
    timeout_seconds: float = 3_600.0

    def __post_init__(self) -> None:
        _positive("approvals.timeoutSeconds", self.timeout_seconds)

    def needed(self, binding: ToolBinding) -> bool:
        return bool({binding.risk, binding.function, binding.name, binding.tool} & self.require)


@dataclass(frozen=True, slots=True)
class AgentConfig:
    namespace: str
    name: str
    model: str
    instructions: str = ""
    tools: Mapping[str, ToolBinding] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    approvals: Approvals = field(default_factory=Approvals)
    memory: Memory = "conversation"
    retention_seconds: float = 7 * 86_400.0
    tool_choice: str | None = None
    """For the first model call of each turn: ``auto``, ``required``, ``none`` or a function
    name (small models often answer instead of calling a tool unless made to); later calls of
    the turn leave the choice to the model, so it can answer with what the tools returned."""

    def __post_init__(self) -> None:
        if not self.namespace or not self.name:
            raise ValueError("agent namespace and name are needed")
        if not self.model:
            raise ValueError(f"agent {self.namespace}/{self.name}: spec.model is needed")
        if self.memory not in ("none", "conversation"):
            raise ValueError(f"agent {self.name} memory {self.memory!r}: use none|conversation")
        for function, binding in self.tools.items():
            if function != binding.function:
                raise ValueError(
                    f"agent {self.name}: tool key {function!r} != {binding.function!r}"
                )
        _positive("retentionSeconds", self.retention_seconds)
        choice = self.tool_choice
        if (
            choice is not None
            and choice not in ("auto", "required", "none")
            and (choice not in self.tools)
        ):
            raise ValueError(
                f"agent {self.name} toolChoice {choice!r}: use auto, required, none or one of "
                f"its functions ({', '.join(sorted(self.tools)) or 'it has none'})"
            )


class AgentDirectory(Protocol):
    """Where the runtime finds an agent's current config (the server keeps it from the watch)."""

    def get(self, namespace: str, name: str) -> AgentConfig | None: ...


class StaticAgents:
    """A fixed directory (tests, benchmarks, embedding)."""

    def __init__(self, *agents: AgentConfig) -> None:
        self._agents = {(agent.namespace, agent.name): agent for agent in agents}

    def get(self, namespace: str, name: str) -> AgentConfig | None:
        return self._agents.get((namespace, name))

    def put(self, agent: AgentConfig) -> None:
        self._agents[(agent.namespace, agent.name)] = agent


def _positive(what: str, value: float | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{what} {value!r}: must be a number > 0")
