"""Replica log files: ``STATE_DIR/logs/<replica>.log`` plus one rotated ``.log.1``.

Children write to the file directly (opened with O_APPEND), so rotation copies the file
aside and truncates it in place: the child's next write lands at the new end. A few lines
written between the copy and the truncate can be lost, the usual copytruncate trade-off,
accepted here because a child never has to be told to reopen its log.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

_TAIL_BLOCK = 8192


def append_note(path: Path, text: str) -> None:
    """Add a supervisor line (start, exit, stop) so the log tells the whole story."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    with path.open("a", encoding="utf-8") as log:
        log.write(f"[corral {stamp}] {text}\n")


def rotate_if_large(path: Path, max_bytes: int) -> None:
    try:
        if path.stat().st_size <= max_bytes:
            return
    except FileNotFoundError:
        return
    shutil.copyfile(path, path.with_name(path.name + ".1"))
    os.truncate(path, 0)


def log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def tail(path: Path, lines: int, *, since: int = 0) -> list[str]:
    """The last ``lines`` lines of ``path`` written at or after byte offset ``since``.

    An offset beyond the end means the file was rotated since; then all of it counts.
    """
    if lines <= 0:
        return []
    try:
        with path.open("rb") as log:
            end = log.seek(0, os.SEEK_END)
            start = since if since <= end else 0
            position, chunk = end, b""
            while position > start and chunk.count(b"\n") <= lines:
                step = min(_TAIL_BLOCK, position - start)
                position -= step
                log.seek(position)
                chunk = log.read(step) + chunk
    except FileNotFoundError:
        return []
    text = chunk.decode("utf-8", errors="replace")
    return text.splitlines()[-lines:]
