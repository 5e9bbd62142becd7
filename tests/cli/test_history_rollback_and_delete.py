"""``history`` lists generations; ``rollback`` restores one as a new generation; ``delete``."""

from __future__ import annotations

import json
from pathlib import Path

from .helpers import Cli, endpoint, model, write


def test_history_then_rollback_to_an_earlier_generation(cli: Cli, tmp_path: Path) -> None:
    cli.ok("apply", "-f", str(write(tmp_path, {"m.yaml": model("hist-m")})))
    for replicas in (1, 4):
        write(tmp_path, {"e.yaml": endpoint("hist-ep", "hist-m", replicas=replicas)})
        cli.ok("apply", "-f", str(tmp_path / "e.yaml"))

    rows = [line.split() for line in cli.ok("history", "ep", "hist-ep").splitlines()]
    assert rows[0] == ["GENERATION", "WHEN", "WHO", "ACTION", "CHANGES"]
    assert [(row[0], row[4], row[5]) for row in rows[1:]] == [
        ("1", "admin", "created"),
        ("2", "admin", "updated"),
    ]
    assert rows[2][6] == "~spec.replicas"

    assert cli.ok("rollback", "endpoint", "hist-ep", "--to-generation", "1").strip() == (
        "endpoint/hist-ep rolled back to generation 1 (now generation 3)"
    )
    restored = cli.json("get", "ep", "hist-ep")
    assert (restored["spec"]["replicas"], restored["metadata"]["generation"]) == (1, 3)
    entries = json.loads(cli.ok("history", "ep", "hist-ep", "-o", "json"))
    assert [entry["generation"] for entry in entries] == [1, 2, 3]


def test_rollback_to_an_unknown_generation_is_refused(cli: Cli, tmp_path: Path) -> None:
    cli.ok("apply", "-f", str(write(tmp_path, {"m.yaml": model("hist-unknown")})))
    result = cli("rollback", "model", "hist-unknown", "--to-generation", "7")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: model/hist-unknown has no generation 7; recorded generations: 1"
    )
    usage = cli("rollback", "model", "hist-unknown")
    assert usage.returncode == 2
    assert "--to-generation" in usage.stderr


def test_delete_by_name_and_by_manifest(cli: Cli, tmp_path: Path) -> None:
    stack = write(tmp_path, {"a.yaml": model("del-a"), "b.yaml": model("del-b")})
    cli.ok("apply", "-f", str(stack))
    assert cli.ok("delete", "model", "del-a").strip() == "model/del-a deleted"
    again = cli("delete", "model", "del-a")
    assert again.returncode == 1
    assert "del-a" in again.stderr
    assert cli.ok("delete", "model", "del-a", "--ignore-not-found") == ""

    partly = cli("delete", "-f", str(stack))
    assert partly.returncode == 1
    assert partly.stdout.strip() == "model/del-b deleted"
    assert "1 of 2 object(s) could not be deleted" in partly.stderr
    assert cli("get", "model", "del-b").returncode == 1


def test_delete_needs_a_target(cli: Cli) -> None:
    result = cli("delete", "model")
    assert result.returncode == 2
    assert "give KIND NAME" in result.stderr
