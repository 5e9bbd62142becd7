"""Output guardrails: response hooks that redact (or cut) what a model answers, as it streams.

The guardrails stage appends an :class:`OutputHook` to ``call.response_hooks``; the gateway's
relay runs it over every chunk (``corral.gateway.ResponseHook``). It screens the answer by its
content type, whatever the request asked for (an upstream that ignores ``stream`` is still
screened). Only 200 answers of chat and completion requests are screened; others pass untouched.

- :class:`JsonOutputHook` (not streamed): holds the body back, then screens each choice's
  ``message.content`` (or ``text``) and every tool call's ``function.arguments``, and sends the
  re-serialised body once.
- :class:`SseOutputHook` (streamed): splits the byte stream into server-sent events, and feeds
  each choice's ``delta.content`` (or ``text``) and each tool call's argument fragments through
  its own :class:`~corral.guardrails.StreamScanner`, so a secret split over any number of chunks
  is still found: the scanner holds back a tail that could be the start of a match and releases
  it once settled, at the latest with the choice's ``finish_reason`` or before ``[DONE]``.
  Events keep their boundaries, order and other fields (``id``, ``event``, comments); an event
  whose text is held back goes out with an empty ``content``. Events nothing was changed in
  are relayed byte for byte, except that CRLF and CR line ends become LF. An event whose data
  is not JSON is relayed as it is (no OpenAI client could read an answer from it).

Block on output: the response has already started (200), so it cannot become an error. As
content filters of hosted APIs do, the choice ends there: the text before the blocked span is
sent, the choice gets ``finish_reason: "content_filter"``, and later deltas of that choice are
dropped (streamed) or the message ends there (not streamed). Redacted spans read
``[REDACTED:<type>]``. Findings are kept on the hook for the stage to count and audit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from corral.guardrails import Finding, StreamScanner

ScannerFactory = Callable[[str], StreamScanner]
"""A fresh stream scanner for one text, given the location its findings name."""

CONTENT_FILTER = "content_filter"


def _text_field(operation: str) -> tuple[str | None, str]:
    """(the choice's sub-object holding the text, its key): chat deltas, completion text."""
    return ("delta", "content") if operation == "chat" else (None, "text")


class _Choice:
    """The scanners of one streamed (or returned) choice: its text and its tool calls."""

    __slots__ = ("blocked", "content", "done", "tools")

    def __init__(self) -> None:
        self.content: StreamScanner | None = None
        self.tools: dict[int, StreamScanner] = {}
        self.done = False  # flushed: its finish_reason arrived
        self.blocked = False  # cut by a blocking finding: later deltas are dropped


class _OutputScreen:
    """What both hooks share: a scanner per text of each choice, and the findings so far."""

    rewrites = True

    def __init__(self, scanners: ScannerFactory, operation: str) -> None:
        self._scanners = scanners
        self._operation = operation
        self._choices: dict[int, _Choice] = {}
        self._finished: list[Finding] = []
        self._active = False
        self._content_path = "text"
        if operation == "chat":
            self._content_path = "delta.content" if self.streamed else "message.content"

    streamed = False

    @property
    def findings(self) -> list[Finding]:
        found = list(self._finished)
        for choice in self._choices.values():
            if not choice.done:
                found.extend(_scanner_findings(choice))
        return found

    def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:  # noqa: ARG002
        self._active = status == 200

    def _choice(self, index: int) -> _Choice:
        choice = self._choices.get(index)
        if choice is None:
            choice = self._choices[index] = _Choice()
        return choice

    def _content_scanner(self, choice: _Choice, index: int) -> StreamScanner:
        if choice.content is None:
            choice.content = self._scanners(f"choices[{index}].{self._content_path}")
        return choice.content

    def _tool_scanner(self, choice: _Choice, index: int, tool: int) -> StreamScanner:
        scanner = choice.tools.get(tool)
        if scanner is None:
            location = f"choices[{index}].tool_calls[{tool}].function.arguments"
            scanner = choice.tools[tool] = self._scanners(location)
        return scanner

    def _finish(self, choice: _Choice) -> tuple[str, dict[int, str]]:
        """Flush a choice's scanners: (held-back text, held-back arguments per tool call)."""
        choice.done = True
        text = choice.content.flush() if choice.content is not None else ""
        tools = {tool: scanner.flush() for tool, scanner in choice.tools.items()}
        self._finished.extend(_scanner_findings(choice))
        return text, {tool: args for tool, args in tools.items() if args}


def _scanner_findings(choice: _Choice) -> list[Finding]:
    found = list(choice.content.findings) if choice.content is not None else []
    for scanner in choice.tools.values():
        found.extend(scanner.findings)
    return found


def _blocked(choice: _Choice) -> bool:
    if choice.content is not None and choice.content.blocked:
        return True
    return any(scanner.blocked for scanner in choice.tools.values())


class JsonOutputHook(_OutputScreen):
    """Screens a whole (not streamed) chat or completion answer before it is sent."""

    def __init__(self, scanners: ScannerFactory, operation: str) -> None:
        super().__init__(scanners, operation)
        self._parts: list[bytes] = []

    def chunk(self, data: bytes) -> bytes:
        if not self._active:
            return data
        self._parts.append(data)
        return b""

    def end(self) -> bytes:
        if not self._active:
            return b""
        body = b"".join(self._parts)
        self._parts = []
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body  # not JSON: nothing a client would read as a message
        choices = answer.get("choices") if isinstance(answer, dict) else None
        if not isinstance(choices, list):
            return body
        changed = False
        for position, item in enumerate(choices):
            if isinstance(item, dict):
                changed |= self._screen(item, position)
        return orjson.dumps(answer) if changed else body

    def _screen(self, item: dict[str, Any], position: int) -> bool:
        index = item.get("index", position)
        index = index if isinstance(index, int) else position
        choice = self._choice(index)
        if self._operation == "chat":
            holder = item.get("message")
            key = "content"
        else:
            holder, key = item, "text"
        if not isinstance(holder, dict):
            return False
        changed = False
        text = holder.get(key)
        if isinstance(text, str) and text:
            scanner = self._content_scanner(choice, index)
            screened = scanner.feed_whole(text)
            changed |= screened != text
            holder[key] = screened
        tool_calls = holder.get("tool_calls")
        if isinstance(tool_calls, list):
            for tool, tool_call in enumerate(tool_calls):
                function = tool_call.get("function") if isinstance(tool_call, dict) else None
                arguments = function.get("arguments") if isinstance(function, dict) else None
                if isinstance(function, dict) and isinstance(arguments, str) and arguments:
                    scanner = self._tool_scanner(choice, index, tool)
                    screened = scanner.feed_whole(arguments)
                    changed |= screened != arguments
                    function["arguments"] = screened
        choice.done = True
        self._finished.extend(_scanner_findings(choice))
        if _blocked(choice):
            item["finish_reason"] = CONTENT_FILTER
            changed = True
        return changed


class SseOutputHook(_OutputScreen):
    """Screens a streamed answer event by event; see the module docstring."""

    streamed = True

    def __init__(self, scanners: ScannerFactory, operation: str) -> None:
        super().__init__(scanners, operation)
        self._pending = b""
        self._last: dict[str, Any] = {}
        """The latest chunk with choices: its id/object/created/model head a released chunk."""

    def chunk(self, data: bytes) -> bytes:
        if not self._active:
            return data
        pending = self._pending + data
        if b"\r" in pending:
            # SSE lines may end in CRLF or CR too: one form makes every event end in "\n\n".
            # A CR at the very end may be the first half of a CRLF: it waits for the next byte.
            held_cr = pending.endswith(b"\r")
            body = (pending[:-1] if held_cr else pending).replace(b"\r\n", b"\n")
            pending = body.replace(b"\r", b"\n") + (b"\r" if held_cr else b"")
        cut = pending.rfind(b"\n\n")
        if cut < 0:
            self._pending = pending
            return b""
        self._pending = pending[cut + 2 :]
        out = [self._event(event) for event in pending[: cut + 2].split(b"\n\n")[:-1]]
        return b"".join(out)

    def end(self) -> bytes:
        if not self._active:
            return b""
        # The upstream ended without [DONE], or without the blank line after its last event:
        # screen that event too, then release what the scanners still hold.
        tail, self._pending = self._pending, b""
        tail = tail.strip(b"\r\n")
        return (self._event(tail) if tail else b"") + self._release_held()

    def _event(self, event: bytes) -> bytes:
        if event.startswith(b"data:") and b"\n" not in event:
            # One data line, the shape OpenAI-compatible servers send every token in.
            fields, data = b"", event[5:].strip()
        else:
            lines = event.split(b"\n")
            data_lines = [line[5:] for line in lines if line.startswith(b"data:")]
            if not data_lines:
                return event + b"\n\n"  # comments and keep-alives carry no answer
            # Other fields (id, event, retry, comments) are kept as they are, before the data.
            fields = b"".join(line + b"\n" for line in lines if not line.startswith(b"data:"))
            data = b"\n".join(line[1:] if line.startswith(b" ") else line for line in data_lines)
            data = data.strip()
        if data == b"[DONE]":
            return self._release_held() + event + b"\n\n"
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return event + b"\n\n"
        if not isinstance(chunk, dict):
            return event + b"\n\n"
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices:
            if "usage" in chunk:  # the last chunk before [DONE]: release what is held first
                return self._release_held() + event + b"\n\n"
            return event + b"\n\n"  # anything else with no text
        self._last = chunk  # read only if a released chunk is built (_release_held)
        kept: list[Any] = []
        changed = False
        for position, item in enumerate(choices):
            if not isinstance(item, dict):
                kept.append(item)
                continue
            index = item.get("index", position)
            index = index if isinstance(index, int) else position
            choice = self._choice(index)
            if choice.blocked:
                changed = True  # a cut choice says nothing more
                continue
            if choice.done:
                kept.append(item)  # after its finish_reason: nothing left to screen
                continue
            changed |= self._screen(item, index, choice)
            kept.append(item)
        if not changed:
            return event + b"\n\n"
        if not kept:
            return b""
        chunk["choices"] = kept
        return fields + b"data: " + orjson.dumps(chunk) + b"\n\n"

    def _screen(self, item: dict[str, Any], index: int, choice: _Choice) -> bool:
        parent, key = _text_field(self._operation)
        holder = item.get(parent) if parent is not None else item
        if not isinstance(holder, dict):
            return False
        changed = False
        text = holder.get(key)
        if isinstance(text, str) and text:
            released = self._content_scanner(choice, index).feed(text)
            if released != text:
                holder[key] = released
                changed = True
        tool_calls = holder.get("tool_calls")
        if isinstance(tool_calls, list):
            for position, tool_call in enumerate(tool_calls):
                if not isinstance(tool_call, dict):
                    continue
                tool = tool_call.get("index", position)
                tool = tool if isinstance(tool, int) else position
                function = tool_call.get("function")
                arguments = function.get("arguments") if isinstance(function, dict) else None
                if isinstance(function, dict) and isinstance(arguments, str) and arguments:
                    released = self._tool_scanner(choice, index, tool).feed(arguments)
                    if released != arguments:
                        function["arguments"] = released
                        changed = True
        if _blocked(choice):
            choice.blocked = True
            self._finish(choice)
            item["finish_reason"] = CONTENT_FILTER
            return True
        if item.get("finish_reason") is not None:
            held, held_tools = self._finish(choice)
            if held or held_tools:
                _append(holder, key, held, held_tools)
                changed = True
            if _blocked(choice):  # the flush found a blocking span
                choice.blocked = True
                item["finish_reason"] = CONTENT_FILTER
                changed = True
        return changed

    def _release_held(self) -> bytes:
        """One chunk with what every unfinished choice still holds back (before [DONE])."""
        released: list[dict[str, Any]] = []
        parent, key = _text_field(self._operation)
        for index, choice in sorted(self._choices.items()):
            if choice.done:
                continue
            held, held_tools = self._finish(choice)
            if not (held or held_tools) and not _blocked(choice):
                continue
            holder: dict[str, Any] = {}
            _append(holder, key, held, held_tools)
            item: dict[str, Any] = {"index": index}
            if parent is None:
                item.update(holder)
            else:
                item[parent] = holder
            item["finish_reason"] = CONTENT_FILTER if _blocked(choice) else None
            released.append(item)
        if not released:
            return b""
        last = self._last
        head = {k: last[k] for k in ("id", "object", "created", "model") if k in last}
        return b"data: " + orjson.dumps({**head, "choices": released}) + b"\n\n"


def _append(holder: dict[str, Any], key: str, text: str, tools: dict[int, str]) -> None:
    if text:
        current = holder.get(key)
        holder[key] = (current if isinstance(current, str) else "") + text
    if tools:
        calls = holder.get("tool_calls")
        if not isinstance(calls, list):
            calls = holder["tool_calls"] = []
        for tool, arguments in sorted(tools.items()):
            calls.append({"index": tool, "function": {"arguments": arguments}})


class OutputHook:
    """The hook the guardrails stage installs: screens the answer as what it is, by its
    content type (server-sent events or JSON), whatever the request asked for, so an upstream
    that ignores ``stream`` cannot slip an answer past unscreened."""

    rewrites = True

    def __init__(self, scanners: ScannerFactory, operation: str) -> None:
        self._scanners = scanners
        self._operation = operation
        self._screen: SseOutputHook | JsonOutputHook | None = None

    @property
    def findings(self) -> list[Finding]:
        return self._screen.findings if self._screen is not None else []

    def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        kind = b""
        for name, value in headers:  # a loop, not next(generator): this runs per request
            if name == b"content-type":
                kind = value
                break
        screen = SseOutputHook if b"event-stream" in kind.lower() else JsonOutputHook
        self._screen = screen(self._scanners, self._operation)
        self._screen.start(status, headers)

    def chunk(self, data: bytes) -> bytes:
        return self._screen.chunk(data) if self._screen is not None else data

    def end(self) -> bytes:
        return self._screen.end() if self._screen is not None else b""
