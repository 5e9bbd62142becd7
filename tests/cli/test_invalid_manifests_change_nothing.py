"""A manifest set with any problem is refused whole, every problem named with its location."""

from __future__ import annotations

from pathlib import Path

from .helpers import Cli, endpoint, model, write


def test_every_problem_is_reported_and_nothing_is_sent(cli: Cli, tmp_path: Path) -> None:
    stack = write(
        tmp_path / "stack",
        {
            "a-good.yaml": model("invalid-set-good"),
            "b-bad.yaml": (
                model("Bad_Name")
                + "---\n"
                + endpoint("invalid-set-ep", "x", replicas=500)
                + "---\nkind: Gadget\nmetadata: {name: g}\n"
            ),
        },
    )
    result = cli("apply", "-f", str(stack))
    assert result.returncode == 1
    bad = stack / "b-bad.yaml"
    lines = result.stderr.splitlines()
    assert lines[0] == "error: nothing was sent to the server: 4 problem(s) in 3 of 4 object(s)"
    assert lines[1].startswith(f"  {bad}[0] metadata.name: 'Bad_Name' is not a valid name")
    assert lines[2].startswith(f"  {bad}[1] spec.replicas: ")
    assert lines[3].startswith(f"  {bad}[2] apiVersion: ")
    assert lines[4] == f"  {bad}[2] kind: unknown kind 'Gadget'"
    assert cli("get", "model", "invalid-set-good").returncode == 1


def test_duplicate_names_across_files_are_refused(cli: Cli, tmp_path: Path) -> None:
    stack = write(
        tmp_path, {"one.yaml": model("twice"), "two.yaml": model("twice", labels="{b: c}")}
    )
    result = cli("apply", "-f", str(stack))
    assert result.returncode == 1
    assert (
        f"  {tmp_path / 'two.yaml'}[0] metadata.name: Model/default/twice is declared twice: "
        f"at {tmp_path / 'one.yaml'}[0] and here"
    ) in result.stderr
    assert cli("get", "model", "twice").returncode == 1


def test_server_side_refusal_is_all_or_nothing(cli: Cli, tmp_path: Path) -> None:
    # Valid locally, but the namespace does not exist: the server refuses the whole batch.
    elsewhere = model("in-missing-ns").replace("labels: {}", "labels: {}, namespace: nowhere")
    stack = write(tmp_path, {"a.yaml": model("beside-missing-ns"), "b.yaml": elsewhere})
    result = cli("apply", "-f", str(stack))
    assert result.returncode == 1
    assert f"{tmp_path / 'b.yaml'}[0] metadata.namespace: namespace 'nowhere'" in result.stderr
    assert cli("get", "model", "beside-missing-ns").returncode == 1


def test_unparseable_yaml_names_file_line_and_column(cli: Cli, tmp_path: Path) -> None:
    stack = write(tmp_path, {"broken.yaml": "kind: Model\nmetadata:\n  name: [x\n"})
    result = cli("apply", "-f", str(stack))
    assert result.returncode == 1
    assert f"  {tmp_path / 'broken.yaml'}[0] line 4, column 1: " in result.stderr


def test_manifests_from_stdin(cli: Cli) -> None:
    assert cli.ok("apply", "-f", "-", input=model("from-stdin")).strip() == (
        "model/from-stdin created"
    )
    result = cli("apply", "-f", "-", input="kind: Model\n")
    assert result.returncode == 1
    assert "stdin[0] apiVersion: must be 'corral.dev/v1alpha1'" in result.stderr
