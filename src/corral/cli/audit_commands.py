"""``corral audit``: Verify and read the tamper-evident audit log.

Being built: the group has no subcommands yet.
"""

from __future__ import annotations

import click


@click.group()
def audit() -> None:
    """Verify and read the tamper-evident audit log."""
