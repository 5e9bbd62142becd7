"""``corral token``: Workload tokens signed by this corral.

Being built: the group has no subcommands yet.
"""

from __future__ import annotations

import click


@click.group()
def token() -> None:
    """Workload tokens signed by this corral."""
