"""``corral up`` and ``corral serve``: running the server in the foreground.

``up`` is every role in one process on a local SQLite store, the laptop path; ``serve`` runs
the roles it is given, usually against a PostgreSQL store shared by several processes. Both
stop cleanly on Ctrl+C / SIGTERM.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from pathlib import Path

    from corral.cli.manifests import ManifestSet
    from corral.server import ServerConfig, ServerInfo

_LOG_LEVELS = click.Choice(["debug", "info", "warning", "error"], case_sensitive=False)


def _common_server_options(func: Any) -> Any:
    options = [
        click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on"),
        click.option(
            "--port",
            type=click.IntRange(0, 65535),
            default=8080,
            show_default=True,
            help="port to listen on; 0 picks a free one (see STATE_DIR/server.json)",
        ),
        click.option(
            "--state-dir",
            envvar="CORRAL_STATE_DIR",
            default=".corral",
            show_default=True,
            type=click.Path(file_okay=False),
            help="holds the admin token, server.json and the default SQLite store "
            "[env CORRAL_STATE_DIR]",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.command()
@_common_server_options
@click.option(
    "-f",
    "--filename",
    "stack",
    multiple=True,
    metavar="FILE|DIR",
    help="manifests to apply once the server is ready (validated before it starts)",
)
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="after applying -f, show progress until its Endpoints serve, then how to call them",
)
@click.option(
    "--wait-timeout",
    type=click.IntRange(min=1),
    default=300,
    show_default=True,
    metavar="SECONDS",
    help="how long --wait waits before reporting what is not ready",
)
@click.option("--log-level", type=_LOG_LEVELS, default="warning", show_default=True)
def up(
    host: str,
    port: int,
    state_dir: str,
    stack: tuple[str, ...],
    wait: bool,
    wait_timeout: int,
    log_level: str,
) -> None:
    """Run corral (API server, gateway and controllers) in this process, on SQLite in STATE_DIR.

    Prints the URL and where the admin token is (the token itself only when it was just
    created). Other commands find this server through STATE_DIR/server.json. Ctrl+C stops it.

    With -f, the stack is applied once the server is ready; then (unless --no-wait) corral
    shows each Model and Endpoint until the Endpoints serve and prints how to call them, or
    what failed and why. Either way it keeps serving.
    """
    from pathlib import Path

    from corral.cli.manifests import load_validated
    from corral.server import ServerConfig

    manifests = load_validated(stack) if stack else None
    _configure_logging(log_level)
    config = ServerConfig(host=host, port=port, state_dir=Path(state_dir))
    _run(config, manifests, wait_timeout if wait else None)


@click.command()
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    metavar="ROLE[,ROLE]",
    help="any of apiserver, controllers, gateway, agents; repeat or comma-separate",
)
@click.option(
    "--store",
    envvar="CORRAL_STORE",
    metavar="URL",
    help="postgresql://user@host/db (shared) or sqlite:///path [env CORRAL_STORE; "
    "default: SQLite in STATE_DIR]",
)
@_common_server_options
@click.option(
    "--leader-election/--no-leader-election",
    default=None,
    help="one active controller set among replicas [default: on for PostgreSQL]",
)
@click.option("--identity", metavar="NAME", help="this replica's lease holder name [hostname-pid]")
@click.option("--log-level", type=_LOG_LEVELS, default="info", show_default=True)
def serve(
    roles: tuple[str, ...],
    store: str | None,
    host: str,
    port: int,
    state_dir: str,
    leader_election: bool | None,
    identity: str | None,
    log_level: str,
) -> None:
    """Run some roles of corral, e.g. several replicas sharing one PostgreSQL store.

    With leader election (the default on PostgreSQL) one replica's controllers act at a time;
    the Lease corral-system/corral-controllers names it, and another takes over when it dies.
    """
    from pathlib import Path

    from corral.server import ServerConfig, parse_roles

    try:
        chosen = parse_roles(roles)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--role") from None
    _configure_logging(log_level)
    config = ServerConfig(
        host=host,
        port=port,
        state_dir=Path(state_dir),
        store_url=store,
        roles=chosen,
        leader_election=leader_election,
        identity=identity,
    )
    _run(config, None)


def _run(
    config: ServerConfig, stack: ManifestSet | None, wait_timeout: float | None = None
) -> None:
    from corral.server import run

    async def on_ready(info: ServerInfo) -> None:
        _announce(info)
        if stack is not None and info.url is not None and info.token_path is not None:
            import asyncio

            from corral.client import openai_base_url

            base_url = info.openai_base_url or openai_base_url(info.url)
            state_dir = info.token_path.parent
            await asyncio.to_thread(
                _apply_stack, info.url, base_url, state_dir, stack, wait_timeout
            )

    run(config, on_ready=on_ready)


def _announce(info: ServerInfo) -> None:
    lines = []
    if info.url is not None:
        lines.append(f"corral is up at {info.url}")
    else:
        lines.append(f"corral {', '.join(sorted(info.roles))} running (no API server here)")
    lines.append(f"  roles:       {', '.join(sorted(info.roles))}")
    lines.append(f"  store:       {info.store}")
    if info.openai_base_url is not None:
        lines.append(f"  OpenAI API:  {info.openai_base_url}   (API key: the admin token)")
    if info.token_path is not None:
        lines.append(f"  admin token: {info.token_path}")
    if info.new_token is not None:
        lines.append(
            f"  new token:   {info.new_token}   (shown once; it is kept in the file above)"
        )
    lines.append("Press Ctrl+C to stop.")
    click.echo("\n".join(lines))
    sys.stdout.flush()


def _apply_stack(
    url: str, base_url: str, state_dir: Path, stack: ManifestSet, wait_timeout: float | None
) -> None:
    """Apply the stack; then, with a timeout, follow it until it serves (or says why not)."""
    from corral.cli.manifests import outcome_line
    from corral.client import CorralClient
    from corral.client.discovery import read_token

    with CorralClient(url, read_token(state_dir)) as client:
        outcomes = client.apply(stack.objects, locations=stack.locations)
        for outcome in outcomes:
            click.echo(outcome_line(outcome))
        sys.stdout.flush()
        if wait_timeout is not None:
            from corral.cli.stack_report import follow_stack
            from corral.cli.stack_wait import Stack

            follow_stack(
                client,
                Stack.of(stack),
                url=url,
                base_url=base_url,
                state_dir=state_dir,
                timeout_s=wait_timeout,
            )
            sys.stdout.flush()


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    # One line per health probe and per apply is noise, even at info.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(
            max(logging.WARNING, logging.getLevelName(level.upper()))
        )
