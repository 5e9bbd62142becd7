"""Which child processes run a given script: how tests count supervised MCP servers."""

from __future__ import annotations

from pathlib import Path


def children_running(parent: int, script: Path) -> list[int]:
    """Pids of ``parent``'s child processes running ``script``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        if ppid == parent and str(script).encode() in cmdline:
            found.append(int(entry.name))
    return found
