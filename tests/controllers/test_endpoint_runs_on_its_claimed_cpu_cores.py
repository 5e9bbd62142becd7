"""End to end on a real store and a real llama.cpp replica: an Endpoint with ``spec.devices``
claims CPU cores sized from its Model, the ResourceClaim scheduler (real CEL) allocates them,
and the model server process runs with that many threads and no GPU visible.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from corral.controllers.endpoint import endpoint_controller, replica_change_sender
from corral.controllers.endpoint_devices import ReplicaDevices
from corral.controllers.model import model_controller
from corral.controllers.resourceclaim import resourceclaim_controller
from corral.controlplane import KeyChannel, Manager
from corral.devices.cel_cache import device_predicate
from corral.devices.inventory import cpu_device, node_object
from corral.runtimes import Supervisor
from corral.store import open_store

from .helpers import FAST, QUICKSTART_DIGEST, Plane, condition, model

CPU_CLASS = {
    "apiVersion": "corral.dev/v1alpha1",
    "kind": "DeviceClass",
    "metadata": {"name": "cpu"},
    "spec": {"selectors": [{"cel": {"expression": 'device.driver == "cpu.corral.dev"'}}]},
}


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[Plane]:
    store = await open_store(f"sqlite:///{tmp_path / 'corral.db'}")
    manager = Manager(store, identity="test", registry=CollectorRegistry())
    channel = KeyChannel()
    supervisor = Supervisor(tmp_path, on_change=replica_change_sender(channel), settings=FAST)
    devices = ReplicaDevices(store, device_predicate, local_node="local")
    manager.add(model_controller(store, digest_cache_dir=tmp_path / "digests"))
    manager.add(endpoint_controller(manager, supervisor, channel, devices))
    manager.add(resourceclaim_controller(manager, device_predicate))
    stop = asyncio.Event()
    running = asyncio.create_task(manager.run(stop))
    try:
        yield Plane(store, supervisor)
    finally:
        stop.set()
        await running
        await supervisor.stop_all()
        await store.close()


def proc_list(pid: int, name: str) -> list[bytes]:
    """A process's NUL-separated /proc file (its argv or environment) as a list."""
    return Path(f"/proc/{pid}/{name}").read_bytes().split(b"\0")


def cpu_endpoint(cores: int) -> dict[str, Any]:
    return {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Endpoint",
        "metadata": {"name": "chat"},
        "spec": {
            "models": [{"model": "small"}],
            "runtime": {"options": {"n_ctx": 512}},
            "devices": {"className": "cpu", "cores": cores},
        },
    }


async def test_the_replica_runs_with_the_cores_its_claim_was_given(plane: Plane) -> None:
    node = node_object("local", [cpu_device(cores=4, memory="16Gi")])
    await plane.apply(CPU_CLASS, node)
    await plane.apply(model("small", digest=QUICKSTART_DIGEST), cpu_endpoint(cores=2))
    chat = await plane.wait_for("Endpoint", "chat", lambda e: condition(e, "Ready") == "True")
    assert condition(chat, "DevicesAllocated") == "True"

    claim = await plane.store.get("ResourceClaim", "default", "chat.small.0")
    asked = claim["spec"]["devices"]["requests"][0]["exactly"]["capacity"]["requests"]
    assert asked["cores"] == "2"
    assert asked["memory"].endswith("Mi")  # sized from the Model's GGUF header
    (result,) = claim["status"]["allocation"]["devices"]["results"]
    assert (result["pool"], result["device"]) == ("local", "cpu")

    (replica,) = chat["status"]["replicas"]
    argv = proc_list(replica["pid"], "cmdline")
    assert argv[argv.index(b"--n_threads") + 1] == b"2"
    environ = proc_list(replica["pid"], "environ")
    assert b"OMP_NUM_THREADS=2" in environ
    assert b"CUDA_VISIBLE_DEVICES=" in environ


async def test_a_replica_asking_more_cores_than_the_machine_has_is_refused(plane: Plane) -> None:
    await plane.apply(CPU_CLASS, node_object("local", [cpu_device(cores=4, memory="16Gi")]))
    await plane.apply(model("small", digest=QUICKSTART_DIGEST), cpu_endpoint(cores=64))
    chat = await plane.wait_for(
        "Endpoint",
        "chat",
        lambda e: any(
            c.get("reason") == "NoDeviceClassFits"
            for c in e.get("status", {}).get("conditions", [])
        ),
    )
    ready = next(c for c in chat["status"]["conditions"] if c["type"] == "Ready")
    assert (
        "a replica needs 64 cores; the largest device of class 'cpu' has 4 (local/cpu)"
        in (ready["message"])
    )
    assert plane.supervisor.statuses() == []
