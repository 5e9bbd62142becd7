"""Turning exceptions into messages: which errors are expected, and how they are shown.

Expected errors (anything corral raises on purpose, and the operating system's) become a
message on stderr; anything else is a bug and keeps its traceback. ``CORRAL_DEBUG=1`` shows
tracebacks for expected errors too.
"""

from __future__ import annotations

import os
import sys


def is_expected(error: BaseException) -> bool:
    if isinstance(error, OSError):
        return True
    return isinstance(error, Exception) and type(error).__module__.startswith("corral.")


def report(error: BaseException) -> None:
    """Print ``error: message`` and one line per cause (``location field: message``)."""
    if os.environ.get("CORRAL_DEBUG"):
        import traceback

        traceback.print_exception(error, file=sys.stderr)
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        message = f"{error.filename}: {error.strerror}"
    lines = [f"error: {message}"]
    lines.extend(f"  {cause}" for cause in getattr(error, "causes", None) or [])
    print("\n".join(lines), file=sys.stderr)
