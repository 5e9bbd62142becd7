"""The local machine becomes a Node: its CPU and memory as one shareable device, each NVIDIA GPU
nvidia-smi lists as a device with typed attributes, and it registers and heartbeats through the
store's own writes."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import corral.api.kinds.node  # noqa: F401  (registers the kind)
from corral.api.errors import Conflict
from corral.api.objects import Object
from corral.api.validation import validate_object
from corral.devices.inventory import (
    NVIDIA_SMI_QUERY,
    PCI_BUS_ID,
    GpuProbeError,
    gpu_model,
    heartbeat,
    keep_node_registered,
    local_node,
    node_name,
    parse_nvidia_smi,
    probe_gpus,
    register_local_node,
    run_command,
    semver_text,
)
from corral.store import open_store

# Recorded from an 8x H100 SXM machine and a T4 box (values as nvidia-smi prints them).
H100_SMI = (
    "0, GPU-4d3b8a0e-7c1a-2b5f-9e6d-0a1b2c3d4e50, NVIDIA H100 80GB HBM3, 81559, 550.54.15, "
    "00000000:18:00.0\n"
    "1, GPU-4d3b8a0e-7c1a-2b5f-9e6d-0a1b2c3d4e51, NVIDIA H100 80GB HBM3, 81559, 550.54.15, "
    "00000000:2A:00.0\n"
)
T4_SMI = (
    "0, GPU-b1e0c7a2-93f4-11ee-8c90-0242ac120002, Tesla T4, 15360, 535.104.05, 00000000:00:1E.0\n"
)
MEMINFO = "MemTotal:       263855832 kB\nMemFree:        1000 kB\n"
CPUINFO = "processor\t: 0\nmodel name\t: AMD EPYC 9454 48-Core Processor\n"


def recorded(output: str | None) -> Any:
    calls: list[Sequence[str]] = []

    def runner(argv: Sequence[str]) -> str | None:
        calls.append(argv)
        return output

    runner.calls = calls  # type: ignore[attr-defined]
    return runner


@pytest.fixture
def machine(tmp_path: Path) -> Path:
    (tmp_path / "meminfo").write_text(MEMINFO)
    (tmp_path / "cpuinfo").write_text(CPUINFO)
    return tmp_path


def probed(name: str, output: str | None, machine: Path, cores: int | None = None) -> Object:
    return local_node(
        name,
        runner=recorded(output),
        cores=cores,
        meminfo=machine / "meminfo",
        cpuinfo=machine / "cpuinfo",
    )


def test_each_gpu_becomes_a_device_with_typed_attributes() -> None:
    devices = parse_nvidia_smi(H100_SMI)
    assert [d["name"] for d in devices] == ["gpu0", "gpu1"]
    gpu = devices[1]
    assert gpu["driver"] == "gpu.nvidia.com"
    assert gpu["attributes"] == {
        "model": {"string": "H100"},
        "index": {"int": 1},
        "uuid": {"string": "GPU-4d3b8a0e-7c1a-2b5f-9e6d-0a1b2c3d4e51"},
        "productName": {"string": "NVIDIA H100 80GB HBM3"},
        "driverVersion": {"version": "550.54.15"},
        PCI_BUS_ID: {"string": "0000:2a:00.0"},
    }
    assert gpu["capacity"] == {"compute": {"value": "1"}, "memory": {"value": "81559Mi"}}
    assert gpu["allowMultipleAllocations"] is True


def test_driver_versions_with_leading_zeros_become_semver() -> None:
    (t4,) = parse_nvidia_smi(T4_SMI)
    assert t4["attributes"]["driverVersion"] == {"version": "535.104.5"}
    assert t4["attributes"]["model"] == {"string": "T4"}
    assert t4["capacity"]["memory"] == {"value": "15Gi"}
    assert semver_text("470.82") == "470.82.0"
    assert semver_text("not-a-version") is None


@pytest.mark.parametrize(
    ("product", "model"),
    [
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("NVIDIA A100-SXM4-80GB", "A100"),
        ("Tesla V100-SXM2-32GB", "V100"),
        ("NVIDIA GeForce RTX 4090", "RTX 4090"),
        ("NVIDIA RTX A6000", "RTX A6000"),
        ("NVIDIA L40S", "L40S"),
    ],
)
def test_the_short_model_is_what_selectors_compare(product: str, model: str) -> None:
    assert gpu_model(product) == model


def test_unreadable_nvidia_smi_output_is_named_by_line() -> None:
    with pytest.raises(GpuProbeError, match=r"line 2: expected 6 fields, got 'garbage'"):
        parse_nvidia_smi(H100_SMI.splitlines()[0] + "\ngarbage\n")
    with pytest.raises(GpuProbeError, match="index 'x' is not a number"):
        parse_nvidia_smi("x, GPU-1, Tesla T4, 15360, 535.104.05, 00000000:00:1E.0")


def test_no_nvidia_smi_means_no_gpus() -> None:
    runner = recorded(None)
    assert probe_gpus(runner) == []
    assert runner.calls == [NVIDIA_SMI_QUERY]
    assert run_command(["corral-no-such-program-here", "--version"]) is None


def test_an_nvidia_smi_that_fails_offers_no_gpus(caplog: pytest.LogCaptureFixture) -> None:
    def failing(argv: Sequence[str]) -> str | None:
        assert argv == NVIDIA_SMI_QUERY
        raise GpuProbeError("nvidia-smi exited with 9: NVIDIA-SMI has failed")

    assert probe_gpus(failing) == []
    assert "NVIDIA-SMI has failed" in caplog.text


def test_the_local_node_is_a_valid_node(machine: Path) -> None:
    node = probed("GPU_Box.example", H100_SMI, machine, cores=48)
    assert node["metadata"]["name"] == "gpu-box.example"
    cpu, *gpus = node["spec"]["devices"]
    assert cpu["name"] == "cpu"
    assert cpu["driver"] == "cpu.corral.dev"
    assert cpu["capacity"] == {"cores": {"value": 48}, "memory": {"value": "257671Mi"}}
    assert cpu["attributes"]["model"] == {"string": "AMD EPYC 9454 48-Core Processor"}
    assert len(gpus) == 2
    status = node["status"]
    assert (status["deviceCount"], status["gpuCount"]) == (3, 2)
    assert [c["type"] for c in status["conditions"]] == ["Ready"]
    assert {d["health"] for d in status["devices"]} == {"Healthy"}
    stored = validate_object({k: v for k, v in node.items() if k != "status"})
    assert stored["spec"]["devices"][1]["attributes"]["driverVersion"] == {"version": "550.54.15"}


def test_this_machine_probes_without_error() -> None:
    node = validate_object({k: v for k, v in local_node().items() if k != "status"})
    cpu = node["spec"]["devices"][0]
    assert cpu["capacity"]["cores"]["value"] >= 1


@pytest.mark.parametrize(
    ("given", "name"), [("Box_1", "box-1"), ("-x-", "x"), ("", "localhost"), ("a" * 300, "a" * 253)]
)
def test_node_names_are_made_valid(given: str, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "")
    assert node_name(given) == name


async def test_the_node_registers_and_heartbeats_through_the_store(
    tmp_path: Path, machine: Path
) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'corral.db'}")
    try:

        async def apply(obj: Object) -> Object:
            (outcome,) = await store.apply([validate_object(obj)], actor="system:node")
            return outcome.object

        async def read(name: str) -> Object:
            return await store.get("Node", "", name)

        node = probed("box", T4_SMI, machine, cores=8)
        stored = await register_local_node(apply, store.update_status, read, node=node)
        again = await read("box")
        assert again["spec"]["devices"][1]["attributes"]["model"] == {"string": "T4"}
        assert again["status"]["gpuCount"] == 1
        first_beat = again["status"]["heartbeatTime"]

        # Right after the node reads itself, a scheduler writes its ledger, marks a GPU
        # unhealthy and adds a condition: the node's write conflicts, it reads again and keeps
        # all three.
        raced: list[bool] = []

        async def racing_read(name: str) -> Object:
            raced.append(False)
            current = await read(name)
            if len(raced) == 1:
                theirs = copy.deepcopy(current)
                theirs["status"]["allocations"] = {"ml/train": {"devices": ["gpu0"]}}
                theirs["status"]["devices"][1]["health"] = "Unhealthy"
                theirs["status"]["conditions"].append({"type": "Draining", "status": "True"})
                await store.update_status(theirs)
            return current

        beaten = await heartbeat(racing_read, store.update_status, "box")
        assert len(raced) == 2  # read, conflict, read again
        assert beaten["status"]["heartbeatTime"] > first_beat
        assert beaten["status"]["allocations"] == {"ml/train": {"devices": ["gpu0"]}}
        conditions = {c["type"]: c for c in beaten["status"]["conditions"]}
        assert set(conditions) == {"Ready", "Draining"}
        assert (
            conditions["Ready"]["lastTransitionTime"]
            == stored["status"]["conditions"][0]["lastTransitionTime"]
        )
        assert beaten["status"]["devices"][1]["health"] == "Unhealthy"

        # Restarted with the GPU gone: the spec follows the machine, the ledger stays.
        restarted = await register_local_node(
            apply, store.update_status, read, node=probed("box", None, machine)
        )
        assert [d["name"] for d in restarted["spec"]["devices"]] == ["cpu"]
        assert [d["name"] for d in restarted["status"]["devices"]] == ["cpu"]
        assert restarted["status"]["allocations"] == {"ml/train": {"devices": ["gpu0"]}}
    finally:
        await store.close()


async def test_a_write_that_keeps_conflicting_is_reported(machine: Path) -> None:
    node = probed("box", None, machine)
    reads: list[str] = []

    async def apply(obj: Object) -> Object:
        return {**obj, "status": {}}

    async def read(name: str) -> Object:
        reads.append(name)
        return {**node, "status": {}}

    async def always_stale(obj: Object) -> Object:
        raise Conflict(f"{obj['kind']}/box was modified")

    with pytest.raises(Conflict):
        await register_local_node(apply, always_stale, read, node=node)
    assert reads == ["box"] * 4


async def test_the_server_task_registers_then_heartbeats_until_stopped() -> None:
    written: list[Object] = []
    stop = asyncio.Event()

    async def apply(obj: Object) -> Object:
        written.append(obj)
        return {**obj, "metadata": {**obj["metadata"], "uid": "u1"}}

    async def read(name: str) -> Object:
        assert name == written[-1]["metadata"]["name"]
        return written[-1]

    async def write_status(obj: Object) -> Object:
        written.append(obj)
        beats = sum("status" in o for o in written)
        if beats == 3:
            stop.set()
        if beats == 2:
            raise ConnectionError("store away")  # a failed beat is retried at the next tick
        return obj

    task = keep_node_registered(
        apply, write_status, read, stop, interval=0.01, runner=recorded(T4_SMI)
    )
    stored = await asyncio.wait_for(task, timeout=10)
    assert "status" not in written[0]
    assert [w["status"]["gpuCount"] for w in written[1:]] == [1, 1, 1]
    assert stored["metadata"]["uid"] == "u1"
    assert stop.is_set()
