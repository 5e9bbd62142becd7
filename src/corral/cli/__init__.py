"""The ``corral`` command line: the only place that turns exceptions into exit codes.

Exit codes: 0 ok, 1 error (the message, and each cause as ``location field: message``),
2 usage (click's). ``corral diff`` follows ``kubectl diff``: 1 means differences, 2 and above
an error. Commands import their heavy dependencies lazily so ``corral --help`` stays quick.
"""

from corral.cli.main import cli, main

__all__ = ["cli", "main"]
