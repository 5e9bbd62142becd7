"""``corral up`` registers this machine as a Node (CPU and memory; GPUs when nvidia-smi lists
them) and keeps it fresh; ``CORRAL_NODE_REGISTER=0`` turns that off."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .helpers import CONVERGE_TIMEOUT_S, Corral

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def wait_for_node(server: Corral, name: str) -> dict[str, object] | None:
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while time.monotonic() < deadline:
        response = server.api().get(f"/apis/corral.dev/v1alpha1/nodes/{name}")
        if response.status_code == 200:
            node: dict[str, object] = response.json()
            return node
        time.sleep(0.1)
    return None


def test_corral_up_registers_this_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_NODE_NAME", "laptop-1")
    server = Corral(tmp_path / "state", tmp_path / "logs").start()
    try:
        server.wait_ready()
        node = wait_for_node(server, "laptop-1")
        assert node is not None, server.stderr
        devices = node["spec"]["devices"]  # type: ignore[index]
        cpu = next(d for d in devices if d["name"] == "cpu")
        assert int(cpu["capacity"]["cores"]["value"]) >= 1
        conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}  # type: ignore[index]
        assert conditions.get("Ready") == "True"
    finally:
        assert server.stop() == 0, server.stderr


def test_registration_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_NODE_NAME", "laptop-2")
    monkeypatch.setenv("CORRAL_NODE_REGISTER", "0")
    server = Corral(tmp_path / "state", tmp_path / "logs").start()
    try:
        server.wait_ready()
        time.sleep(1.0)
        listed = server.api().get("/apis/corral.dev/v1alpha1/nodes").json()
        assert listed["items"] == []
    finally:
        assert server.stop() == 0, server.stderr
