"""Showing ``corral up``'s wait: a live table on a terminal, one line per change otherwise.

On a terminal a rich ``Live`` view redraws a table: each Model with a progress bar while its
file is hashed (``status.verification``), each Endpoint with its replicas' states. Piped output
(logs, CI, tests) gets a plain line whenever an object's one-line summary changes instead, so
it reads as a history rather than a stream of redraws.
"""

from __future__ import annotations

import sys
from typing import Protocol

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from corral.cli.stack_wait import ENDPOINT, Phase, Progress, StackState, Target

_STYLES = {Phase.WAITING: "yellow", Phase.READY: "green", Phase.FAILED: "bold red"}
_MIB = 1024 * 1024
_BAR_WIDTH = 30
_LINE_PERCENT_STEP = 10


class ProgressDisplay(Protocol):
    def update(self, state: StackState) -> None: ...

    def close(self) -> None: ...


def progress_display(timeout_s: float) -> ProgressDisplay:
    console = Console(highlight=False)
    if console.is_terminal:
        return LiveTable(console, timeout_s)
    return ChangeLines(timeout_s)


class LiveTable:
    def __init__(self, console: Console, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._live = Live(
            Text("waiting for the stack…"), console=console, refresh_per_second=8, transient=True
        )
        self._live.start()
        self._last: StackState | None = None

    def update(self, state: StackState) -> None:
        self._last = state
        self._live.update(render(state, self._timeout_s))

    def close(self) -> None:
        self._live.stop()
        if self._last is not None:
            # The live view is transient; leave its last picture behind, without the timer.
            self._live.console.print(render(self._last, None))


class ChangeLines:
    def __init__(self, timeout_s: float) -> None:
        self._seen: dict[Target, str] = {}
        sys.stdout.write(f"waiting up to {timeout_s:.0f} s for the stack to be ready\n")
        sys.stdout.flush()

    def update(self, state: StackState) -> None:
        lines = []
        for item in state.items:
            line = f"  {item.target.label}: {line_summary(item)}"
            if self._seen.get(item.target) != line:
                self._seen[item.target] = line
                lines.append(line)
        if lines:
            sys.stdout.write("\n".join(lines) + "\n")
            sys.stdout.flush()

    def close(self) -> None:
        return None


def render(state: StackState, timeout_s: float | None) -> RenderableType:
    grid = Table(box=None, show_header=False, pad_edge=False)
    grid.add_column("object", no_wrap=True)
    grid.add_column("state")
    grid.add_column("detail", overflow="fold")
    for item in state.items:
        grid.add_row(item.target.label, Text(item.summary, _STYLES[item.phase]), _detail(item))
    if timeout_s is None:
        return grid
    header = Text(f"waiting for the stack: {state.elapsed_s:.0f} s of {timeout_s:.0f} s", "dim")
    return Group(header, grid)


def line_summary(item: Progress) -> str:
    """The plain-text line for ``item``; verification moves in 10 % steps to keep lines few."""
    text = item.summary
    if item.verification is not None:
        done, total = item.verification
        percent = done * 100 // total // _LINE_PERCENT_STEP * _LINE_PERCENT_STEP
        text += f" {percent}% of {total / _MIB:.0f} MiB"
    if item.target.kind == ENDPOINT and item.replicas:
        text += " [" + ", ".join(f"{r.name} {r.state}" for r in item.replicas) + "]"
    return text


def _detail(item: Progress) -> RenderableType:
    if item.verification is not None:
        done, total = item.verification
        bar = ProgressBar(total=total, completed=done, width=_BAR_WIDTH)
        label = Text(f" {done / _MIB:.0f}/{total / _MIB:.0f} MiB")
        row = Table.grid()
        row.add_row(bar, label)
        return row
    if item.target.kind == ENDPOINT and item.replicas:
        text = Text()
        for index, replica in enumerate(item.replicas):
            if index:
                text.append(", ")
            style = "green" if replica.ready else ("red" if replica.restarts else "yellow")
            text.append(f"{replica.name} ")
            text.append(replica.state, style)
        return text
    return Text("")
