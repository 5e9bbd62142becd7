"""Loaders for the Alibaba GPU-sharing trace ("openb") CSV files.

They turn the node list into a :class:`Fleet` and a pod list into :class:`Task` objects for the
simulator. Columns the placement does not use (qos, phase, timestamps) are allowed and
ignored; the pod list's ``gpu_spec`` column is optional (the multigpu variants omit it). Every
bad row is reported as ``file:line: what is wrong``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from pathlib import Path

from corral.scheduler.fleet import Fleet, Task, task_problem

NODE_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
POD_COLUMNS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")


class TraceError(ValueError):
    """A trace file that cannot be read as nodes or pods; the message names file and line."""


def _rows(path: Path, required: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise TraceError(f"{path}: cannot open: {exc.strerror}") from exc
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise TraceError(f"{path}:1: empty file, expected a header row")
        header = [name.strip() for name in header]
        missing = [name for name in required if name not in header]
        if missing:
            raise TraceError(f"{path}:1: header lacks column(s) {', '.join(missing)}")
        for row in reader:
            line = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(header):
                raise TraceError(f"{path}:{line}: {len(row)} fields, header has {len(header)}")
            yield line, dict(zip(header, (value.strip() for value in row), strict=True))


def _integer(path: Path, line: int, row: dict[str, str], column: str) -> int:
    value = row[column]
    try:
        number = int(value)
    except ValueError:
        raise TraceError(f"{path}:{line}: {column} {value!r} is not an integer") from None
    if number < 0:
        raise TraceError(f"{path}:{line}: {column} {number} is negative")
    return number


def load_openb_nodes(path: str | Path) -> Fleet:
    """Read an ``openb_node_list*.csv`` (sn, cpu_milli, memory_mib, gpu, model) as a Fleet."""
    path = Path(path)
    names: list[str] = []
    cpu: list[int] = []
    mem: list[int] = []
    gpus: list[int] = []
    models: list[str] = []
    seen: dict[str, int] = {}
    for line, row in _rows(path, NODE_COLUMNS):
        name = row["sn"]
        if not name:
            raise TraceError(f"{path}:{line}: sn (node name) is empty")
        if name in seen:
            raise TraceError(f"{path}:{line}: node {name!r} already defined on line {seen[name]}")
        seen[name] = line
        count = _integer(path, line, row, "gpu")
        if count > 0 and not row["model"]:
            raise TraceError(f"{path}:{line}: node {name!r} has {count} GPUs but no model")
        names.append(name)
        cpu.append(_integer(path, line, row, "cpu_milli"))
        mem.append(_integer(path, line, row, "memory_mib"))
        gpus.append(count)
        models.append(row["model"])
    if not names:
        raise TraceError(f"{path}: no nodes")
    return Fleet.create(names, cpu, mem, gpus, models)


def load_openb_pods(path: str | Path) -> list[Task]:
    """Read an ``openb_pod_list*.csv`` as Tasks, in file order."""
    path = Path(path)
    tasks: list[Task] = []
    for line, row in _rows(path, POD_COLUMNS):
        cpu, mem, num_gpu, gpu_milli = (
            _integer(path, line, row, column) for column in POD_COLUMNS[1:]
        )
        problem = task_problem(cpu, mem, num_gpu, gpu_milli)
        if problem:
            raise TraceError(f"{path}:{line}: {problem}")
        spec = row.get("gpu_spec", "")
        models = tuple(sorted({m.strip() for m in spec.split("|") if m.strip()}))
        tasks.append(Task(row["name"] or f"line-{line}", cpu, mem, num_gpu, gpu_milli, models))
    if not tasks:
        raise TraceError(f"{path}: no pods")
    return tasks
