"""After ``corral up -f STACK`` applied the stack: follow it, then say what works and what failed.

:func:`follow_stack` shows the wait (:mod:`corral.cli.stack_progress`) while
:mod:`corral.cli.stack_wait` polls, then prints one of two endings, and returns either way
(the server keeps serving):

- ready: how to call each ready Endpoint — ``corral chat``, a ``curl`` for
  ``/v1/chat/completions`` and an ``openai`` Python snippet, copy-paste ready;
- failed: each failed object with its condition messages, and for each replica that is not
  serving its state, exit code, restarts and last log lines.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text

from corral.cli import render
from corral.cli.stack_progress import progress_display
from corral.cli.stack_wait import ENDPOINT, Phase, Progress, Replica, Stack, StackState, Target
from corral.cli.stack_wait import wait_for_stack as _wait_for_stack

if TYPE_CHECKING:
    from corral.client import CorralClient

DEFAULT_STATE_DIR = Path(".corral")
LOG_LINES_SHOWN = 10
_GREETING = '[{"role": "user", "content": "Hello!"}]'


def follow_stack(
    client: CorralClient,
    stack: Stack,
    *,
    url: str,
    base_url: str,
    state_dir: Path,
    timeout_s: float,
) -> StackState | None:
    """Wait for ``stack`` with a progress display, then print the outcome; None if interrupted."""
    if stack.empty:
        return None
    display = progress_display(timeout_s)
    try:
        state = _wait_for_stack(client, stack, timeout_s=timeout_s, on_update=display.update)
    finally:
        display.close()
    if state is not None:
        lines = outcome_lines(state, client, url=url, base_url=base_url, state_dir=state_dir)
        render.emit(*lines)
    return state


def outcome_lines(
    state: StackState, client: CorralClient | None, *, url: str, base_url: str, state_dir: Path
) -> list[Text]:
    """The ending: failures with their reasons, then how to call what is ready.

    ``url`` is the server's; ``base_url`` the gateway's OpenAI base URL (``URL/v1``).
    """
    lines: list[Text] = [Text("")]
    failed = [item for item in state.items if item.phase is Phase.FAILED]
    for item in failed:
        lines.extend(_failure_lines(item, state, client))
    if not failed:
        lines.append(Text(f"✓ the stack is ready after {state.elapsed_s:.1f} s", "bold green"))
    ready = state.of_kind(ENDPOINT, Phase.READY)
    for item in ready:
        serving = f"{item.ready_replicas}/{item.desired_replicas} replica(s) serving"
        lines.append(Text(f"✓ {item.target.label} is ready: {serving}", "green"))
    if ready:
        lines.extend(Text(line) for line in how_to_call(ready[0].target, base_url, state_dir))
    if failed:
        lines.append(Text(""))
        lines.append(
            Text(
                f"corral keeps serving at {url}, without what failed above. Fix the manifests "
                "and `corral apply -f` them; `corral describe` and `corral logs` show more.",
                "bold",
            )
        )
    return lines


def how_to_call(endpoint: Target, base_url: str, state_dir: Path) -> list[str]:
    """``corral chat``, ``curl`` and ``openai`` Python snippets for ``endpoint``, ready to paste."""
    model = endpoint.public_name
    token_file = state_dir / "admin.token"
    chat = "corral chat" + ("" if model == "chat" else f" {shlex.quote(model)}")
    if state_dir.resolve() != DEFAULT_STATE_DIR.resolve():
        chat += f" --state-dir {shlex.quote(str(state_dir))}"
    body = f'{{"model": "{model}", "messages": {_GREETING}}}'
    return [
        "",
        "Chat with it here:",
        f"  {chat}",
        "",
        "Call it with curl (an OpenAI-compatible API):",
        f"  curl -s {base_url}/chat/completions \\",
        f'    -H "Authorization: Bearer $(cat {shlex.quote(str(token_file))})" \\',
        '    -H "Content-Type: application/json" \\',
        f"    -d {shlex.quote(body)}",
        "",
        "Or from Python (pip install openai):",
        "  from pathlib import Path",
        "  from openai import OpenAI",
        "",
        f"  client = OpenAI(base_url={json.dumps(base_url)},",
        f"                  api_key=Path({json.dumps(str(token_file))}).read_text().strip())",
        f"  reply = client.chat.completions.create(model={json.dumps(model)},",
        f"                                         messages={_GREETING})",
        "  print(reply.choices[0].message.content)",
    ]


def _failure_lines(item: Progress, state: StackState, client: CorralClient | None) -> list[Text]:
    lines = [Text(f"✗ {item.target.label} failed: {item.summary}", "bold red")]
    lines.extend(Text(f"    {detail}") for detail in item.details)
    unready = [replica for replica in item.replicas if not replica.ready]
    fetched = _recent_logs(client, item.target) if unready else {}
    for replica in unready:
        lines.append(Text(f"    replica {_replica_line(replica)}", "red"))
        log_lines = list(replica.log_lines)
        crash = state.last_failures.get(replica.name)
        if not log_lines and crash is not None:
            lines.append(Text(f"      last failure: {_replica_line(crash)}", "red"))
            log_lines = list(crash.log_lines)
        log_lines = log_lines or fetched.get(replica.name, [])
        lines.extend(Text(f"      | {line}", "dim") for line in log_lines[-LOG_LINES_SHOWN:])
    return lines


def _replica_line(replica: Replica) -> str:
    facts = []
    if replica.exit_code is not None:
        facts.append(f"exit code {replica.exit_code}")
    if replica.restarts:
        facts.append(f"{replica.restarts} restart(s)")
    line = f"{replica.name}: {replica.state}"
    if facts:
        line += f" ({', '.join(facts)})"
    return f"{line}: {replica.message}" if replica.message else line


def _recent_logs(client: CorralClient | None, target: Target) -> dict[str, list[str]]:
    """Each replica's last log lines, best effort: the report must not fail for want of them."""
    from corral.api.errors import ApiError

    if client is None or target.kind != ENDPOINT:
        return {}
    try:
        entries = client.endpoint_logs(
            target.name, namespace=target.namespace, tail=LOG_LINES_SHOWN
        )
    except ApiError:
        return {}
    return {
        str(entry.get("name")): [str(line) for line in entry.get("lines") or []]
        for entry in entries
    }
