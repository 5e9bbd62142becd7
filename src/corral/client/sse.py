"""Server-sent events: turning the lines of a ``text/event-stream`` body into events.

The gateway streams OpenAI chat completions as SSE (``data: {...}`` events, then
``data: [DONE]``); :mod:`corral.client.chat` reads the body line by line and hands the lines
here. Parsing follows the WHATWG rules: ``data`` lines of one event are joined with newlines, a
blank line ends the event, ``:`` lines are comments (keep-alives), and an event the stream cut
off before its blank line is dropped rather than guessed at.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

DEFAULT_EVENT = "message"


@dataclass(frozen=True)
class SseEvent:
    data: str
    event: str = DEFAULT_EVENT
    id: str | None = None


def iter_sse(lines: Iterable[str]) -> Iterator[SseEvent]:
    """The events in ``lines`` (each one line of the body, without its line ending)."""
    data: list[str] = []
    event = ""
    last_id: str | None = None
    for line in lines:
        if not line:
            if data:
                yield SseEvent("\n".join(data), event or DEFAULT_EVENT, last_id)
            data, event = [], ""
            continue
        if line.startswith(":"):
            continue
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            data.append(value)
        elif field == "event":
            event = value
        elif field == "id" and "\0" not in value:
            last_id = value
        # "retry" and unknown fields only matter to reconnecting browsers: ignored.
