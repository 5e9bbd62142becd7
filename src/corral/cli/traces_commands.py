"""``corral traces``: recent gateway request traces, listed or shown one at a time.

Every request the gateway answered (or refused) is a trace: endpoint, team, status, tokens,
time to first chunk, duration, cost and the deciding policy. The server keeps them in its
trace store (``GET /corral/v1/traces``, ``GET /corral/v1/traces/{id}``, admin token) and this
command prints them as a table or JSON. ``corral traces`` alone is ``corral traces list``.
Filters are checked here first, so a typo fails without a round trip.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import click

from corral.cli.remote import Remote, remote_options

TRACES_API = "/corral/v1/traces"
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_DURATION = re.compile(r"^\d+[smhdw]$")
_STATUS = re.compile(r"^(error|ok|[1-5]\d\d)$")
_OUTPUT = click.Choice(["table", "json"])


class _ListByDefault(click.Group):
    """A group whose bare invocation (or one starting with an option) runs ``list``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["list", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_ListByDefault)
def traces() -> None:
    """Recent gateway request traces (`corral traces` lists them).

    One trace per request: endpoint, team, status, tokens, time to first chunk (TTFT),
    duration and cost. Prompts and answers appear only when the server captures content
    (CORRAL_TELEMETRY_CAPTURE_CONTENT=true on the server).
    """


