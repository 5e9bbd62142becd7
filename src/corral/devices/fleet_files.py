"""Fleet files: many machines described at once, as Node objects ready to apply or simulate.

Where this sits: an operator who cannot run corral on every machine (or who wants to replay a
cluster trace) describes the fleet in a file; ``corral apply`` writes the Nodes, and the claim
scheduler allocates from them as from self-registered ones (``corral.devices.inventory``).

- :func:`load_fleet_csv` reads the openb node list (Alibaba GPU cluster trace, Weng et al.,
  ATC '23): ``sn,cpu_milli,memory_mib,gpu,model`` per machine. Each row becomes a Node with a
  shareable ``cpu`` device and ``gpu`` shareable GPU devices of that model (memory known for
  the public models; the trace's ``G2``/``G3`` are anonymous and carry no memory capacity).
- :func:`load_fleet_yaml` reads Node manifests: a YAML list, or a stream of documents.

Every Node passes the same write-gate validation an apply does; a bad row or manifest is
named by ``file:line`` with the field and the problem, and nothing is returned half-read.
"""

from __future__ import annotations

import csv
from fractions import Fraction
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

import corral.api.kinds.node  # noqa: F401  (registers the Node kind the checks below need)
from corral.api.errors import Invalid
from corral.api.objects import Object, name_problem
from corral.api.quantity import format_quantity
from corral.api.validation import validate_object
from corral.devices.inventory import cpu_device, gpu_device, node_object, node_status

CSV_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
MAX_FLEET_FILE_BYTES = 64 * 1024 * 1024
# Memory of the GPU models in public traces (MiB, as nvidia-smi reports them).
GPU_MEMORY_MIB = {
    "A10": 24 * 1024,
    "A100": 80 * 1024,
    "H100": 80 * 1024,
    "H200": 141 * 1024,
    "L4": 24 * 1024,
    "L40S": 48 * 1024,
    "P100": 16 * 1024,
    "T4": 16 * 1024,
    "V100M16": 16 * 1024,
    "V100M32": 32 * 1024,
}
MAX_GPUS_PER_NODE = 64


class FleetFileError(ValueError):
    """A fleet file that cannot be read; every message starts with ``file:line``."""


def load_fleet_csv(path: str | Path, *, shared_gpus: bool = True) -> list[Object]:
    """Nodes from an openb-style node list (``sn,cpu_milli,memory_mib,gpu,model``)."""
    path = Path(path)
    text = _read(path)
    reader = csv.reader(text.splitlines())
    header = [name.strip() for name in next(reader, [])]
    if not header:
        raise FleetFileError(f"{path}:1: empty file, expected the header {','.join(CSV_COLUMNS)}")
    missing = [name for name in CSV_COLUMNS if name not in header]
    if missing:
        raise FleetFileError(f"{path}:1: the header lacks {', '.join(missing)}")
    nodes: list[Object] = []
    first_line: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise FleetFileError(f"{path}:{line}: {len(row)} fields; the header has {len(header)}")
        fields = dict(zip(header, (cell.strip() for cell in row), strict=True))
        node = _csv_node(fields, shared_gpus, f"{path}:{line}")
        name = node["metadata"]["name"]
        if name in first_line:
            raise FleetFileError(
                f"{path}:{line}: node {name!r} is already on line {first_line[name]}"
            )
        first_line[name] = line
        nodes.append(_checked(node, f"{path}:{line}"))
    return nodes


def _csv_node(fields: dict[str, str], shared: bool, where: str) -> Object:
    name = fields["sn"]
    if (problem := name_problem(name)) is not None:
        raise FleetFileError(f"{where}: sn: {problem}")
    numbers = {}
    for column in ("cpu_milli", "memory_mib", "gpu"):
        text = fields[column]
        if not text.isdigit():
            raise FleetFileError(f"{where}: {column}: {text!r} is not a whole number >= 0")
        numbers[column] = int(text)
    gpus, model = numbers["gpu"], fields["model"]
    if gpus > MAX_GPUS_PER_NODE:
        raise FleetFileError(f"{where}: gpu: {gpus} is more than {MAX_GPUS_PER_NODE} per node")
    if gpus and not model:
        raise FleetFileError(f"{where}: model: name the model of the {gpus} GPU(s)")
    devices = [
        cpu_device(
            format_quantity(Fraction(numbers["cpu_milli"], 1000)),
            format_quantity(numbers["memory_mib"] * 1024**2),
        ),
        *(
            gpu_device(i, model=model, memory_mib=GPU_MEMORY_MIB.get(model), shared=shared)
            for i in range(gpus)
        ),
    ]
    return node_object(name, devices)


def load_fleet_yaml(path: str | Path) -> list[Object]:
    """Node manifests from a YAML list or document stream, each checked as an apply would."""
    path = Path(path)
    text = _read(path)
    try:
        roots = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else 1
        raise FleetFileError(f"{path}:{line}: not YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise FleetFileError(f"{path}:1: not YAML: {exc}") from None
    items: list[Node] = []
    for root in roots:
        items.extend(root.value if isinstance(root, SequenceNode) else [root])
    nodes: list[Object] = []
    first_line: dict[str, int] = {}
    for item in items:
        line = item.start_mark.line + 1
        where = f"{path}:{line}"
        if not isinstance(item, MappingNode):
            raise FleetFileError(f"{where}: expected a Node manifest (a mapping)")
        document = yaml.SafeLoader("").construct_document(item)
        if not isinstance(document, dict) or document.get("kind") != "Node":
            kind = document.get("kind") if isinstance(document, dict) else None
            raise FleetFileError(f"{where}: kind: expected Node, got {kind!r}")
        status = document.pop("status", None)
        node = _checked(document, where)
        name = node["metadata"]["name"]
        if name in first_line:
            raise FleetFileError(f"{where}: node {name!r} is already at line {first_line[name]}")
        first_line[name] = line
        node["status"] = (
            status if isinstance(status, dict) else node_status(node["spec"]["devices"])
        )
        nodes.append(node)
    return nodes


def _read(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_FLEET_FILE_BYTES:
            raise FleetFileError(f"{path}:1: {size} bytes; the limit is {MAX_FLEET_FILE_BYTES}")
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FleetFileError(f"{path}:1: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise FleetFileError(f"{path}:1: not UTF-8 text ({exc.reason})") from None


def _checked(node: Object, where: str) -> Object:
    status = node.get("status")
    try:
        valid = validate_object({k: v for k, v in node.items() if k != "status"})
    except Invalid as exc:
        causes = "; ".join(f"{c.path}: {c.message}" if c.path else c.message for c in exc.causes)
        raise FleetFileError(f"{where}: {causes or exc.message}") from None
    if status is not None:
        valid["status"] = status
    return valid
