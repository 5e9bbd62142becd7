"""Fleet files: the openb node list and YAML Node manifests load as valid Nodes; a bad row or
manifest is named by file:line with the field and what is wrong, and nothing half-read returns."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.devices.fleet_files import FleetFileError, load_fleet_csv, load_fleet_yaml

OPENB = Path("/work/shared/data/openb/openb_node_list_gpu_node.csv")
HEADER = "sn,cpu_milli,memory_mib,gpu,model\n"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_openb_node_list_loads_every_node() -> None:
    nodes = load_fleet_csv(OPENB)
    assert len(nodes) == 1213
    gpus = [d for n in nodes for d in n["spec"]["devices"] if d["driver"] == "gpu.nvidia.com"]
    assert len(gpus) == 6212
    first = nodes[0]
    assert first["metadata"]["name"] == "openb-node-0000"
    cpu, gpu0, gpu1 = first["spec"]["devices"]
    assert cpu["capacity"] == {"cores": {"value": "64"}, "memory": {"value": "256Gi"}}
    assert gpu0["attributes"] == {"model": {"string": "P100"}, "index": {"int": 0}}
    assert gpu1["capacity"] == {"compute": {"value": "1"}, "memory": {"value": "16Gi"}}
    assert first["status"]["gpuCount"] == 2


def test_anonymous_models_carry_no_memory_and_cpu_only_rows_no_gpus(tmp_path: Path) -> None:
    path = write(tmp_path, "f.csv", HEADER + "a,96500,786432,1,G2\nb,8000,16384,0,\n")
    a, b = load_fleet_csv(path, shared_gpus=False)
    assert a["spec"]["devices"][0]["capacity"]["cores"] == {"value": "96500m"}
    assert a["spec"]["devices"][1]["capacity"] == {"compute": {"value": "1"}}
    assert a["spec"]["devices"][1]["allowMultipleAllocations"] is False
    assert [d["name"] for d in b["spec"]["devices"]] == ["cpu"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("a,1,1,1,T4\nB_1,1,1,1,T4\n", r"f\.csv:3: sn: 'B_1' is not a valid name"),
        ("a,1,lots,1,T4\n", r"f\.csv:2: memory_mib: 'lots' is not a whole number"),
        ("a,1,1,-1,T4\n", r"f\.csv:2: gpu: '-1' is not a whole number"),
        ("a,1,1,2,\n", r"f\.csv:2: model: name the model of the 2 GPU"),
        ("a,1,1,1,T4\n\na,1,1,1,T4\n", r"f\.csv:4: node 'a' is already on line 2"),
        ("a,1,1,1\n", r"f\.csv:2: 4 fields; the header has 5"),
        ("a,1,1,99,T4\n", r"f\.csv:2: gpu: 99 is more than 64"),
    ],
)
def test_a_bad_row_is_named_by_file_and_line(tmp_path: Path, rows: str, message: str) -> None:
    with pytest.raises(FleetFileError, match=message):
        load_fleet_csv(write(tmp_path, "f.csv", HEADER + rows))


def test_a_bad_header_or_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FleetFileError, match=r"f\.csv:1: the header lacks gpu, model"):
        load_fleet_csv(write(tmp_path, "f.csv", "sn,cpu_milli,memory_mib\n"))
    with pytest.raises(FleetFileError, match=r"e\.csv:1: empty file"):
        load_fleet_csv(write(tmp_path, "e.csv", ""))
    with pytest.raises(FleetFileError, match=r"missing\.csv:1: cannot read"):
        load_fleet_csv(tmp_path / "missing.csv")


NODES_YAML = """\
- apiVersion: corral.dev/v1alpha1
  kind: Node
  metadata:
    name: h100-1
  spec:
    devices:
      - name: gpu0
        driver: gpu.nvidia.com
        attributes:
          model: {string: H100}
          driverVersion: {version: 550.54.15}
        capacity:
          memory: {value: 80Gi}
- apiVersion: corral.dev/v1alpha1
  kind: Node
  metadata:
    name: h100-2
  spec:
    devices:
      - name: gpu0
        driver: gpu.nvidia.com
        attributes:
          model: {string: H100}
  status:
    conditions: [{type: Ready, status: "False"}]
"""


def test_a_yaml_list_of_nodes_loads_with_defaults(tmp_path: Path) -> None:
    first, second = load_fleet_yaml(write(tmp_path, "fleet.yaml", NODES_YAML))
    assert first["metadata"]["name"] == "h100-1"
    assert first["spec"]["devices"][0]["capacity"] == {"memory": {"value": "80Gi"}}
    assert first["status"]["conditions"][0]["status"] == "True"
    assert second["status"]["conditions"] == [{"type": "Ready", "status": "False"}]


def test_a_yaml_document_stream_loads_too(tmp_path: Path) -> None:
    stream = "---\n".join(
        f"apiVersion: corral.dev/v1alpha1\nkind: Node\nmetadata: {{name: n{i}}}\n" for i in range(3)
    )
    nodes = load_fleet_yaml(write(tmp_path, "s.yaml", stream))
    assert [n["metadata"]["name"] for n in nodes] == ["n0", "n1", "n2"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("version: 550.54.15", "version: '550.54'"),
            r"fleet\.yaml:1: spec\.devices\[0\]\.attributes\.driverVersion\.version: .*'550\.54' "
            r"is not a semantic version",
        ),
        (("value: 80Gi", "value: 80 GB"), r"fleet\.yaml:1: .*'80 GB' is not a quantity"),
        (("name: h100-2", "name: h100-1"), r"fleet\.yaml:14: node 'h100-1' is already at line 1"),
        (
            ("kind: Node\n  metadata:\n    name: h100-2", "kind: Pod\n  metadata:\n    name: p"),
            r"fleet\.yaml:14: kind: expected Node, got 'Pod'",
        ),
        (
            (
                "  spec:\n    devices:\n      - name: gpu0\n        driver: gpu.nvidia.com\n"
                "        attributes:\n          model: {string: H100}\n  status",
                "  spec:\n    gpus: 2\n  status",
            ),
            r"fleet\.yaml:14: spec\.gpus: unknown field",
        ),
        (("- apiVersion", "- [not, a, node]\n- apiVersion"), r"fleet\.yaml:1: expected a Node"),
        (("model: {string: H100}", "model: {string: H100"), r"fleet\.yaml:\d+: not YAML"),
    ],
)
def test_a_bad_manifest_is_named_by_file_and_line(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    text = NODES_YAML.replace(*change, 1)
    assert text != NODES_YAML
    with pytest.raises(FleetFileError, match=message):
        load_fleet_yaml(write(tmp_path, "fleet.yaml", text))
