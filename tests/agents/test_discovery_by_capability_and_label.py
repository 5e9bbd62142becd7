"""GET /v1/discovery content: agents and tools filtered by capability, label selector and
namespace, with an index by capability; secrets and instructions never appear."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from corral.agents.discovery import discovery_document, parse_label_selector


def tool(
    name: str,
    names: list[str],
    *,
    namespace: str = "default",
    risk: str = "read",
    ready: bool = True,
    **labels: str,
) -> dict[str, Any]:
    return {
        "kind": "Tool",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "mcp": {"stdio": {"command": "fs-server", "env": {"TOKEN": "sk-secret"}}},
            "risk": risk,
            "toolRisks": {"delete_file": "destructive"},
            "credentials": [{"secretRef": "fs-token", "key": "token", "env": "TOKEN"}],
        },
        "status": {
            "tools": [{"name": n, "description": f"{n} it", "inputSchema": {}} for n in names],
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def agent(
    name: str, tools: list[Any], *, namespace: str = "default", **labels: str
) -> dict[str, Any]:
    return {
        "kind": "Agent",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {"corral.dev/description": f"the {name}"},
        },
        "spec": {"instructions": "TOP SECRET PROMPT", "model": "chat", "tools": tools},
    }


TOOLS = [
    tool("files", ["read_file", "write_file", "delete_file"], team="platform"),
    tool("web", ["search"], team="search", ready=False),
    tool("wiki", ["search"], namespace="research", team="search"),
]
AGENTS = [
    agent("helper", ["files", "research/wiki"], team="search", tier="prod"),
    agent("reader", [{"tool": "files", "allow": ["read_file"]}], team="platform"),
    agent("planner", ["agent:default/helper"], namespace="research", team="search", tier="beta"),
]


def names(entries: list[dict[str, Any]]) -> list[str]:
    return [f"{e['namespace']}/{e['name']}" for e in entries]


def test_everything_is_listed_with_capabilities_and_links() -> None:
    doc = discovery_document(AGENTS, TOOLS)
    assert names(doc["agents"]) == ["default/helper", "default/reader", "research/planner"]
    assert names(doc["tools"]) == ["default/files", "default/web", "research/wiki"]
    helper = doc["agents"][0]
    assert helper["id"] == "spiffe://corral.local/ns/default/agent/helper"
    assert helper["description"] == "the helper"
    assert [c["name"] for c in helper["capabilities"]] == [
        "delete_file",
        "read_file",
        "search",
        "write_file",
    ]
    assert helper["card"] == "/v1/agents/default/helper/.well-known/agent-card.json"
    assert helper["endpoint"] == "/v1/agents/default/helper/a2a"
    reader = doc["agents"][1]
    assert [c["name"] for c in reader["capabilities"]] == ["read_file"]
    files = doc["tools"][0]
    assert files["id"] == "spiffe://corral.local/ns/default/tool/files"
    assert files["transport"] == "stdio"
    assert files["ready"] is True
    assert doc["tools"][1]["ready"] is False
    risks = {c["name"]: c["risk"] for c in files["capabilities"]}
    assert risks == {"delete_file": "destructive", "read_file": "read", "write_file": "read"}
    assert doc["capabilities"]["search"] == {
        "agents": ["default/helper"],
        "tools": ["default/web", "research/wiki"],
    }
    assert doc["capabilities"]["agent:default/helper"] == {
        "agents": ["research/planner"],
        "tools": [],
    }


def test_secrets_and_instructions_never_appear() -> None:
    text = orjson.dumps(discovery_document(AGENTS, TOOLS)).decode()
    for secret in ("sk-secret", "fs-server", "fs-token", "TOP SECRET PROMPT", "TOKEN"):
        assert secret not in text


def test_filter_by_capability() -> None:
    doc = discovery_document(AGENTS, TOOLS, capability="read_file")
    assert names(doc["agents"]) == ["default/helper", "default/reader"]
    assert names(doc["tools"]) == ["default/files"]
    assert list(doc["capabilities"]) == ["read_file"]
    assert discovery_document(AGENTS, TOOLS, capability="nothing") == {
        "agents": [],
        "tools": [],
        "capabilities": {},
    }


def test_filter_by_label_selector_and_namespace() -> None:
    doc = discovery_document(AGENTS, TOOLS, labels="team=search")
    assert names(doc["agents"]) == ["default/helper", "research/planner"]
    assert names(doc["tools"]) == ["default/web", "research/wiki"]
    doc = discovery_document(AGENTS, TOOLS, labels="team=search,tier!=prod")
    assert names(doc["agents"]) == ["research/planner"]
    doc = discovery_document(AGENTS, TOOLS, labels="tier")
    assert names(doc["agents"]) == ["default/helper", "research/planner"]
    assert doc["tools"] == []
    doc = discovery_document(AGENTS, TOOLS, labels="team=search", capability="search")
    assert names(doc["agents"]) == ["default/helper"]
    doc = discovery_document(AGENTS, TOOLS, namespace="research")
    assert names(doc["agents"]) == ["research/planner"]
    assert names(doc["tools"]) == ["research/wiki"]


def test_label_selector_parsing() -> None:
    parsed = parse_label_selector(" a=b , c!=d,e,f==g,")
    assert [(r.key, r.op, r.value) for r in parsed] == [
        ("a", "=", "b"),
        ("c", "!=", "d"),
        ("e", "exists", ""),
        ("f", "=", "g"),
    ]
    for bad in ("=b", "a=b=c", "a b", "!=x"):
        with pytest.raises(ValueError, match="label selector term"):
            parse_label_selector(bad)


def test_malformed_objects_offer_nothing_but_do_not_break_the_listing() -> None:
    broken_tool = {
        "kind": "Tool",
        "metadata": {"name": "odd"},
        "spec": {},
        "status": {"tools": [{"description": "no name"}, "junk"]},
    }
    broken_agent = {"kind": "Agent", "metadata": {"name": "odd"}, "spec": {"tools": [3, {}]}}
    doc = discovery_document(
        [broken_agent, {"kind": "Tool"}, {"kind": "Agent"}], [broken_tool, AGENTS[0]]
    )
    assert names(doc["agents"]) == ["default/odd"]
    assert doc["agents"][0]["capabilities"] == []
    assert names(doc["tools"]) == ["default/odd"]
    assert doc["tools"][0]["capabilities"] == []
    assert doc["tools"][0]["transport"] == "unknown"
