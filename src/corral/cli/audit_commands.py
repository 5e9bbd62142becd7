"""``corral audit``: verify and read the tamper-evident audit log.

``verify`` checks the log on this machine, not on the server: it fetches every record and
checkpoint over the API (``/corral/v1/audit/...``) and runs ``corral.audit.verify`` locally,
against the public keys the server publishes or, better, a key file the auditor already holds
(``--public-key``), so a server that rewrote its history and re-signed it with a new key cannot
vouch for itself. ``verify --db`` reads a SQLite audit file (``STATE_DIR/audit.db``) directly,
read-only, with no server at all. ``tail`` prints the latest records.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from corral.cli.remote import Remote, remote_options

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from corral.audit import AuditRecord, AuditStorage, VerifyReport
    from corral.client import CorralClient

AUDIT_API = "/corral/v1/audit"
PAGE = 2000


@click.group()
def audit() -> None:
    """Verify and read the tamper-evident audit log.

    Every gateway decision (allow or deny, with the deciding policies and the cost) and every
    control-plane write is a hash-chained record; signed Merkle checkpoints make any edit,
    deletion or reordering detectable by `corral audit verify`.
    """


@audit.command("verify")
@click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="trust only the PEM public keys in FILE (repeatable; `corral audit keys` prints them) "
    "[default: the keys the server publishes]",
)
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    help="verify a SQLite audit file (STATE_DIR/audit.db) directly, without a server",
)
@remote_options
def verify_command(public_keys: tuple[Path, ...], db: Path | None, remote: Remote) -> None:
    """Check every record and checkpoint; exit 1 naming the first bad seq.

    Each record's hash is recomputed from its fields and its link to the previous one checked
    (an edit, a deletion or a reordering shows at its seq); each checkpoint's signature and
    Merkle root are checked, and a checkpoint beyond the last record means records were cut.
    """
    from corral.audit.wire import SqliteAuditFile

    trusted = {kid: key for path in public_keys for kid, key in _read_public_keys(path)}
    if db is not None:
        if not trusted:
            raise click.UsageError(
                "--db needs --public-key: the file alone cannot vouch for itself"
            )
        try:
            log = SqliteAuditFile(db)
        except ValueError as error:
            raise click.ClickException(str(error)) from None
        report = _verify(log, trusted)
    else:
        with remote.client() as client:
            if not trusted:
                trusted = _published_keys(client)
            report = _verify(_remote_log(client), trusted)
    click.echo(f"records checked: {report.records}")
    click.echo(
        f"checkpoints verified: {report.checkpoints} "
        f"({report.verified_size} records under a signed checkpoint)"
    )
    if report.ok:
        click.echo("ok: the audit log is intact")
        return
    first = report.first_bad_seq
    where = f"first bad seq {first}" if first is not None else "checkpoints"
    click.echo(f"FAILED at {where}:", err=True)
    for problem in report.problems:
        click.echo(f"  {problem.kind}: {problem.message}", err=True)
    raise SystemExit(1)


@audit.command("tail")
@click.option("-n", "--lines", "count", default=20, show_default=True, type=click.IntRange(1, 5000))
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
@remote_options
def tail_command(count: int, output: str, remote: Remote) -> None:
    """Print the latest N records, oldest first."""
    from corral.cli import render

    with remote.client() as client:
        body = _get(client, "/records", {"tail": str(count)})
    items = body.get("items") or []
    if output == "json":
        click.echo(render.to_json({"items": items}))
        return
    rows = [("SEQ", "TIME", "ACTOR", "ACTION", "RESOURCE", "DECISION", "POLICIES", "COST")]
    for item in items:
        rows.append(
            (
                str(item.get("seq")),
                str(item.get("time", ""))[:23],
                str(item.get("actor", "")),
                str(item.get("action", "")),
                str(item.get("resource", "")),
                str(item.get("decision", "")),
                ",".join(item.get("policies") or []) or "-",
                f"{float(item.get('cost') or 0):.6f}",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        click.echo(
            "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


@audit.command("keys")
@remote_options
def keys_command(remote: Remote) -> None:
    """Print the public keys that sign checkpoints (PEM), to keep for `verify --public-key`."""
    with remote.client() as client:
        entries = _get(client, "/keys").get("keys") or []
    for entry in entries:
        click.echo(f"# kid {entry.get('kid')} ({entry.get('algorithm')})")
        click.echo(str(entry.get("publicKey", "")).strip())


def _verify(log: AuditStorage, trusted: dict[str, Ed25519PublicKey]) -> VerifyReport:
    from corral.audit import verify

    try:
        return asyncio.run(verify(log, trusted))
    except ValueError as error:
        raise click.ClickException(f"cannot read the audit log: {error}") from None


def _read_public_keys(path: Path) -> list[tuple[str, Ed25519PublicKey]]:
    """Every PEM public key in ``path`` (what `corral audit keys` prints: one or several)."""
    from corral.audit import load_public_key

    end = "-----END PUBLIC KEY-----"
    text = path.read_text(errors="replace")
    blocks = [block + end for block in text.split(end) if "-----BEGIN" in block]
    try:
        keys = [load_public_key(block[block.index("-----BEGIN") :].encode()) for block in blocks]
        if not keys:
            raise ValueError("audit public key: not a PEM public key (no PEM block found)")
    except ValueError as error:
        raise click.ClickException(f"{path}: {error}") from None
    return keys


def _published_keys(client: CorralClient) -> dict[str, Ed25519PublicKey]:
    from corral.audit import load_public_key

    keys: dict[str, Ed25519PublicKey] = {}
    for entry in _get(client, "/keys").get("keys") or []:
        try:
            kid, key = load_public_key(str(entry.get("publicKey", "")).encode())
        except ValueError as error:
            raise click.ClickException(f"the server published a bad audit key: {error}") from None
        keys[kid] = key
    return keys


def _remote_log(client: CorralClient) -> AuditStorage:
    from corral.audit import UnreadableRecord
    from corral.audit.wire import PagedLog, checkpoint_from_json, record_from_json

    checkpoints = [
        checkpoint_from_json(item, f"checkpoint {index}")
        for index, item in enumerate(_get(client, "/checkpoints").get("items") or [])
    ]

    def page(start: int) -> list[AuditRecord]:
        body = _get(client, "/records", {"from": str(start), "limit": str(PAGE)})
        items = body.get("items") or []
        if not items and isinstance(body.get("unreadable"), dict):
            bad = body["unreadable"]
            raise UnreadableRecord(int(bad.get("seq", start)), str(bad.get("reason", "")))
        return [record_from_json(item, f"record from seq {start}") for item in items]

    return PagedLog(page, checkpoints)


def _get(client: CorralClient, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
    return client._json("GET", AUDIT_API + path, params=params)
