"""``corral agent run`` and ``corral sessions ls|show|approve|kill``: agents' sessions from a
terminal, over the sessions API (``corral.client.sessions``).

``agent run`` opens a session, sends the task and prints the turn as it happens: the model's
text as it streams, each tool call and its result, and the final answer. A tool call that needs
approval is asked at the prompt (``--approve``/``--deny`` answer it for scripts); without a
terminal and without those flags the session is left waiting and the command says how to
decide it later (exit 3).

Exit codes: 0 the turn ended with an answer, 1 an error or a session that failed, expired or
was terminated, 3 waiting for an approval.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from corral.cli.remote import Remote, remote_options

if TYPE_CHECKING:
    from corral.client.sessions import SessionEvent, SessionsClient

EXIT_WAITING = 3
_ENDED_BADLY = ("failed", "expired", "terminated")


def _sessions(remote: Remote, namespace: str, agent: str) -> SessionsClient:
    from corral.client.sessions import SessionsClient

    connection = remote.connection()
    return SessionsClient(connection.url, namespace, agent, connection.token)


def _split(name: str, namespace: str) -> tuple[str, str]:
    """``ns/name`` or ``name`` (in ``namespace``)."""
    if "/" in name:
        found_namespace, _, agent = name.partition("/")
        if not found_namespace or not agent or "/" in agent:
            raise click.BadParameter(f"{name!r}: write NAME or NAMESPACE/NAME", param_hint="AGENT")
        return found_namespace, agent
    return namespace, name


_namespace_option = click.option(
    "-n", "--namespace", default="default", show_default=True, help="the agent's namespace"
)


@click.group()
def agent() -> None:
    """Run agents: `corral agent run NAME "task"`."""


@agent.command("run")
@click.argument("name", metavar="AGENT")
@click.argument("task")
@_namespace_option
@click.option("--approve", "answer", flag_value="approve", help="approve every tool call asked")
@click.option("--deny", "answer", flag_value="deny", help="deny every tool call asked")
@remote_options
def run(name: str, task: str, namespace: str, answer: str | None, remote: Remote) -> None:
    """Start a session of AGENT on TASK and follow it to its answer."""
    if not task.strip():
        raise click.BadParameter("the task is empty", param_hint="TASK")
    namespace, name = _split(name, namespace)
    with _sessions(remote, namespace, name) as sessions:
        session_id = sessions.create()
        click.echo(f"session {session_id}", err=True)
        _follow(sessions, session_id, sessions.send(session_id, task), answer)


@click.group()
def sessions() -> None:
    """List, inspect, approve and end agents' sessions."""


