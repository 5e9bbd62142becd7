"""``diff`` shows what apply would change (exit 0/1/2); ``--dry-run`` and ``--prune`` behave."""

from __future__ import annotations

from pathlib import Path

from .helpers import Cli, endpoint, model, write


def test_diff_exit_status_follows_kubectl(cli: Cli, tmp_path: Path) -> None:
    stack = write(tmp_path, {"s.yaml": model("diff-m") + "---\n" + endpoint("diff-ep", "diff-m")})
    cli.ok("apply", "-f", str(stack))
    same = cli("diff", "-f", str(stack))
    assert (same.returncode, same.stdout) == (0, "")
    assert "no differences" in same.stderr

    write(
        tmp_path, {"s.yaml": model("diff-m") + "---\n" + endpoint("diff-ep", "diff-m", replicas=3)}
    )
    changed = cli("diff", "-f", str(stack))
    assert changed.returncode == 1
    assert changed.stdout.splitlines() == ["endpoint/diff-ep configured", "  ~ spec.replicas: 3"]
    assert cli.json("get", "ep", "diff-ep")["spec"]["replicas"] == 1

    broken = cli("diff", "-f", str(write(tmp_path, {"bad.yaml": "kind: Model\n"})))
    assert broken.returncode == 2
    assert broken.stderr.startswith("error: ")


def test_dry_run_apply_changes_nothing(cli: Cli, tmp_path: Path) -> None:
    stack = write(tmp_path, {"m.yaml": model("dry-run-only")})
    assert cli.ok("apply", "-f", str(stack), "--dry-run").strip() == (
        "model/dry-run-only created (dry run)"
    )
    assert cli("get", "model", "dry-run-only").returncode == 1


def test_prune_deletes_only_undeclared_objects_matching_the_selector(
    cli: Cli, tmp_path: Path
) -> None:
    keep, drop, other = (
        model("prune-keep", labels="{stack: p1}"),
        model("prune-drop", labels="{stack: p1}"),
        model("prune-other", labels="{stack: p2}"),
    )
    cli.ok("apply", "-f", str(write(tmp_path / "v1", {"a.yaml": keep, "b.yaml": drop})))
    cli.ok("apply", "-f", str(write(tmp_path / "other", {"c.yaml": other})))

    output = cli.ok(
        "apply", "-f", str(write(tmp_path / "v2", {"a.yaml": keep})), "--prune", "-l", "stack=p1"
    )
    assert output.splitlines() == ["model/prune-keep unchanged", "model/prune-drop pruned"]
    assert cli("get", "model", "prune-drop").returncode == 1
    assert cli.json("get", "model", "prune-other")["metadata"]["labels"] == {"stack": "p2"}


def test_prune_without_a_selector_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    stack = write(tmp_path, {"m.yaml": model("prune-usage")})
    result = cli("apply", "-f", str(stack), "--prune")
    assert result.returncode == 2
    assert "--prune needs -l/--selector" in result.stderr
