"""``corral keys``: create, list and revoke the API keys callers present to the gateway.

The key is generated here, on the operator's machine: the server only ever receives the ApiKey
object (the public prefix, the salt and the salted hash), and the plaintext is printed once.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from corral.cli.remote import Remote, remote_options

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_NAME_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


@click.group()
def keys() -> None:
    """Manage API keys: gateway credentials for a Team.

    A caller sends a key as `Authorization: Bearer crl_...`; the gateway names the caller by
    the key's Team, and Policies decide what that Team may invoke (see `corral policy test`).
    """


@keys.command("create")
@click.option("--team", required=True, help="the Team the key belongs to")
@click.option("-n", "--namespace", default="default", show_default=True, help="namespace")
@click.option("--name", help="the ApiKey object's name [default: TEAM-<random>]")
@click.option("--expires", metavar="DURATION", help="lifetime like 30d, 12h, 2w [default: never]")
@click.option("--description", default="", help="what the key is for, for readers")
@click.option("--create-team", is_flag=True, help="create the Team when it does not exist")
@remote_options
def create_key(
    team: str,
    namespace: str,
    name: str | None,
    expires: str | None,
    description: str,
    create_team: bool,
    remote: Remote,
) -> None:
    """Create an API key for TEAM and print it once.

    Only the key's prefix, salt and salted hash are stored: the key itself cannot be shown
    again. The Team must exist unless --create-team is given.
    """
    import secrets

    from corral.api.errors import NotFound
    from corral.identity import generate_api_key

    expires_at = _expiry(expires) if expires else None
    generated = generate_api_key()
    object_name = name or f"{team}-{''.join(secrets.choice(_NAME_ALPHABET) for _ in range(6))}"
    spec: dict[str, Any] = {
        "team": team,
        "description": description,
        "prefix": generated.prefix,
        "salt": generated.salt,
        "hash": generated.hash,
    }
    if expires_at is not None:
        spec["expiresAt"] = expires_at
    with remote.client() as client:
        try:
            client.get("Team", team, namespace=namespace)
        except NotFound:
            if not create_team:
                raise click.ClickException(
                    f"team {team!r} does not exist in namespace {namespace!r}: create it "
                    "(kind: Team) or pass --create-team"
                ) from None
            client.create(_object("Team", team, namespace, {}))
            click.echo(f"team/{team} created", err=True)
        client.create(_object("ApiKey", object_name, namespace, spec))
    click.echo(f"apikey/{object_name} created for team {team}", err=True)
    click.echo("Store this key now: it is shown only once and cannot be recovered.", err=True)
    click.echo(generated.plaintext)


@keys.command("list")
@click.option("-n", "--namespace", default="default", show_default=True, help="namespace")
@click.option("-A", "--all-namespaces", is_flag=True, help="list every namespace")
@remote_options
def list_keys(namespace: str, all_namespaces: bool, remote: Remote) -> None:
    """List API keys: name, prefix, team, expiry and whether revoked (never the key)."""
    with remote.client() as client:
        items = client.list("ApiKey", namespace=None if all_namespaces else namespace).items
    rows = [("NAMESPACE", "NAME", "PREFIX", "TEAM", "EXPIRES", "REVOKED")]
    for item in items:
        spec = item.get("spec") or {}
        metadata = item.get("metadata") or {}
        rows.append(
            (
                str(metadata.get("namespace", "")),
                str(metadata.get("name", "")),
                f"crl_{spec.get('prefix', '')}_…",
                str(spec.get("team", "")),
                str(spec.get("expiresAt") or "never"),
                "yes" if spec.get("revoked") else "no",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        click.echo(
            "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


@keys.command("revoke")
@click.argument("name")
@click.option("-n", "--namespace", default="default", show_default=True, help="namespace")
@remote_options
def revoke_key(name: str, namespace: str, remote: Remote) -> None:
    """Revoke the API key NAME: the gateway refuses it from its next snapshot (about at once).

    The ApiKey object stays (revoked: true) so the record of the key remains.
    """
    with remote.client() as client:
        client.patch("ApiKey", name, {"spec": {"revoked": True}}, namespace=namespace)
    click.echo(f"apikey/{name} revoked")


def _expiry(duration: str) -> str:
    match = _DURATION.match(duration.strip())
    if match is None or int(match.group(1)) == 0:
        raise click.BadParameter(
            f"{duration!r} is not a duration: a positive number and a unit, e.g. 30d, 12h, 2w",
            param_hint="--expires",
        )
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _object(kind: str, name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
