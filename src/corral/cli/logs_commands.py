"""``corral logs endpoint/NAME``: each replica's recent log lines, under a header per replica.

The server reads the replicas' log files (``STATE_DIR/logs/``); this command only asks for them
and prints them in ``tail``'s multi-file layout, so the output greps and pipes like a log.
Only Endpoints have logs for now; any other kind is a usage error that says so.
"""

from __future__ import annotations

import click

from corral.cli.remote import Remote, remote_options

KINDS_WITH_LOGS = ("endpoint",)
DEFAULT_TAIL = 100


@click.command()
@click.argument("target", metavar="endpoint/NAME")
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option(
    "--tail",
    type=click.IntRange(min=0),
    default=DEFAULT_TAIL,
    show_default=True,
    metavar="N",
    help="the last N lines of each replica",
)
@click.option("--replica", metavar="NAME", help="only this replica (see `corral describe`)")
@remote_options
def logs(target: str, namespace: str, tail: int, replica: str | None, remote: Remote) -> None:
    """Print the recent log lines of each replica of an Endpoint.

    Each replica's lines follow a `==> REPLICA (model MODEL) <==` header. The model servers'
    own output (llama.cpp, vLLM) is there, with corral's notes on starts, exits and stops.
    """
    from corral.api.errors import NotFound

    name = _endpoint_name(target)
    with remote.client() as client:
        replicas = client.endpoint_logs(name, namespace=namespace, tail=tail)
    if replica is not None:
        chosen = [entry for entry in replicas if entry.get("name") == replica]
        if not chosen:
            known = ", ".join(str(entry.get("name")) for entry in replicas) or "none"
            raise NotFound(f"endpoint/{name} has no replica {replica!r} (its replicas: {known})")
        replicas = chosen
    if not replicas:
        click.echo(f"endpoint/{name} has no replicas (yet): nothing has logged", err=True)
        return
    for index, entry in enumerate(replicas):
        if index:
            click.echo()
        click.echo(f"==> {entry.get('name')} (model {entry.get('model')}) <==")
        for line in entry.get("lines") or []:
            click.echo(line)


def _endpoint_name(target: str) -> str:
    from corral.api.registry import lookup_kind

    kind, slash, name = target.partition("/")
    if not slash or not kind or not name or "/" in name:
        raise click.UsageError(
            f"name what to read as KIND/NAME, e.g. endpoint/chat (got {target!r})"
        )
    info = lookup_kind(kind)
    if info is None or info.singular not in KINDS_WITH_LOGS:
        what = f"unknown kind {kind!r}" if info is None else f"{info.kind} objects have no logs"
        raise click.UsageError(
            f"{what}: only {', '.join(KINDS_WITH_LOGS)} objects have logs "
            f"(e.g. corral logs endpoint/{name})"
        )
    return name
