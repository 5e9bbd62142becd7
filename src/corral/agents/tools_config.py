"""From stored ``Agent`` and ``Tool`` objects to the :class:`AgentConfig` the runtime runs.

Where it sits: the agents role keeps the Agent and Tool objects from its watch and builds each
agent's config with :func:`agent_config` (a pure function, like ``discovery_document``); the
runtime reads it through an ``AgentDirectory``. Each MCP tool a Tool's controller listed in
``status.tools`` (narrowed by ``allow``) becomes a :class:`ToolBinding` whose ``tool`` is the
qualified ``namespace/name`` (what :class:`~corral.agents.mcp_client.McpToolCaller` and the
tool tokens' audience expect) and whose risk is the Tool's ``toolRisks`` entry or ``risk``.

Function names (what the model sees) are the MCP names made safe for OpenAI's
``^[A-Za-z0-9_-]{1,64}$``; a name offered by two Tools is prefixed with its Tool's name in both.
A Tool that does not exist or has not been listed yet gives no functions and a problem string
(the agent still runs with the rest), as an ``allow`` entry the server does not offer does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from corral.agents.a2a_tools import agent_tool_binding
from corral.agents.config import AgentConfig, Approvals, Limits, ToolBinding
from corral.api.kinds.agent import AGENT_TOOL_PREFIX, AgentSpec, ToolRef
from corral.api.kinds.tool import ToolSpec

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def agent_config(
    agent: Mapping[str, Any], tools: Mapping[tuple[str, str], Mapping[str, Any]]
) -> tuple[AgentConfig, list[str]]:
    """The config of ``agent`` and the problems found (``tools`` by ``(namespace, name)``)."""
    meta = agent.get("metadata") or {}
    namespace, name = str(meta.get("namespace") or "default"), str(meta["name"])
    spec = AgentSpec.model_validate(agent.get("spec") or {})
    problems: list[str] = []
    offered: list[tuple[str, ToolBinding]] = []  # (Tool name, binding with a raw function)
    for entry in spec.tools:
        ref = entry if isinstance(entry, str) else entry.tool
        allow = None if isinstance(entry, str) else set(entry.allow)
        if ref.startswith(AGENT_TOOL_PREFIX):
            target = ref.removeprefix(AGENT_TOOL_PREFIX)
            offered.append((ref, agent_tool_binding(target)))
            continue
        tool_ns, slash, tool_name = ref.partition("/")
        key = (tool_ns, tool_name) if slash else (namespace, ref)
        tool = tools.get(key)
        if tool is None:
            problems.append(f"tools: Tool {key[0]}/{key[1]} does not exist")
            continue
        bindings, missing = _bindings(key, tool, allow)
        offered.extend((key[1], binding) for binding in bindings)
        problems.extend(missing)
    config = AgentConfig(
        namespace=namespace,
        name=name,
        model=spec.model,
        instructions=spec.instructions,
        tools=_named(offered),
        limits=_limits(spec),
        approvals=Approvals(
            frozenset(spec.approvals.require), float(spec.approvals.timeoutSeconds)
        ),
        memory=spec.memory,
        retention_seconds=float(spec.retentionSeconds),
    )
    return config, problems


def _bindings(
    key: tuple[str, str], tool: Mapping[str, Any], allow: set[str] | None
) -> tuple[list[ToolBinding], list[str]]:
    spec = ToolSpec.model_validate(tool.get("spec") or {})
    listed = [
        item
        for item in (tool.get("status") or {}).get("tools") or []
        if isinstance(item, Mapping) and isinstance(item.get("name"), str) and item["name"]
    ]
    qualified = f"{key[0]}/{key[1]}"
    if not listed:
        return [], [f"tools: Tool {qualified} has not listed its tools yet"]
    names = {item["name"] for item in listed}
    missing = [
        f"tools: Tool {qualified} offers no tool {wanted!r}"
        for wanted in sorted((allow or set()) - names)
    ]
    bindings = []
    for item in listed:
        if allow is not None and item["name"] not in allow:
            continue
        schema = item.get("inputSchema")
        bindings.append(
            ToolBinding(
                function=item["name"],
                tool=qualified,
                name=item["name"],
                description=str(item.get("description") or ""),
                input_schema=dict(schema) if isinstance(schema, Mapping) else {"type": "object"},
                risk=spec.toolRisks.get(item["name"], spec.risk),
                timeout_seconds=spec.timeoutSeconds,
            )
        )
    return bindings, missing


def _named(offered: list[tuple[str, ToolBinding]]) -> dict[str, ToolBinding]:
    """Safe, unique function names: a name two Tools offer is prefixed in both."""
    raw = [_safe(binding.function) for _, binding in offered]
    shared = {name for name in raw if raw.count(name) > 1}
    out: dict[str, ToolBinding] = {}
    for (tool_name, binding), function in zip(offered, raw, strict=True):
        if function in shared:
            function = _safe(f"{tool_name.removeprefix(AGENT_TOOL_PREFIX)}_{function}")
        while function in out:  # still equal after prefixing: number the later ones
            function = _safe(f"{function[:60]}_{len(out)}")
        out[function] = _renamed(binding, function)
    return out


def _renamed(binding: ToolBinding, function: str) -> ToolBinding:
    return ToolBinding(
        function,
        binding.tool,
        binding.name,
        binding.description,
        binding.input_schema,
        binding.risk,
        binding.timeout_seconds,
    )


def _safe(name: str) -> str:
    return _UNSAFE.sub("_", name)[:64] or "tool"


def _limits(spec: AgentSpec) -> Limits:
    limits = spec.limits
    return Limits(
        max_steps=limits.maxSteps,
        max_duration_seconds=float(limits.maxDurationSeconds),
        max_tokens=limits.maxTokens,
        max_cost_usd=limits.maxCostUSD,
        max_concurrent_sessions=limits.maxConcurrentSessions,
    )


__all__ = ["ToolRef", "agent_config"]
