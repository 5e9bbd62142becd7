"""``corral chat``: talk to an Endpoint through the gateway, streaming the replies.

The gateway is found like every other command finds the server (``--server``/``CORRAL_URL``,
else ``STATE_DIR/server.json``), and answers at ``URL/v1`` with the same token. ``-m`` makes it
one exchange for scripts: the reply on stdout, exit 1 with the gateway's message on failure.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable

import click

from corral.cli.remote import Remote, remote_options

DEFAULT_ENDPOINT = "chat"


@click.command()
@click.argument("endpoint", default=DEFAULT_ENDPOINT, metavar="[ENDPOINT]")
@click.option("--system", metavar="TEXT", help="a system prompt that opens the conversation")
@click.option(
    "--max-tokens", type=click.IntRange(min=1), metavar="N", help="longest reply, in tokens"
)
@click.option(
    "--temperature", type=click.FloatRange(0, 2), metavar="T", help="sampling temperature, 0..2"
)
@click.option(
    "-m",
    "--message",
    metavar="MESSAGE",
    help="send MESSAGE, print the reply and exit (no prompt; for scripts)",
)
@remote_options
def chat(
    endpoint: str,
    system: str | None,
    max_tokens: int | None,
    temperature: float | None,
    message: str | None,
    remote: Remote,
) -> None:
    """Chat with ENDPOINT (default `chat`; `namespace/name` for another namespace).

    Replies stream as they are generated and the conversation is kept: each message is sent
    with the ones before it. Type /reset to start over; Ctrl-D or Ctrl-C leaves.
    """
    from corral.cli.chat_session import ChatSettings, Conversation, interactive

    if message is not None and not message.strip():
        raise click.BadParameter("the message is empty", param_hint="-m/--message")
    settings = ChatSettings(endpoint, max_tokens=max_tokens, temperature=temperature)
    conversation = Conversation(system)
    with remote.gateway() as gateway:
        if message is not None:
            conversation.reply(gateway, settings, message, _write_through)
            click.echo()
            return
        # Name a missing Endpoint now rather than after the first message is typed.
        gateway.model(endpoint)
        interactive(
            gateway,
            conversation,
            settings,
            read_line=_line_reader(),
            out=sys.stdout,
            err=sys.stderr,
        )


def _write_through(piece: str) -> None:
    sys.stdout.write(piece)
    sys.stdout.flush()


def _line_reader() -> Callable[[str], str]:
    """``input``, with line editing and history when a terminal is attached."""
    if sys.stdin.isatty():
        # Importing readline is what gives input() editing and history.
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401
    return input