@sessions.command("ls")
@click.argument("name", metavar="AGENT")
@_namespace_option
@click.option("--state", help="only sessions in this state (e.g. waiting_approval)")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--after", metavar="CURSOR", help="the next page (printed after a full page)")
@click.option(
    "-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@remote_options
def ls(
    name: str,
    namespace: str,
    state: str | None,
    limit: int,
    after: str | None,
    output: str,
    remote: Remote,
) -> None:
    """AGENT's sessions, newest first (yours; all of them with the admin token)."""
    namespace, name = _split(name, namespace)
    with _sessions(remote, namespace, name) as client:
        items, cursor = client.list(limit=limit, after=after, state=state)
    if output == "json":
        import orjson

        body = {"items": items, "next": cursor}
        click.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
        return
    from datetime import UTC, datetime

    from corral.cli.render import age

    rows: list[tuple[str, ...]] = [("ID", "STATE", "STEPS", "TOKENS", "AGE")]
    for item in items:
        summary = item.get("summary") or {}
        rows.append(
            (
                str(item["id"]),
                str(item["state"]),
                str(summary.get("steps", 0)),
                str(summary.get("tokens", 0)),
                age(datetime.fromtimestamp(float(item["created"]), UTC).isoformat()),
            )
        )
    _table(rows)
    if cursor:
        click.echo(f"more: corral sessions ls {namespace}/{name} --after {cursor}", err=True)


@sessions.command("show")
@click.argument("name", metavar="AGENT")
@click.argument("session_id", metavar="SESSION")
@_namespace_option
@click.option(
    "-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@remote_options
def show(name: str, session_id: str, namespace: str, output: str, remote: Remote) -> None:
    """A session's state and its journal, step by step."""
    namespace, name = _split(name, namespace)
    with _sessions(remote, namespace, name) as client:
        view = client.show(session_id)
    if output == "json":
        import orjson

        click.echo(orjson.dumps(view, option=orjson.OPT_INDENT_2).decode())
        return
    session = view["session"]
    click.echo(f"session {session['id']}  {session['state']}  {session['summary']}")
    for event in view["events"]:
        details = {k: v for k, v in event.items() if k not in ("seq", "created", "kind")}
        click.echo(f"{event['seq']:>4}  {event['kind']:<22} {_short(details)}")


@sessions.command("approve")
@click.argument("name", metavar="AGENT")
@click.argument("session_id", metavar="SESSION")
@click.argument("step", type=click.IntRange(min=1))
@_namespace_option
@click.option("--deny", is_flag=True, help="deny the call instead (the model is told why)")
@click.option("--reason", default="", help="why (journaled; a denial's reason reaches the model)")
@remote_options
def approve(
    name: str,
    session_id: str,
    step: int,
    namespace: str,
    deny: bool,
    reason: str,
    remote: Remote,
) -> None:
    """Approve (or --deny) the tool call of STEP and follow the resumed turn."""
    namespace, name = _split(name, namespace)
    with _sessions(remote, namespace, name) as client:
        events = client.decide(session_id, step, not deny, reason)
        _follow(client, session_id, events, None)


@sessions.command("kill")
@click.argument("name", metavar="AGENT")
@click.argument("session_id", metavar="SESSION")
@_namespace_option
@remote_options
def kill(name: str, session_id: str, namespace: str, remote: Remote) -> None:
    """End a session now (state terminated); a step in flight is cut."""
    namespace, name = _split(name, namespace)
    with _sessions(remote, namespace, name) as client:
        state = client.terminate(session_id)
    click.echo(f"session {session_id} {state}")


def _follow(
    client: SessionsClient,
    session_id: str,
    events: Iterator[SessionEvent],
    answer: str | None,
) -> None:
    """Print a turn; ask (or answer) approvals; exit with the turn's outcome."""
    while True:
        state, pending = _print_turn(events)
        if state == "waiting_approval" and pending is not None:
            decision = answer or _ask(pending)
            if decision is None:
                step = pending.get("step")
                click.echo(
                    f"session {session_id} waits for approval of step {step}: "
                    f"corral sessions approve AGENT {session_id} {step} [--deny]",
                    err=True,
                )
                sys.exit(EXIT_WAITING)
            step = int(pending["step"])
            events = client.decide(session_id, step, decision == "approve", "from the terminal")
            continue
        if state in _ENDED_BADLY:
            sys.exit(1)
        return


def _print_turn(events: Iterator[SessionEvent]) -> tuple[str, dict[str, Any] | None]:
    state, pending, streaming = "active", None, False
    streamed: list[str] = []  # the model's text since the last step started
    for event in events:
        data = event.data
        if event.type == "model_delta":
            piece = str(data.get("content") or "")
            click.echo(piece, nl=False)
            streamed.append(piece)
            streaming = True
            continue
        if streaming:
            click.echo()
            streaming = False
        if event.type == "step_started":
            streamed = []
        if event.type == "tool_call":
            click.echo(f"→ {data.get('function')} {_short(data.get('arguments'))}")
        elif event.type == "tool_result":
            click.echo(f"← {_short(_result_text(data))}")
        elif event.type == "approval_needed":
            pending = data
        elif event.type == "final":
            text = str(data.get("text") or "")
            if text.strip() != "".join(streamed).strip():  # not already shown as it streamed
                click.echo(text)
        elif event.type == "error":
            click.echo(f"error: {data.get('message') or _short(data)}", err=True)
        elif event.type == "state":
            state = str(data.get("state"))
            if state != "active" and state != "waiting_input":
                reason = data.get("reason")
                click.echo(f"session {state}" + (f": {reason}" if reason else ""), err=True)
    return state, pending


def _ask(pending: dict[str, Any]) -> str | None:
    if not sys.stdin.isatty():
        return None
    what = pending.get("function") or "a tool"
    why = f" [{pending['reason']}]" if pending.get("reason") else ""
    prompt = f"approve {what} {_short(pending.get('arguments'))} (step {pending.get('step')}){why}?"
    return "approve" if click.confirm(prompt, default=False) else "deny"


def _result_text(result: dict[str, Any]) -> str:
    """A tool result's text (``content``), marked when the tool reported an error."""
    content = result.get("content")
    text = content if isinstance(content, str) else _short(result)
    return f"error: {text}" if result.get("error") else text


def _short(value: Any, limit: int = 160) -> str:
    import orjson

    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
