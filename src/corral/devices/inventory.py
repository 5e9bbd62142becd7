"""The local machine as a ``Node``: its CPU, memory and NVIDIA GPUs, and how it registers.

Where this sits: when a corral server starts it runs :func:`keep_node_registered` with the
store's apply, status write and read; the Node it writes is what the claim scheduler
(``corral.devices.fleet_index``) allocates from, and :func:`heartbeat` keeps its ``Ready``
condition fresh without touching what the schedulers keep in the same status (their ledger).
Operators describe other machines with fleet files instead (``corral.devices.fleet_files``),
which build their devices with the same helpers.

Devices (Kubernetes DRA style, one pool per node):

- ``cpu`` (driver ``cpu.corral.dev``): one shareable device with capacity ``cores`` and
  ``memory``; claims consume parts of it (a llama.cpp replica's threads and RAM).
- ``gpu<i>`` (driver ``gpu.nvidia.com``): one per GPU ``nvidia-smi`` lists, with attributes
  ``model`` ("H100"), ``productName``, ``uuid``, ``index``, ``driverVersion`` (a version) and
  ``resource.kubernetes.io/pciBusID``, and capacity ``memory`` and ``compute`` (1 = the whole
  GPU; shares are milli-GPUs). No ``nvidia-smi`` means no GPUs, not an error.

``nvidia-smi`` runs behind a transport seam (:data:`Runner`) so tests feed it recorded output.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import re
import shutil
import socket
import subprocess
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from corral.api.errors import Conflict
from corral.api.objects import API_VERSION, Object, now_rfc3339
from corral.api.quantity import format_quantity

log = logging.getLogger(__name__)

CPU_DRIVER = "cpu.corral.dev"
GPU_DRIVER = "gpu.nvidia.com"
PCI_BUS_ID = "resource.kubernetes.io/pciBusID"
NVIDIA_SMI_QUERY = (
    "nvidia-smi",
    "--query-gpu=index,uuid,name,memory.total,driver_version,pci.bus_id",
    "--format=csv,noheader,nounits",
)
MAX_VALUE_LENGTH = 64  # Kubernetes' limit on a string attribute

Runner = Callable[[Sequence[str]], str | None]
"""Runs a command and returns its stdout; None when the program is not installed."""


class GpuProbeError(RuntimeError):
    """``nvidia-smi`` ran but its answer cannot be read; the message quotes the line."""


def run_command(argv: Sequence[str], *, timeout: float = 20.0) -> str | None:
    """The default :data:`Runner`: the program's stdout, None when it is not on PATH."""
    if shutil.which(argv[0]) is None:
        return None
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        # Installed but unusable (no driver loaded, no device): report it, offer no GPUs.
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise GpuProbeError(
            f"{argv[0]} exited with {done.returncode}: {detail[0] if detail else 'no output'}"
        )
    return done.stdout


def gpu_model(product_name: str) -> str:
    """The short model a selector compares ("H100") from the product name nvidia-smi reports."""
    words = [w for w in product_name.split() if w not in ("NVIDIA", "Tesla", "GeForce", "Quadro")]
    kept: list[str] = []
    for word in words:
        kept.append(word.split("-")[0] if not kept else word)
        if any(ch.isdigit() for ch in kept[-1]):
            break
    return " ".join(kept)[:MAX_VALUE_LENGTH] or product_name[:MAX_VALUE_LENGTH]


