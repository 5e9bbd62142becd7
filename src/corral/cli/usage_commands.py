"""``corral usage``: Tokens and cost by team, key, model or endpoint.

Being built: the group has no subcommands yet.
"""

from __future__ import annotations

import click


@click.group()
def usage() -> None:
    """Tokens and cost by team, key, model or endpoint."""
