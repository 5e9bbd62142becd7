"""Endpoints with ``spec.devices`` on a real SQLite store: each replica claims a device sized
from its Model, stays Pending until the claim is allocated, then runs with the allocation bound
into its environment; a replica no device could ever hold is refused with the numbers.

The supervisor is a recorder: these tests are about what the controller asks it to run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, cast

import pytest

import corral.api.kinds.resourceclaim  # noqa: F401  (registers the kind until kinds/__init__ does)
from corral.api.errors import NotFound
from corral.api.objects import ObjectKey
from corral.api.quantity import parse_quantity
from corral.api.validation import validate_object
from corral.controllers.endpoint import EndpointReconciler
from corral.controllers.endpoint_devices import ReplicaDevices
from corral.controllers.resourceclaim import ClaimReconciler
from corral.controlplane import get_condition
from corral.runtimes import ReplicaSpec, ReplicaStatus, Supervisor
from corral.store import open_store
from corral.store.protocol import Store
from device_fleet import compile_selector, gpu_class, gpu_node

GIB = 1024**3
KEY = ObjectKey("Endpoint", "default", "chat")


class RecordingSupervisor:
    def __init__(self) -> None:
        self.desired: dict[str, ReplicaSpec] = {}

    async def ensure(self, desired: Mapping[str, ReplicaSpec]) -> None:
        self.desired = dict(desired)

    def statuses(self) -> list[ReplicaStatus]:
        return []

    async def stop_all(self) -> None:
        self.desired = {}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(f"sqlite:///{tmp_path / 'corral.db'}")
    model_file = tmp_path / "m.gguf"
    model_file.write_bytes(b"GGUF")
    await store.create(gpu_class())
    # Two GPUs leave most of the allocator's row (as wide as the widest node) empty: the
    # scoring must read empty columns as whole, not divide by zero.
    await store.create(gpu_node("n0", 2, memory="24Gi"))
    model = await store.create(
        {
            "apiVersion": "corral.dev/v1alpha1",
            "kind": "Model",
            "metadata": {"namespace": "default", "name": "m"},
            "spec": {"source": f"file://{model_file}"},
        }
    )
    model["status"] = {
        "path": str(model_file),
        "conditions": [{"type": "Ready", "status": "True", "reason": "Verified"}],
        "metadata": {
            "format": "gguf",
            "blockCount": 32,
            "kvHeads": 8,
            "headDim": 128,
            "valueHeadDim": 128,
            "fileSize": 5 * GIB,
        },
    }
    await store.update_status(model)
    try:
        yield store
    finally:
        await store.close()


async def put_endpoint(store: Store, replicas: int, options: dict[str, Any]) -> None:
    body = {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Endpoint",
        "metadata": {"namespace": "default", "name": "chat"},
        "spec": {
            "models": [{"model": "m"}],
            "replicas": replicas,
            "runtime": {"type": "llamacpp", "options": options},
            "devices": {"className": "gpu"},
        },
    }
    try:
        current = await store.get("Endpoint", "default", "chat")
    except NotFound:
        await store.create(body)
        return
    await store.update({**current, "spec": body["spec"]})


async def reconciled(store: Store, reconciler: EndpointReconciler) -> dict[str, Any]:
    await reconciler(KEY)  # the first pass may only add the finalizer
    await reconciler(KEY)
    return (await store.get("Endpoint", "default", "chat")).get("status") or {}


def reconciler_for(store: Store, supervisor: RecordingSupervisor) -> EndpointReconciler:
    devices = ReplicaDevices(store, compile_selector, local_node="n0")
    return EndpointReconciler(store, cast(Supervisor, supervisor), devices)


async def allocate(store: Store, claim_name: str, device: str) -> None:
    claim = await store.get("ResourceClaim", "default", claim_name)
    result = {"request": "replica", "driver": "gpu.nvidia.com", "pool": "n0", "device": device}
    claim["status"] = {"allocation": {"nodeName": "n0", "devices": {"results": [result]}}}
    await store.update_status(claim)


async def test_replicas_wait_for_their_claims_then_run_on_the_allocated_gpu(store: Store) -> None:
    supervisor = RecordingSupervisor()
    reconciler = reconciler_for(store, supervisor)
    await put_endpoint(store, 2, {"n_ctx": 8192, "n_parallel": 2})
    status = await reconciled(store, reconciler)

    claims = (await store.list("ResourceClaim", "default")).items
    assert sorted(c["metadata"]["name"] for c in claims) == ["chat.m.0", "chat.m.1"]
    exactly = claims[0]["spec"]["devices"]["requests"][0]["exactly"]
    memory = parse_quantity(exactly["capacity"]["requests"]["memory"])
    assert 7 * GIB < memory < 24 * GIB  # 5 GiB weights + 2 GiB KV cache + overhead
    assert claims[0]["metadata"]["ownerReferences"][0]["name"] == "chat"
    assert supervisor.desired == {}
    assert [r["state"] for r in status["replicas"]] == ["Pending", "Pending"]
    assert "waiting for ResourceClaim chat.m.0" in status["replicas"][0]["message"]
    ready = get_condition(status, "Ready")
    assert ready is not None
    assert ready["reason"] == "WaitingForDevices"

    # A claim stored with the kind's defaults filled in is the same claim, not a new size.
    first = await store.get("ResourceClaim", "default", "chat.m.0")
    await store.update({**first, "spec": validate_object(first)["spec"]})
    await reconciled(store, reconciler)
    again = await store.get("ResourceClaim", "default", "chat.m.0")
    assert again["metadata"]["uid"] == first["metadata"]["uid"]

    await allocate(store, "chat.m.0", "gpu1")
    status = await reconciled(store, reconciler)
    (running,) = supervisor.desired.values()
    assert running.name == "default.chat.m.0"
    assert running.env["CUDA_VISIBLE_DEVICES"] == "GPU-n0-1"
    assert running.options["n_gpu_layers"] == -1
    assert running.options["n_ctx"] == 8192
    assert [r["name"] for r in status["replicas"]] == ["default.chat.m.1"]
    allocated = get_condition(status, "DevicesAllocated")
    assert allocated is not None
    assert allocated["reason"] == "WaitingForDevices"

    await put_endpoint(store, 1, {"n_ctx": 8192, "n_parallel": 2})
    status = await reconciled(store, reconciler)
    remaining = (await store.list("ResourceClaim", "default")).items
    assert [c["metadata"]["name"] for c in remaining] == ["chat.m.0"]
    allocated = get_condition(status, "DevicesAllocated")
    assert allocated is not None
    assert allocated["status"] == "True"


async def test_a_replica_no_gpu_could_hold_is_refused_with_the_numbers(store: Store) -> None:
    supervisor = RecordingSupervisor()
    reconciler = reconciler_for(store, supervisor)
    # 32 layers x 8 heads x 256 x 2 bytes x 32768 tokens x 8 slots = 32 GiB of KV cache alone
    await put_endpoint(store, 1, {"n_ctx": 32768, "n_parallel": 8})
    status = await reconciled(store, reconciler)
    ready = get_condition(status, "Ready")
    assert ready is not None
    assert ready["reason"] == "NoDeviceClassFits"
    assert "KV cache 32.0 GiB" in ready["message"]
    assert "largest device of class 'gpu' has 24.0 GiB (n0/gpu0)" in ready["message"]
    assert (await store.list("ResourceClaim", "default")).items == []
    assert supervisor.desired == {}


async def test_without_a_device_scheduler_a_devices_endpoint_is_refused(store: Store) -> None:
    supervisor = RecordingSupervisor()
    reconciler = EndpointReconciler(store, cast(Supervisor, supervisor))
    await put_endpoint(store, 1, {})
    status = await reconciled(store, reconciler)
    allocated = get_condition(status, "DevicesAllocated")
    assert allocated is not None
    assert allocated["reason"] == "DevicesUnavailable"
    assert supervisor.desired == {}


async def test_the_claim_scheduler_places_the_replica_claims_and_they_bind(store: Store) -> None:
    supervisor = RecordingSupervisor()
    reconciler = reconciler_for(store, supervisor)
    await put_endpoint(store, 2, {"n_ctx": 4096})
    await reconciled(store, reconciler)
    scheduler = ClaimReconciler(store, compile_selector)
    for name in ("chat.m.0", "chat.m.1"):
        await scheduler(ObjectKey("ResourceClaim", "default", name))
    status = await reconciled(store, reconciler)
    assert sorted(supervisor.desired) == ["default.chat.m.0", "default.chat.m.1"]
    visible = sorted(s.env["CUDA_VISIBLE_DEVICES"] for s in supervisor.desired.values())
    assert all(v.startswith("GPU-n0-") for v in visible)
    allocated = get_condition(status, "DevicesAllocated")
    assert allocated is not None
    assert allocated["message"] == "2 replica(s) bound"
