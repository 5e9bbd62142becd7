"""``apply -f DIR`` creates everything in one go; ``get`` and ``describe`` read it back."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from pathlib import Path

import yaml

from .helpers import CORRAL, Cli, endpoint, model, write


def test_apply_directory_creates_then_reports_unchanged(cli: Cli, tmp_path: Path) -> None:
    stack = write(
        tmp_path / "stack",
        {
            "models.yaml": model("apply-a") + "---\n" + model("apply-b"),
            "serving/chat.yaml": endpoint("apply-chat", "apply-a"),
        },
    )
    assert cli.ok("apply", "-f", str(stack)).splitlines() == [
        "model/apply-a created",
        "model/apply-b created",
        "endpoint/apply-chat created",
    ]
    assert cli.ok("apply", "-f", str(stack)).splitlines() == [
        "model/apply-a unchanged",
        "model/apply-b unchanged",
        "endpoint/apply-chat unchanged",
    ]


def test_get_prints_tables_and_whole_objects(cli: Cli, tmp_path: Path) -> None:
    stack = write(
        tmp_path, {"s.yaml": model("get-m") + "---\n" + endpoint("get-ep", "get-m", replicas=2)}
    )
    cli.ok("apply", "-f", str(stack))

    table = cli.ok("get", "models").splitlines()
    assert table[0].split() == ["NAME", "STATUS", "AGE"]
    assert any(line.split()[0] == "get-m" for line in table[1:])

    wide = cli.ok("get", "ep", "get-ep", "-o", "wide").splitlines()
    assert wide[0].split() == ["NAME", "STATUS", "AGE", "RUNTIME", "READY", "CONDITIONS"]
    assert wide[1].split()[0:1] + wide[1].split()[3:4] == ["get-ep", "openai"]

    one = cli.json("get", "endpoint", "get-ep")
    assert one["kind"] == "Endpoint"
    assert one["spec"]["replicas"] == 2
    assert one["metadata"]["generation"] == 1

    listed = yaml.safe_load(cli.ok("get", "models", "-o", "yaml"))
    assert listed["kind"] == "List"
    assert "get-m" in {item["metadata"]["name"] for item in listed["items"]}

    everywhere = cli.ok("get", "namespaces").split()
    assert {"default", "corral-system"} <= set(everywhere)
    across = cli.ok("get", "models", "-A").splitlines()
    assert across[0].split()[:2] == ["NAMESPACE", "NAME"]


def test_get_output_round_trips_through_apply(cli: Cli, tmp_path: Path) -> None:
    cli.ok("apply", "-f", str(write(tmp_path, {"m.yaml": model("round-trip")})))
    exported = tmp_path / "exported.yaml"
    exported.write_text(cli.ok("get", "model", "round-trip", "-o", "yaml"))
    assert cli.ok("apply", "-f", str(exported)).strip() == "model/round-trip unchanged"


def test_describe_shows_metadata_spec_conditions_and_history(cli: Cli, tmp_path: Path) -> None:
    cli.ok(
        "apply",
        "-f",
        str(write(tmp_path, {"m.yaml": model("described", labels="{team: search}")})),
    )
    text = cli.ok("describe", "model", "described")
    assert "Name:" in text
    assert "described" in text
    assert "team=search" in text
    assert "source: file:///models/described.gguf" in text
    assert "Conditions:" in text
    history = text.split("History (last 5):")[1].splitlines()
    assert history[1].split()[0] == "GENERATION"
    assert history[2].split()[0] == "1"
    assert "admin" in history[2]


def test_unknown_kind_and_missing_object_are_clear_errors(cli: Cli) -> None:
    unknown = cli("get", "gizmos")
    assert unknown.returncode == 1
    assert "unknown kind 'gizmos'; known kinds: " in unknown.stderr
    missing = cli("get", "model", "no-such-model")
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: ")
    assert "no-such-model" in missing.stderr


def test_get_watch_streams_changes(cli: Cli, tmp_path: Path) -> None:
    cli.ok("apply", "-f", str(write(tmp_path, {"m.yaml": model("watched")})))
    watcher = subprocess.Popen(
        [CORRAL, "get", "model", "watched", "-w", "-o", "json"],
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert watcher.stdout is not None
    reader = threading.Thread(target=lambda: [lines.put(line) for line in watcher.stdout or []])
    reader.start()
    try:
        first = json.loads(_next_json_document(lines))
        assert first["metadata"]["name"] == "watched"
        changed = model("watched", labels="{phase: two}")
        cli.ok("apply", "-f", str(write(tmp_path, {"m.yaml": changed})))
        # Controllers may write the object's status first: wait for the change we made.
        event = json.loads(lines.get(timeout=30))
        while event["object"]["metadata"]["labels"] != {"phase": "two"}:
            event = json.loads(lines.get(timeout=30))
        assert event["type"] == "MODIFIED"
    finally:
        watcher.terminate()
        watcher.wait(timeout=30)
        reader.join(timeout=30)
        watcher.stdout.close()


def _next_json_document(lines: queue.Queue[str]) -> str:
    """The pretty-printed object ``get -o json`` prints first (up to its closing brace)."""
    collected = []
    while True:
        line = lines.get(timeout=30)
        collected.append(line)
        if line.rstrip("\n") == "}":
            return "".join(collected)
