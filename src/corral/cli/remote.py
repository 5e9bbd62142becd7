"""How commands that talk to a server find it: the shared ``--server/--token/--state-dir``.

:func:`remote_options` adds the options to a command and hands it a :class:`Remote`, which
resolves the connection (flags, then ``CORRAL_URL``/``CORRAL_TOKEN``, then the state dir's
``server.json`` and ``admin.token``) only when the command first needs a client: the API
client, or the gateway client (same server and token) for ``corral chat``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from corral.client import Connection, CorralClient, GatewayClient

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Remote:
    server: str | None
    token: str | None
    state_dir: str | None

    def connection(self) -> Connection:
        from corral.client import resolve_connection

        return resolve_connection(self.server, self.token, self.state_dir)

    def client(self) -> CorralClient:
        from corral.client import CorralClient

        connection = self.connection()
        return CorralClient(connection.url, connection.token)

    def gateway(self) -> GatewayClient:
        """The OpenAI-compatible gateway, on the same server and token as the API."""
        from corral.client import GatewayClient, openai_base_url

        connection = self.connection()
        return GatewayClient(openai_base_url(connection.url), connection.token)


def remote_options(func: F) -> F:
    """Add the connection options; the command receives them as ``remote: Remote``."""

    @click.option(
        "--server",
        envvar="CORRAL_URL",
        metavar="URL",
        help="corral API URL [env CORRAL_URL; default: from STATE_DIR/server.json]",
    )
    @click.option(
        "--token",
        envvar="CORRAL_TOKEN",
        metavar="TOKEN",
        help="bearer token [env CORRAL_TOKEN; default: STATE_DIR/admin.token]",
    )
    @click.option(
        "--state-dir",
        envvar="CORRAL_STATE_DIR",
        metavar="DIR",
        help="where `corral up` keeps its state [env CORRAL_STATE_DIR; default ./.corral]",
    )
    @functools.wraps(func)
    def with_remote(
        *args: Any, server: str | None, token: str | None, state_dir: str | None, **kwargs: Any
    ) -> Any:
        return func(*args, remote=Remote(server, token, state_dir), **kwargs)

    return with_remote  # type: ignore[return-value]
