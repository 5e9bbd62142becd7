"""``corral usage``: tokens and cost by team, key, model or endpoint, from the usage records.

The server sums its usage records (``GET /corral/v1/usage``, admin token) and this command
prints the rows as a table or JSON. ``--since``/``--until`` take durations before now (``24h``,
``7d``) or RFC 3339 times; they are checked here first so a typo fails without a round trip.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import click

from corral.cli.remote import Remote, remote_options

_DURATION = re.compile(r"^\d+[smhdw]$")


def _check_bound(text: str | None, option: str) -> None:
    if text is None:
        return
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
            param_hint=option,
        )
    if moment.tzinfo is None:
        raise click.BadParameter(f"{text!r} has no time zone: add Z or +01:00", param_hint=option)


@click.command()
@click.option(
    "--by",
    type=click.Choice(["team", "key", "model", "endpoint"]),
    default="team",
    show_default=True,
    help="what to sum by (key: the API key, or the caller when no key was used)",
)
@click.option(
    "--since", default="24h", show_default=True, help="start: a duration before now or a time"
)
@click.option("--until", default=None, help="end: a duration before now or a time [now]")
@click.option(
    "-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@remote_options
def usage(by: str, since: str, until: str | None, output: str, remote: Remote) -> None:
    """Tokens and cost by team, key, model or endpoint.

    Every request a gateway answered counts: input and output tokens (as the upstream
    reported them, else counted), and the cost when the model has a price.
    """
    _check_bound(since, "--since")
    _check_bound(until, "--until")
    params = {"by": by, "since": since}
    if until is not None:
        params["until"] = until
    answer = _get(remote, "/corral/v1/usage", params)
    if output == "json":
        import orjson

        click.echo(orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode())
        return
    items: list[dict[str, Any]] = list(answer.get("items") or [])
    header = (by.upper(), "REQUESTS", "INPUT TOKENS", "OUTPUT TOKENS", "COST USD")
    rows = [header]
    for item in items:
        cost = item.get("cost_usd")
        rows.append(
            (
                str(item.get("key", "")),
                str(item.get("requests", 0)),
                str(item.get("input_tokens", 0)),
                str(item.get("output_tokens", 0)),
                "-" if cost is None else f"{cost:.6f}",
            )
        )
    click.echo(f"usage from {answer.get('since')} to {answer.get('until')}", err=True)
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        click.echo("   ".join(cells).rstrip())


def _get(remote: Remote, path: str, params: dict[str, str]) -> dict[str, Any]:
    import httpx
    import orjson

    from corral.api.errors import ApiError, error_from_status
    from corral.client.errors import ServerUnreachable

    connection = remote.connection()
    headers = {"Authorization": f"Bearer {connection.token}"} if connection.token else {}
    url = connection.url.rstrip("/") + path
    try:
        response = httpx.get(url, params=params, headers=headers, timeout=30)
    except httpx.HTTPError as error:
        raise ServerUnreachable(
            f"cannot reach corral at {connection.url}: is `corral up` running? ({error})"
        ) from None
    try:
        answer = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        answer = None
    if response.status_code >= 400:
        if isinstance(answer, dict) and answer.get("kind") == "Status":
            raise error_from_status(answer, response.status_code)
        raise ApiError(f"GET {path}: HTTP {response.status_code}: {response.text[:200]}")
    if not isinstance(answer, dict):
        raise ApiError(f"GET {path}: expected a JSON object from the server")
    return answer
