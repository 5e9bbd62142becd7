"""``corral traces``: Recent gateway request traces.

Being built: the group has no subcommands yet.
"""

from __future__ import annotations

import click


@click.group()
def traces() -> None:
    """Recent gateway request traces."""
