"""The ``corral`` root command: registers the subcommands and owns error handling.

Every expected error raised by a subcommand ends here, as a message and exit code 1 (see
:mod:`corral.cli.errors`); click's usage errors keep their exit code 2.
"""

from __future__ import annotations

from typing import Any

import click

from corral import __version__
from corral.cli.agent_commands import agent, sessions
from corral.cli.apply_commands import apply, delete, diff
from corral.cli.audit_commands import audit
from corral.cli.chat_commands import chat
from corral.cli.errors import is_expected, report
from corral.cli.history_commands import history, rollback
from corral.cli.keys_commands import keys
from corral.cli.logs_commands import logs
from corral.cli.policy_commands import policy
from corral.cli.read_commands import describe, get
from corral.cli.render_commands import render
from corral.cli.sched_commands import sched
from corral.cli.server_commands import serve, up
from corral.cli.token_commands import token
from corral.cli.traces_commands import traces
from corral.cli.usage_commands import usage

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


class _CorralGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            ctx.exit(EXIT_INTERRUPTED)
        except Exception as error:
            if not is_expected(error):
                raise
            report(error)
            ctx.exit(EXIT_ERROR)


@click.group(cls=_CorralGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="corral")
def cli() -> None:
    """corral: a control plane for AI models and agents.

    Declare Models and Endpoints as YAML, apply them, and corral makes it so. Start a server
    with `corral up -f STACK`, then `corral chat`, `corral apply -f DIR`, `corral get endpoints`.

    Exit codes: 0 ok, 1 error, 2 usage error (`corral diff`: 1 means differences).
    """


_COMMANDS = (
    up,
    serve,
    apply,
    diff,
    delete,
    get,
    describe,
    history,
    rollback,
    logs,
    chat,
    keys,
    token,
    policy,
    usage,
    traces,
    audit,
    agent,
    sessions,
    sched,
    render,
)
for _command in _COMMANDS:
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="corral")
