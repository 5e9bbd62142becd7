"""``corral token``: workload tokens signed by this corral, and the keys that sign them.

Both commands go through the server (``POST /corral/v1/tokens``,
``POST /corral/v1/signing-keys/rotate``, admin token): the private keys never leave it.
``corral token issue`` prints the token alone on stdout so scripts can capture it.
"""

from __future__ import annotations

import re
from typing import Any

import click

from corral.cli.remote import Remote, remote_options

_DURATION = re.compile(r"^(\d+)([smh]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600}


@click.group()
def token() -> None:
    """Workload tokens signed by this corral.

    A workload sends its token as `Authorization: Bearer <token>` (the OpenAI clients' api_key);
    the gateway verifies it against the keys published at /.well-known/jwks.json and Policies
    see the caller as Agent::"spiffe://corral.local/ns/NS/agent/NAME".
    """


@token.command("issue")
@click.option("--subject", required=True, metavar="NS/NAME", help="the workload: namespace/name")
@click.option(
    "--ttl", default="15m", show_default=True, metavar="DURATION", help="lifetime, at most 1h"
)
@click.option("--audience", help="who the token is for [default: the gateway, corral-gateway]")
@click.option("--team", help="the Team (in the subject's namespace) the workload acts for")
@click.option("--single-use", is_flag=True, help="refused the second time it is presented")
@remote_options
def issue(
    subject: str,
    ttl: str,
    audience: str | None,
    team: str | None,
    single_use: bool,
    remote: Remote,
) -> None:
    """Mint a token for the workload NS/NAME and print only the token."""
    request: dict[str, Any] = {"subject": subject, "ttlSeconds": _seconds(ttl)}
    if audience is not None:
        request["audience"] = audience
    if team is not None:
        request["team"] = team
    if single_use:
        request["singleUse"] = True
    answer = _post(remote, "/corral/v1/tokens", request)
    click.echo(f"token for {answer.get('subject')} expires at {answer.get('expiresAt')}", err=True)
    click.echo(answer["token"])


@token.command("rotate-keys")
@remote_options
def rotate_keys(remote: Remote) -> None:
    """Make a fresh signing key current; tokens signed by the old one stay valid until expiry."""
    answer = _post(remote, "/corral/v1/signing-keys/rotate", {})
    published = ", ".join(str(kid) for kid in answer.get("published", []))
    click.echo(f"signing key {answer.get('kid')} ({answer.get('alg')}) is now current")
    click.echo(f"published keys: {published}")


def _seconds(text: str) -> int:
    match = _DURATION.match(text.strip())
    if match is None:
        raise click.BadParameter(
            f"{text!r} is not a duration like 90s, 15m or 1h", param_hint="--ttl"
        )
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _post(remote: Remote, path: str, body: dict[str, Any]) -> dict[str, Any]:
    import httpx
    import orjson

    from corral.api.errors import error_from_status

    connection = remote.connection()
    headers = {"Authorization": f"Bearer {connection.token}"} if connection.token else {}
    url = connection.url.rstrip("/") + path
    try:
        response = httpx.post(url, content=orjson.dumps(body), headers=headers, timeout=30)
    except httpx.HTTPError as error:
        raise click.ClickException(f"cannot reach corral at {connection.url}: {error}") from None
    try:
        answer = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        answer = None
    if response.status_code >= 400:
        if isinstance(answer, dict) and answer.get("kind") == "Status":
            raise click.ClickException(str(error_from_status(answer, response.status_code)))
        raise click.ClickException(
            f"POST {path}: HTTP {response.status_code}: {response.text[:200]}"
        )
    if not isinstance(answer, dict):
        raise click.ClickException(f"POST {path}: expected a JSON object from the server")
    return answer
