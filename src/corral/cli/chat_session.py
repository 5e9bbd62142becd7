"""The conversation behind ``corral chat``: history, one streamed exchange, the prompt loop.

:class:`Conversation` keeps the messages sent so far and adds an exchange to them only once its
reply streamed to the end, so a failed or interrupted turn can simply be asked again.
:func:`interactive` is the read–reply loop; its input and output are parameters so tests drive
it without a terminal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from corral.api.errors import ApiError
from corral.client import ChatMessage, GatewayClient

PROMPT = "> "
EXIT_COMMANDS = ("/exit", "/quit")
RESET_COMMAND = "/reset"
HELP = "/reset clears the conversation; /exit or Ctrl-D leaves."


@dataclass(frozen=True)
class ChatSettings:
    model: str
    """The Endpoint, as clients name it: ``name`` or ``namespace/name``."""
    max_tokens: int | None = None
    temperature: float | None = None


@dataclass
class Conversation:
    system: str | None = None
    messages: list[ChatMessage] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every exchange; the system prompt stays."""
        self.messages = [{"role": "system", "content": self.system}] if self.system else []

    def reply(
        self,
        gateway: GatewayClient,
        settings: ChatSettings,
        text: str,
        write: Callable[[str], None],
    ) -> str:
        """Send ``text`` after the history, ``write`` each piece of the reply as it arrives."""
        asked = [*self.messages, {"role": "user", "content": text}]
        with gateway.stream_chat(
            settings.model,
            asked,
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
        ) as stream:
            for piece in stream:
                write(piece)
        self.messages = [*asked, {"role": "assistant", "content": stream.text}]
        return stream.text


def interactive(
    gateway: GatewayClient,
    conversation: Conversation,
    settings: ChatSettings,
    *,
    read_line: Callable[[str], str],
    out: TextIO,
    err: TextIO,
) -> None:
    """Prompt, stream the reply, repeat, until /exit, end of input or Ctrl-C.

    A failed turn prints its error and the loop goes on: the server may come back, and the
    history is intact.
    """
    err.write(f"Chatting with {settings.model!r}. {HELP}\n")
    err.flush()
    while True:
        try:
            line = read_line(PROMPT)
        except (EOFError, KeyboardInterrupt):
            out.write("\n")
            return
        text = line.strip()
        if not text:
            continue
        if text in EXIT_COMMANDS:
            return
        if text == RESET_COMMAND:
            conversation.reset()
            err.write("(conversation cleared)\n")
            continue
        written = _Writer(out)
        try:
            conversation.reply(gateway, settings, text, written)
        except KeyboardInterrupt:
            out.write("\n")
            return
        except ApiError as error:
            if written.any:
                out.write("\n")
            err.write(f"error: {error.message}\n")
            err.flush()
            continue
        out.write("\n")
        out.flush()


class _Writer:
    """Writes pieces straight through (flushed, so tokens show as they come) and notes if any."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self.any = False

    def __call__(self, piece: str) -> None:
        self.any = True
        self._out.write(piece)
        self._out.flush()
