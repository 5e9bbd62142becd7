"""``corral sched simulate`` on small real CSV files: the table, the JSON shape, the PNG, and
clear errors for bad files and unknown policies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from corral.cli.sched_commands import sched

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NODES = """sn,cpu_milli,memory_mib,gpu,model
node-a,64000,262144,8,G2
node-b,32000,131072,2,T4
node-c,96000,393216,4,V100M16
node-d,16000,65536,0,
"""
PODS = """name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec
p1,4000,8192,1,1000,
p2,2000,4096,1,500,
p3,8000,16384,2,1000,
p4,1000,2048,0,0,
p5,6000,12288,1,250,G2|T4
p6,3000,6144,1,810,
p7,12000,32768,4,1000,V100M16
"""


@pytest.fixture
def trace(tmp_path: Path) -> tuple[Path, Path]:
    nodes = tmp_path / "nodes.csv"
    pods = tmp_path / "pods.csv"
    nodes.write_text(NODES)
    pods.write_text(PODS)
    return nodes, pods


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(sched, ["simulate", *map(str, args)])
    return result.exit_code, result.stdout, result.stderr


def test_table_lists_every_policy_and_writes_the_plot_next_to_the_pods(
    trace: tuple[Path, Path],
) -> None:
    nodes, pods = trace
    code, out, err = run("--nodes", nodes, "--pods", pods, "--seeds", "2")
    assert code == 0, err
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:] if line.strip()}
    assert list(rows)[:4] == ["random", "bestfit", "fgd", "default"]
    for cells in list(rows.values())[:4]:
        assert 0.0 < float(cells[1]) <= 100.0  # allocation %
    plot = pods.with_name("pods-allocation.png")
    assert plot.read_bytes().startswith(PNG_MAGIC)
    assert f"plot: {plot}" in out


def test_json_has_one_object_per_policy_with_the_documented_fields(
    trace: tuple[Path, Path], tmp_path: Path
) -> None:
    nodes, pods = trace
    plot = tmp_path / "curves.png"
    code, out, err = run(
        "--nodes", nodes, "--pods", pods, "--policy", "fgd,default", "--seeds", "3",
        "--inflation", "0.8", "--json", "--plot", plot,
    )  # fmt: skip
    assert code == 0, err
    objects = json.loads(out)  # stdout is only the JSON; the plot line goes to stderr
    assert [o["policy"] for o in objects] == ["fgd", "default"]
    for entry in objects:
        assert 0.0 < entry["mean_allocation_ratio"] <= 80.0 + 1e-9  # demand was 80%
        assert 0.0 <= entry["fragmentation_ratio"] <= 100.0
        assert entry["failed_pods"] >= 0
        assert entry["decisions_per_s"] > 0
        assert entry["seeds"] == 3
        assert entry["inflation"] == 0.8
    assert plot.read_bytes().startswith(PNG_MAGIC)
    assert not pods.with_name("pods-allocation.png").exists()
    assert str(plot) in err


def test_no_plot_writes_no_file(trace: tuple[Path, Path]) -> None:
    nodes, pods = trace
    code, _, err = run("--nodes", nodes, "--pods", pods, "--policy", "random", "--no-plot")
    assert code == 0, err
    assert not list(pods.parent.glob("*.png"))


def test_a_bad_pod_row_is_reported_with_file_and_line(trace: tuple[Path, Path]) -> None:
    nodes, pods = trace
    pods.write_text(PODS + "p8,1000,two,1,500,\n")
    code, out, err = run("--nodes", nodes, "--pods", pods, "--no-plot")
    assert code == 1
    assert f"{pods}:9: memory_mib 'two' is not an integer" in err
    assert out == ""


def test_a_missing_node_file_is_reported(trace: tuple[Path, Path], tmp_path: Path) -> None:
    _, pods = trace
    code, _, err = run("--nodes", tmp_path / "absent.csv", "--pods", pods, "--no-plot")
    assert code == 1
    assert "absent.csv: cannot open" in err


def test_a_fleet_without_gpus_is_an_error_not_a_crash(
    trace: tuple[Path, Path], tmp_path: Path
) -> None:
    _, pods = trace
    nodes = tmp_path / "cpu-only.csv"
    nodes.write_text("sn,cpu_milli,memory_mib,gpu,model\nn1,1000,1024,0,\n")
    code, _, err = run("--nodes", nodes, "--pods", pods, "--no-plot")
    assert code == 1
    assert "no GPUs" in err


def test_an_unknown_policy_is_a_usage_error_listing_the_known_ones(
    trace: tuple[Path, Path],
) -> None:
    nodes, pods = trace
    code, _, err = run("--nodes", nodes, "--pods", pods, "--policy", "fgd,tetris")
    assert code == 2
    assert "unknown policy 'tetris'" in err
    assert "random, bestfit, fgd, default" in err


def test_a_plot_into_a_missing_folder_fails_before_simulating(
    trace: tuple[Path, Path], tmp_path: Path
) -> None:
    nodes, pods = trace
    code, out, err = run("--nodes", nodes, "--pods", pods, "--plot", tmp_path / "no" / "x.png")
    assert code == 2
    assert "does not exist" in err
    assert out == ""


def test_without_matplotlib_it_says_what_to_install_before_running(
    trace: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    nodes, pods = trace
    monkeypatch.setattr("corral.cli.sched_commands.find_spec", lambda _name: None)
    code, out, err = run("--nodes", nodes, "--pods", pods)
    assert code == 1
    assert "matplotlib" in err
    assert "--no-plot" in err
    assert out == ""
    assert not list(pods.parent.glob("*.png"))
    code, _, err = run("--nodes", nodes, "--pods", pods, "--policy", "fgd", "--no-plot")
    assert code == 0, err


def test_help_describes_the_options_it_has() -> None:
    result = CliRunner().invoke(sched, ["simulate", "--help"])
    assert result.exit_code == 0
    for option in ("--nodes", "--pods", "--policy", "--seeds", "--inflation", "--json", "--plot"):
        assert option in result.stdout
    assert "mean_allocation_ratio" in result.stdout