@traces.command("list")
@click.option("--endpoint", help="only this Endpoint (its public name: NAME or NAMESPACE/NAME)")
@click.option("--team", help="only this team's requests")
@click.option("--status", help="an HTTP status (429), or error / ok")
@click.option("--since", help="newer than a duration before now (15m, 24h, 7d) or a time")
@click.option(
    "-n", "--limit", default=50, show_default=True, type=click.IntRange(1, 1000), help="at most"
)
@click.option("-o", "--output", type=_OUTPUT, default="table", show_default=True)
@remote_options
def list_traces(
    endpoint: str | None,
    team: str | None,
    status: str | None,
    since: str | None,
    limit: int,
    output: str,
    remote: Remote,
) -> None:
    """List recent traces, newest first."""
    params = {"limit": str(limit)}
    if endpoint:
        params["endpoint"] = endpoint
    if team:
        params["team"] = team
    if status:
        if not _STATUS.match(status):
            raise click.BadParameter(
                f"{status!r} is neither an HTTP status (like 200, 429) nor error or ok",
                param_hint="--status",
            )
        params["status"] = status
    if since:
        _check_since(since)
        params["since"] = since
    answer = _get(remote, TRACES_API, params)
    items: list[dict[str, Any]] = list(answer.get("items") or [])
    if output == "json":
        from corral.cli import render

        click.echo(render.to_json({"items": items}))
        return
    if not items:
        click.echo("no traces", err=True)
        return
    header = (
        "TIME",
        "TRACE ID",
        "ENDPOINT",
        "TEAM",
        "STATUS",
        "IN",
        "OUT",
        "TTFT",
        "DURATION",
        "COST USD",
    )
    rows = [header]
    for item in items:
        rows.append(
            (
                _time(item.get("started_at")),
                str(item.get("trace_id", "")),
                str(item.get("endpoint", "")),
                str(item.get("team", "")),
                _status_text(item),
                _count(item.get("input_tokens")),
                _count(item.get("output_tokens")),
                _seconds(item.get("time_to_first_chunk_s")),
                _seconds(item.get("duration_s")),
                _cost(item.get("cost_usd")),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    for row in rows:
        click.echo("   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


@traces.command("show")
@click.argument("trace_id")
@click.option("-o", "--output", type=_OUTPUT, default="table", show_default=True)
@remote_options
def show_trace(trace_id: str, output: str, remote: Remote) -> None:
    """Show one trace: its facts, span attributes and events."""
    trace_id = trace_id.strip().lower()
    if not _TRACE_ID.match(trace_id):
        raise click.BadParameter(
            f"{trace_id!r} is not a trace id (32 hexadecimal digits, as `corral traces` lists)",
            param_hint="TRACE_ID",
        )
    trace = _get(remote, f"{TRACES_API}/{trace_id}", {})
    if output == "json":
        from corral.cli import render

        click.echo(render.to_json(trace))
        return
    facts = (
        ("trace id", trace.get("trace_id")),
        ("span", trace.get("span_name")),
        ("started", _time(trace.get("started_at"))),
        ("endpoint", trace.get("endpoint")),
        ("team", trace.get("team")),
        ("operation", trace.get("operation")),
        ("provider", trace.get("provider")),
        ("request model", trace.get("request_model")),
        ("response model", trace.get("response_model")),
        ("stream", trace.get("stream")),
        ("status", _status_text(trace)),
        ("policy", trace.get("policy")),
        ("input tokens", _count(trace.get("input_tokens"))),
        ("output tokens", _count(trace.get("output_tokens"))),
        ("time to first chunk", _seconds(trace.get("time_to_first_chunk_s"))),
        ("duration", _seconds(trace.get("duration_s"))),
        ("cost USD", _cost(trace.get("cost_usd"))),
    )
    width = max(len(name) for name, _ in facts)
    for name, value in facts:
        click.echo(f"{name.ljust(width)}  {'-' if value is None else value}")
    attributes = trace.get("attributes") or {}
    if attributes:
        click.echo("attributes:")
        for key in sorted(attributes):
            click.echo(f"  {key} = {attributes[key]}")
    events = trace.get("events") or []
    if events:
        click.echo("events:")
        for event in events:
            click.echo(f"  {event.get('time', '')}  {event.get('name', '')}")


def _check_since(text: str) -> None:
    value = text.strip()
    if _DURATION.match(value):
        return
    try:
        moment = datetime.fromisoformat(value) if "T" in value.upper() else None
    except ValueError:
        moment = None
    if moment is None:
        raise click.BadParameter(
            f"{text!r} is neither a duration like 30m, 24h, 7d, 2w nor an RFC 3339 time like "
            "2026-01-31T12:00:00Z",
            param_hint="--since",
        )
    if moment.tzinfo is None:
        raise click.BadParameter(
            f"{text!r} has no time zone: add Z or +01:00", param_hint="--since"
        )


def _time(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    moment = datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds")
    return moment.replace("+00:00", "Z")


def _status_text(item: dict[str, Any]) -> str:
    status = str(item.get("status", "-"))
    error = item.get("error")
    return f"{status} {error}" if error else status


def _count(value: Any) -> str:
    return "-" if value is None else str(value)


def _seconds(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{value * 1000:.1f}ms" if value < 1 else f"{value:.2f}s"


def _cost(value: Any) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:.6f}"


def _get(remote: Remote, path: str, params: dict[str, str]) -> dict[str, Any]:
    import httpx
    import orjson

    from corral.api.errors import error_from_status

    connection = remote.connection()
    headers = {"Authorization": f"Bearer {connection.token}"} if connection.token else {}
    url = connection.url.rstrip("/") + path
    try:
        response = httpx.get(url, params=params, headers=headers, timeout=30)
    except httpx.HTTPError as error:
        raise click.ClickException(f"cannot reach corral at {connection.url}: {error}") from None
    try:
        answer = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        answer = None
    if response.status_code >= 400:
        if isinstance(answer, dict) and answer.get("kind") == "Status":
            raise click.ClickException(str(error_from_status(answer, response.status_code)))
        if response.status_code == 404:
            raise click.ClickException(
                f"GET {path}: not found: is {connection.url} a corral API server (role "
                "apiserver) of a version with telemetry?"
            )
        raise click.ClickException(
            f"GET {path}: HTTP {response.status_code}: {response.text[:200]}"
        )
    if not isinstance(answer, dict):
        raise click.ClickException(f"GET {path}: expected a JSON object from the server")
    return answer
