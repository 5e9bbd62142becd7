"""The agents' directory: Agent and Tool objects from the store, compiled into the runtime's
``AgentConfig`` view (``corral.agents.config``), kept current by informers.

An Agent's ``spec.tools`` entries become the functions its model sees:

- ``name`` / ``namespace/name``: every MCP tool the Tool's server listed (``status.tools``), each
  a function named as the server names it (``tool__name`` when two Tools offer the same name);
- ``{tool, allow: [...]}``: only those of the Tool's tools;
- ``agent:name`` / ``agent:namespace/name``: another agent, one ``ask_<name>`` function called
  over A2A (``corral.agents.a2a_tools``).

A Tool's risk is ``spec.toolRisks[name]`` or ``spec.risk``; its timeout ``spec.timeoutSeconds``.
A Tool that is missing or has not listed its tools yet contributes nothing (the agent runs with
the rest and the directory logs why); an Agent whose spec cannot be compiled is left out with
its reason logged, so one bad object never stops the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from corral.agents.a2a_tools import agent_tool_binding
from corral.agents.config import AgentConfig, Approvals, Limits, ToolBinding
from corral.api import Object
from corral.api.kinds.agent import AGENT, AGENT_TOOL_PREFIX, AgentSpec, ToolRef
from corral.api.kinds.tool import TOOL, ToolSpec
from corral.controlplane import Informer, InformerEvent
from corral.server.informer_follow import follow_informers
from corral.store.protocol import Store

_log = logging.getLogger(__name__)

Key = tuple[str, str]


def compile_agents(agents: Iterable[Object], tools: Iterable[Object]) -> dict[Key, AgentConfig]:
    """Every compilable Agent's config, by (namespace, name)."""
    tool_objects = {_key(obj): obj for obj in tools}
    compiled: dict[Key, AgentConfig] = {}
    for obj in agents:
        key = _key(obj)
        try:
            compiled[key] = compile_agent(obj, tool_objects)
        except ValueError as error:
            _log.warning("Agent %s/%s not served: %s", key[0], key[1], error)
    return compiled


def compile_agent(obj: Object, tools: Mapping[Key, Object]) -> AgentConfig:
    namespace, name = _key(obj)
    spec = AgentSpec.model_validate(obj.get("spec") or {})
    bindings: dict[str, ToolBinding] = {}
    for entry in spec.tools:
        ref = entry if isinstance(entry, str) else entry.tool
        if ref.startswith(AGENT_TOOL_PREFIX):
            binding = agent_tool_binding(ref.removeprefix(AGENT_TOOL_PREFIX))
            bindings[binding.function] = binding
            continue
        for binding in _tool_bindings(namespace, ref, entry, tools):
            function = binding.function
            if function in bindings:  # two Tools offer one name: qualify both
                first = bindings.pop(function)
                bindings[_qualified(first)] = _renamed(first, _qualified(first))
                function = _qualified(binding)
                binding = _renamed(binding, function)
            bindings[function] = binding
    limits = spec.limits
    return AgentConfig(
        namespace,
        name,
        spec.model,
        spec.instructions,
        bindings,
        Limits(
            max_steps=limits.maxSteps,
            max_duration_seconds=limits.maxDurationSeconds,
            max_tokens=limits.maxTokens,
            max_cost_usd=limits.maxCostUSD,
            max_concurrent_sessions=limits.maxConcurrentSessions,
        ),
        Approvals(frozenset(spec.approvals.require), spec.approvals.timeoutSeconds),
        spec.memory,
        spec.retentionSeconds,
        spec.toolChoice,
    )


def _tool_bindings(
    namespace: str, ref: str, entry: str | ToolRef, tools: Mapping[Key, Object]
) -> list[ToolBinding]:
    tool_namespace, _, tool_name = ref.rpartition("/")
    key = (tool_namespace or namespace, tool_name)
    obj = tools.get(key)
    if obj is None:
        _log.info("agent tool %s/%s: no such Tool yet", *key)
        return []
    spec = ToolSpec.model_validate(obj.get("spec") or {})
    listed = ((obj.get("status") or {}).get("tools")) or []
    allowed = None if isinstance(entry, str) else set(entry.allow)
    found = []
    tool_ref = f"{key[0]}/{key[1]}"
    for item in listed:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        mcp_name = item["name"]
        if allowed is not None and mcp_name not in allowed:
            continue
        schema = item.get("inputSchema")
        found.append(
            ToolBinding(
                _function_name(mcp_name),
                tool_ref,
                mcp_name,
                str(item.get("description") or ""),
                schema if isinstance(schema, dict) and schema else {"type": "object"},
                spec.toolRisks.get(mcp_name, spec.risk),
                spec.timeoutSeconds,
            )
        )
    return found


def _function_name(name: str) -> str:
    # OpenAI function names: letters, digits, _ and -, up to 64 characters.
    cleaned = "".join(c if c.isalnum() or c in "_-" else "_" for c in name)
    return cleaned[:64] or "tool"


def _qualified(binding: ToolBinding) -> str:
    tool = binding.tool.rpartition("/")[2]
    return _function_name(f"{tool}__{binding.name}")


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


def _key(obj: Object) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


class AgentDirectoryFeed:
    """An ``AgentDirectory`` that follows the store (Agents and Tools); run ``start``."""

    def __init__(self, store: Store) -> None:
        self._informers = {kind: Informer(store, kind) for kind in (AGENT.kind, TOOL.kind)}
        self._agents: dict[Key, AgentConfig] = {}
        self._synced = False
        self._dirty = False
        for informer in self._informers.values():
            informer.add_handler(self._on_event)

    @property
    def ready(self) -> bool:
        return self._synced

    def get(self, namespace: str, name: str) -> AgentConfig | None:
        return self._agents.get((namespace, name))

    def objects(self, kind: str) -> list[Object]:
        """The cached objects of ``kind`` (Agent or Tool), for discovery and cards."""
        return list(self._informers[kind].list())

    def tool_object(self, namespace: str, name: str) -> Object | None:
        for obj in self._informers[TOOL.kind].list():
            if _key(obj) == (namespace, name):
                return obj
        return None

    async def start(self, stop: asyncio.Event) -> None:
        await follow_informers(list(self._informers.values()), stop, self._on_synced)

    def _on_synced(self) -> None:
        self._synced = True
        self._rebuild()

    def _on_event(self, _event: InformerEvent) -> None:
        if self._synced and not self._dirty:
            self._dirty = True
            asyncio.get_running_loop().call_soon(self._rebuild)

    def _rebuild(self) -> None:
        self._dirty = False
        self._agents = compile_agents(
            self._informers[AGENT.kind].list(), self._informers[TOOL.kind].list()
        )


def as_json(config: AgentConfig) -> dict[str, Any]:
    """A compiled agent for logs and tests: its functions and where they go."""
    return {
        "agent": f"{config.namespace}/{config.name}",
        "tools": {f: (b.tool, b.name, b.risk) for f, b in sorted(config.tools.items())},
    }