def semver_text(version: str) -> str | None:
    """A driver version as semver ("535.104.05" -> "535.104.5", "470.82" -> "470.82.0")."""
    match = re.fullmatch(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", version.strip())
    if match is None:
        return None
    major, minor, patch = (int(part or 0) for part in match.groups())
    return f"{major}.{minor}.{patch}"


def _pci_bus_id(raw: str) -> str:
    # nvidia-smi writes an 8-digit PCI domain ("00000000:18:00.0"); the usual form has 4.
    domain, sep, rest = raw.strip().lower().partition(":")
    if sep and len(domain) > 4 and domain.startswith("0" * (len(domain) - 4)):
        domain = domain[-4:]
    return f"{domain}{sep}{rest}"


def gpu_device(
    index: int,
    *,
    model: str,
    memory_mib: int | None = None,
    uuid: str = "",
    product_name: str = "",
    driver_version: str = "",
    pci_bus_id: str = "",
    shared: bool = True,
) -> dict[str, Any]:
    """One GPU as a Node device; fields left empty are left out."""
    attributes: dict[str, dict[str, Any]] = {
        "model": {"string": model[:MAX_VALUE_LENGTH]},
        "index": {"int": index},
    }
    if uuid:
        attributes["uuid"] = {"string": uuid[:MAX_VALUE_LENGTH]}
    if product_name:
        attributes["productName"] = {"string": product_name[:MAX_VALUE_LENGTH]}
    if driver_version:
        version = semver_text(driver_version)
        attributes["driverVersion"] = (
            {"version": version} if version else {"string": driver_version[:MAX_VALUE_LENGTH]}
        )
    if pci_bus_id:
        attributes[PCI_BUS_ID] = {"string": _pci_bus_id(pci_bus_id)}
    capacity: dict[str, dict[str, Any]] = {"compute": {"value": "1"}}
    if memory_mib is not None:
        capacity["memory"] = {"value": format_quantity(memory_mib * 1024**2)}
    return {
        "name": f"gpu{index}",
        "driver": GPU_DRIVER,
        "attributes": attributes,
        "capacity": capacity,
        "allowMultipleAllocations": shared,
    }


def cpu_device(
    cores: str | int, memory: str | int, *, model: str = "", arch: str = ""
) -> dict[str, Any]:
    """The machine's CPUs and RAM as one shareable device (claims take cores and memory)."""
    attributes: dict[str, dict[str, Any]] = {}
    if model:
        attributes["model"] = {"string": model[:MAX_VALUE_LENGTH]}
    if arch:
        attributes["arch"] = {"string": arch[:MAX_VALUE_LENGTH]}
    return {
        "name": "cpu",
        "driver": CPU_DRIVER,
        "attributes": attributes,
        "capacity": {"cores": {"value": cores}, "memory": {"value": memory}},
        "allowMultipleAllocations": True,
    }


def parse_nvidia_smi(output: str) -> list[dict[str, Any]]:
    """GPU devices from the CSV of :data:`NVIDIA_SMI_QUERY`; a bad line raises naming it."""
    devices = []
    for number, line in enumerate(output.splitlines(), start=1):
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != 6:
            raise GpuProbeError(f"nvidia-smi line {number}: expected 6 fields, got {line!r}")
        index, uuid, name, memory, driver, bus = fields
        if not index.isdigit():
            raise GpuProbeError(f"nvidia-smi line {number}: index {index!r} is not a number")
        # A GPU whose memory reads "[N/A]" (some MIG and vGPU setups) is offered without it.
        memory_mib = int(memory) if memory.isdigit() else None
        devices.append(
            gpu_device(
                int(index),
                model=gpu_model(name),
                memory_mib=memory_mib,
                uuid=uuid,
                product_name=name,
                driver_version=driver,
                pci_bus_id=bus,
            )
        )
    return devices


def probe_gpus(runner: Runner = run_command) -> list[dict[str, Any]]:
    """The local NVIDIA GPUs; none when ``nvidia-smi`` is missing or cannot reach a driver."""
    try:
        output = runner(NVIDIA_SMI_QUERY)
    except (GpuProbeError, OSError, subprocess.TimeoutExpired) as exc:
        log.warning("no GPUs offered: %s", exc)
        return []
    return [] if output is None else parse_nvidia_smi(output)


def _memory_bytes(meminfo: Path) -> int:
    try:
        for line in meminfo.read_text(encoding="ascii").splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024  # the kernel writes kB (KiB)
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _cpu_model(cpuinfo: Path) -> str:
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return ""


def _usable_cores() -> int:
    # The cores this process may run on (containers and taskset narrow it), not the host's.
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def local_node(
    name: str | None = None,
    *,
    runner: Runner = run_command,
    meminfo: Path = Path("/proc/meminfo"),
    cpuinfo: Path = Path("/proc/cpuinfo"),
    cores: int | None = None,
    labels: dict[str, str] | None = None,
) -> Object:
    """This machine as a Node object (spec and status), ready to apply."""
    memory = _memory_bytes(meminfo)
    devices = [
        cpu_device(
            cores if cores is not None else _usable_cores(),
            format_quantity(memory // 1024**2 * 1024**2),
            model=_cpu_model(cpuinfo),
            arch=platform.machine(),
        ),
        *probe_gpus(runner),
    ]
    return node_object(node_name(name), devices, labels=labels)


def node_name(name: str | None = None) -> str:
    """A valid Node name: ``name`` or the host name, lower-cased, odd characters as '-'."""
    raw = (name or socket.gethostname() or "localhost").lower()
    cleaned = re.sub(r"[^a-z0-9.-]+", "-", raw).strip("-.")
    return cleaned[:253].rstrip("-.") or "localhost"


def node_object(
    name: str, devices: list[dict[str, Any]], *, labels: dict[str, str] | None = None
) -> Object:
    """A Node with ``devices``, Ready and every device Healthy as of now."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Node",
        "metadata": {"name": name, "labels": dict(labels or {})},
        "spec": {"devices": devices},
        "status": node_status(devices),
    }


def node_status(devices: list[dict[str, Any]], *, ready: bool = True) -> dict[str, Any]:
    now = now_rfc3339()
    return {
        "conditions": [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "reason": "Heartbeat" if ready else "NotReporting",
                "message": "the node reported its devices" if ready else "",
                "lastTransitionTime": now,
            }
        ],
        "devices": [{"name": d["name"], "health": "Healthy"} for d in devices],
        "heartbeatTime": now,
        "deviceCount": len(devices),
        "gpuCount": sum(1 for d in devices if d["driver"] == GPU_DRIVER),
    }


Write = Callable[[Object], Awaitable[Object]]
"""A store-facing write: takes an object, returns it as stored."""
Read = Callable[[str], Awaitable[Object]]
"""Reads the Node called ``name`` as stored (``store.get("Node", "", name)``)."""

# Status fields this module writes; everything else in a Node's status (the schedulers'
# ledger ``allocations``, other writers' conditions and health verdicts) is someone else's.
OWN_STATUS_FIELDS = ("heartbeatTime", "deviceCount", "gpuCount")
CONFLICT_RETRIES = 5


def merge_status(current: dict[str, Any] | None, devices: list[dict[str, Any]]) -> dict[str, Any]:
    """``current`` with this node's report for ``devices`` merged in, nothing else touched.

    Ready is replaced (its transition time kept while it stays True); other conditions stay;
    a device keeps the health another writer gave it, a new device is Healthy, a device no
    longer in the spec loses its entry; ``allocations`` and unknown fields are kept as stored.
    """
    status = dict(current or {})
    fresh = node_status(devices)
    conditions = [c for c in status.get("conditions") or [] if isinstance(c, dict)]
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    if ready is not None and ready.get("status") == "True":
        # A condition's transition time moves only when its status changes.
        fresh["conditions"][0]["lastTransitionTime"] = ready.get("lastTransitionTime", "")
    fresh["conditions"] += [c for c in conditions if c.get("type") != "Ready"]
    kept_health = {d.get("name"): d for d in status.get("devices") or [] if isinstance(d, dict)}
    fresh["devices"] = [kept_health.get(d["name"], d) for d in fresh["devices"]]
    status.update(fresh)
    return status


async def _write_report(read: Read, write_status: Write, stored: Object) -> Object:
    # Read-modify-write under the Node's resourceVersion: a scheduler may bind a claim (write
    # the ledger) between our read and our write; on a conflict read again and re-merge.
    name = stored["metadata"]["name"]
    for attempt in range(CONFLICT_RETRIES):
        devices = list((stored.get("spec") or {}).get("devices") or [])
        try:
            return await write_status(
                {**stored, "status": merge_status(stored.get("status"), devices)}
            )
        except Conflict:
            if attempt == CONFLICT_RETRIES - 1:
                raise
            stored = await read(name)
    raise AssertionError("unreachable")  # the loop returns or raises


async def register_local_node(
    apply: Write,
    write_status: Write,
    read: Read,
    *,
    node: Object | None = None,
    name: str | None = None,
    runner: Runner = run_command,
) -> Object:
    """Write this machine's Node (spec by ``apply``, then its report into status); return it.

    ``apply`` creates the Node or brings its spec up to date (a GPU added or gone since the
    last start) and returns it as stored, status included; the report is merged into that
    status (see :func:`merge_status`) and written with ``write_status``, re-read with ``read``
    on a conflict. All three are the store's, so the same code serves one process or many.
    """
    node = node if node is not None else local_node(name, runner=runner)
    stored = await apply({key: value for key, value in node.items() if key != "status"})
    return await _write_report(read, write_status, stored)


async def heartbeat(read: Read, write_status: Write, name: str) -> Object:
    """Refresh the heartbeat and Ready condition of the registered Node ``name``."""
    return await _write_report(read, write_status, await read(name))


async def keep_node_registered(
    apply: Write,
    write_status: Write,
    read: Read,
    stop: asyncio.Event,
    *,
    interval: float = 30.0,
    name: str | None = None,
    runner: Runner = run_command,
) -> Object:
    """Register this machine, then heartbeat every ``interval`` seconds until ``stop`` is set.

    The server runs this as one of its tasks. A failed heartbeat is logged and retried at the
    next tick (the store may be briefly away); registration failing is the caller's error.
    Returns the Node as last stored.
    """
    # nvidia-smi can take seconds on a busy machine: keep it off the event loop.
    node = await asyncio.to_thread(local_node, name, runner=runner)
    stored = await register_local_node(apply, write_status, read, node=node)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            pass
        else:
            break
        try:
            stored = await heartbeat(read, write_status, stored["metadata"]["name"])
        except Exception as exc:  # a heartbeat must not end the server
            log.warning("node %s: heartbeat failed: %s", stored["metadata"]["name"], exc)
    return stored
