"""``GET /v1/discovery``: the agents and tools a caller can find, by capability and by label.

Where it sits: the server keeps the stored ``Agent`` and ``Tool`` objects from its watch and
answers the route with :func:`discovery_document` (a pure function of those objects and the
query; nothing here reads the store). A *capability* is the name of an MCP tool: a Tool offers
the ones its controller listed in ``status.tools``; an Agent offers those of its tools it may
call (``spec.tools`` entries, narrowed by ``allow``). Labels filter with a selector like
Kubernetes' (``team=search,tier!=prod,beta``).

What is never shown: Tool credentials, commands, environment, URLs and headers (they may carry
secrets), and Agent instructions. Agents link to their A2A card and endpoint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from corral.agents.a2a import CARD_PATH, ENDPOINT_PATH
from corral.agents.authority import AGENT_TOOL_PREFIX
from corral.identity import workload_id

TRUST_DOMAIN = "corral.local"
DESCRIPTION_ANNOTATION = "corral.dev/description"


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "exists"
    value: str = ""

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "=":
            return labels.get(self.key) == self.value
        return labels.get(self.key) != self.value


def parse_label_selector(selector: str) -> tuple[Requirement, ...]:
    """``a=b,c!=d,e`` → requirements; ValueError naming the bad term."""
    requirements = []
    for raw in selector.split(","):
        term = raw.strip()
        if not term:
            continue
        if "!=" in term:
            op, (key, value) = "!=", term.split("!=", 1)
        elif "=" in term:
            op, (key, value) = "=", term.replace("==", "=", 1).split("=", 1)
        else:
            op, key, value = "exists", term, ""
        key, value = key.strip(), value.strip()
        if not key or any(char in key + value for char in "=! "):
            raise ValueError(f"label selector term {term!r}: expected key, key=value or key!=value")
        requirements.append(Requirement(key, op, value))
    return tuple(requirements)


def discovery_document(
    agents: Iterable[Mapping[str, Any]],
    tools: Iterable[Mapping[str, Any]],
    *,
    capability: str | None = None,
    labels: str | Iterable[Requirement] = (),
    namespace: str | None = None,
    trust_domain: str = TRUST_DOMAIN,
) -> dict[str, Any]:
    """The discovery answer: ``agents``, ``tools`` and a ``capabilities`` index, each sorted.

    ``capability`` keeps what offers it, ``labels`` (a selector string or requirements) what
    matches it, ``namespace`` one namespace's objects.
    """
    selector = parse_label_selector(labels) if isinstance(labels, str) else tuple(labels)
    tool_objects = [obj for obj in tools if _kind(obj, "Tool") and _key(obj)[1]]
    offered = {_key(obj): _tool_capabilities(obj) for obj in tool_objects}
    tool_entries = [_tool_entry(obj, offered[_key(obj)], trust_domain) for obj in tool_objects]
    agent_entries = [
        _agent_entry(obj, offered, trust_domain)
        for obj in agents
        if _kind(obj, "Agent") and _key(obj)[1]
    ]

    def keep(entry: Mapping[str, Any]) -> bool:
        if namespace is not None and entry["namespace"] != namespace:
            return False
        if capability is not None and capability not in {c["name"] for c in entry["capabilities"]}:
            return False
        return all(requirement.matches(entry["labels"]) for requirement in selector)

    agent_entries = sorted(filter(keep, agent_entries), key=_order)
    tool_entries = sorted(filter(keep, tool_entries), key=_order)
    index: dict[str, dict[str, list[str]]] = {}
    for group, entries in (("agents", agent_entries), ("tools", tool_entries)):
        for entry in entries:
            for offered_capability in entry["capabilities"]:
                slot = index.setdefault(offered_capability["name"], {"agents": [], "tools": []})
                slot[group].append(f"{entry['namespace']}/{entry['name']}")
    if capability is not None:
        index = {name: value for name, value in index.items() if name == capability}
    return {
        "agents": agent_entries,
        "tools": tool_entries,
        "capabilities": {name: index[name] for name in sorted(index)},
    }


def _tool_capabilities(tool: Mapping[str, Any]) -> list[dict[str, Any]]:
    spec, status = tool.get("spec") or {}, tool.get("status") or {}
    default_risk = str(spec.get("risk") or "read")
    overrides = spec.get("toolRisks") or {}
    found = []
    for listed in status.get("tools") or []:
        if not isinstance(listed, Mapping) or not isinstance(listed.get("name"), str):
            continue  # a malformed status entry offers nothing
        name = listed["name"]
        found.append(
            {
                "name": name,
                "description": str(listed.get("description") or ""),
                "risk": str(overrides.get(name, default_risk)),
            }
        )
    return sorted(found, key=lambda capability: capability["name"])


def _tool_entry(
    tool: Mapping[str, Any], capabilities: list[dict[str, Any]], trust_domain: str
) -> dict[str, Any]:
    namespace, name = _key(tool)
    spec, status = tool.get("spec") or {}, tool.get("status") or {}
    mcp = spec.get("mcp") or {}
    transport = next((kind for kind in ("stdio", "http") if kind in mcp), "unknown")
    ready = any(
        isinstance(c, Mapping) and c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    return {
        "namespace": namespace,
        "name": name,
        "id": workload_id(trust_domain, namespace, name, type="tool"),
        "labels": _labels(tool),
        "description": _description(tool),
        "risk": str(spec.get("risk") or "read"),
        "transport": transport,
        "ready": ready,
        "capabilities": capabilities,
    }


def _agent_entry(
    agent: Mapping[str, Any],
    offered: Mapping[tuple[str, str], list[dict[str, Any]]],
    trust_domain: str,
) -> dict[str, Any]:
    namespace, name = _key(agent)
    spec = agent.get("spec") or {}
    refs: list[str] = []
    capabilities: dict[str, dict[str, Any]] = {}
    for entry in spec.get("tools") or []:
        ref, allow = _tool_ref(entry)
        if ref is None:
            continue
        refs.append(ref)
        if ref.startswith(AGENT_TOOL_PREFIX):
            capabilities[ref] = {"name": ref, "description": f"ask {ref}", "risk": "read"}
            continue
        ns, slash, tool_name = ref.partition("/")
        key = (ns, tool_name) if slash else (namespace, ref)
        for capability in offered.get(key, []):
            if allow is None or capability["name"] in allow:
                capabilities.setdefault(capability["name"], capability)
    paths = {"namespace": namespace, "name": name}
    return {
        "namespace": namespace,
        "name": name,
        "id": workload_id(trust_domain, namespace, name),
        "labels": _labels(agent),
        "description": _description(agent),
        "model": str(spec.get("model") or ""),
        "tools": refs,
        "capabilities": [capabilities[key] for key in sorted(capabilities)],
        "card": CARD_PATH.format(**paths),
        "endpoint": ENDPOINT_PATH.format(**paths),
    }


def _tool_ref(entry: Any) -> tuple[str | None, frozenset[str] | None]:
    if isinstance(entry, str) and entry:
        return entry, None
    if isinstance(entry, Mapping) and isinstance(entry.get("tool"), str) and entry["tool"]:
        allow = entry.get("allow")
        names = frozenset(str(n) for n in allow) if isinstance(allow, list) else None
        return entry["tool"], names
    return None, None


def _kind(obj: Mapping[str, Any], kind: str) -> bool:
    return obj.get("kind") == kind


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or "default"), str(meta.get("name") or "")


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return {str(key): str(value) for key, value in sorted(labels.items())}


def _description(obj: Mapping[str, Any]) -> str:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(DESCRIPTION_ANNOTATION) or "")


def _order(entry: Mapping[str, Any]) -> tuple[str, str]:
    return entry["namespace"], entry["name"]
