"""The openb loaders read good files and reject bad rows with ``file:line: what is wrong``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from corral.scheduler import Fleet, Task, TraceError, load_openb_nodes, load_openb_pods

NODE_HEADER = "sn,cpu_milli,memory_mib,gpu,model\n"
POD_HEADER = (
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,"
    "creation_time,deletion_time,scheduled_time\n"
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_nodes_load_into_fleet_arrays(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "nodes.csv",
        NODE_HEADER + "n-0,96000,393216,8,G2\nn-1,104000,524288,2,T4\nn-2,32000,65536,0,\n",
    )
    fleet = load_openb_nodes(path)
    assert isinstance(fleet, Fleet)
    assert fleet.names == ("n-0", "n-1", "n-2")
    assert list(fleet.gpu_count) == [8, 2, 0]
    assert fleet.gpu_capacity_milli == 10_000
    assert fleet.gpu_models[fleet.gpu_model[1]] == "T4"
    assert list(fleet.gpu_free[1]) == [1000, 1000, 0, 0, 0, 0, 0, 0]


def test_pods_load_with_or_without_optional_columns(tmp_path: Path) -> None:
    full = write(
        tmp_path,
        "pods.csv",
        POD_HEADER
        + "p-0,12000,16384,1,1000,,LS,Running,0,100,0\n"
        + "p-1,6000,12288,1,460,V100M16|T4,LS,Running,5,100,5\n"
        + "p-2,8000,30517,0,0,,BE,Failed,9,10,9\n",
    )
    short = write(
        tmp_path, "short.csv", "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np,1,2,4,1000\n"
    )
    assert load_openb_pods(full) == [
        Task("p-0", 12000, 16384, 1, 1000),
        Task("p-1", 6000, 12288, 1, 460, ("T4", "V100M16")),
        Task("p-2", 8000, 30517),
    ]
    assert load_openb_pods(short) == [Task("p", 1, 2, 4, 1000)]


@pytest.mark.parametrize(
    ("rows", "line", "message"),
    [
        ("n-0,96000,393216,8\n", 2, "4 fields, header has 5"),
        ("n-0,96000,393216,8,G2\nn-1,lots,1,1,T4\n", 3, "cpu_milli 'lots' is not an integer"),
        ("n-0,96000,-1,8,G2\n", 2, "memory_mib -1 is negative"),
        (
            "n-0,96000,393216,8,G2\nn-0,96000,393216,8,G2\n",
            3,
            "node 'n-0' already defined on line 2",
        ),
        ("n-0,96000,393216,8,\n", 2, "node 'n-0' has 8 GPUs but no model"),
        (",96000,393216,8,G2\n", 2, "sn (node name) is empty"),
    ],
)
def test_bad_node_rows_are_named(tmp_path: Path, rows: str, line: int, message: str) -> None:
    path = write(tmp_path, "nodes.csv", NODE_HEADER + rows)
    with pytest.raises(TraceError) as caught:
        load_openb_nodes(path)
    assert str(caught.value) == f"{path}:{line}: {message}"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("p,1000,1024,1,1200,,LS,Running,0,0,0", "gpu_milli must be 1..1000 when num_gpu >= 1"),
        ("p,1000,1024,2,500,,LS,Running,0,0,0", "gpu_milli must be 1000"),
        ("p,1000,1024,0,300,,LS,Running,0,0,0", "gpu_milli must be 0 when num_gpu is 0"),
        ("p,1000,1024,1,0,,LS,Running,0,0,0", "gpu_milli must be 1..1000 when num_gpu >= 1"),
        ("p,1000,1024,one,0,,LS,Running,0,0,0", "num_gpu 'one' is not an integer"),
        ("p,1000,1024,1,500", "5 fields, header has 11"),
    ],
)
def test_bad_pod_rows_are_named(tmp_path: Path, row: str, message: str) -> None:
    good = "ok,1000,1024,1,500,,LS,Running,0,0,0\n"
    path = write(tmp_path, "pods.csv", POD_HEADER + good + row + "\n")
    with pytest.raises(TraceError, match=f"^{path}:3: .*{message}"):
        load_openb_pods(path)


@pytest.mark.parametrize(
    ("loader", "text", "message"),
    [
        (load_openb_nodes, "", ":1: empty file, expected a header row"),
        (load_openb_nodes, "sn,cpu_milli,gpu,model\n", ":1: header lacks column(s) memory_mib"),
        (load_openb_nodes, NODE_HEADER, ": no nodes"),
        (load_openb_pods, POD_HEADER, ": no pods"),
    ],
)
def test_empty_or_headless_files_are_rejected(
    tmp_path: Path, loader: Callable[[Path], object], text: str, message: str
) -> None:
    path = write(tmp_path, "trace.csv", text)
    with pytest.raises(TraceError) as caught:
        loader(path)
    assert str(caught.value) == f"{path}{message}"


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match=r"absent\.csv: cannot open"):
        load_openb_pods(tmp_path / "absent.csv")
