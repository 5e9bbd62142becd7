"""Streaming output scanning: redact secrets and PII in a response as its chunks arrive.

Gateway flow: upstream chunk → :meth:`StreamScanner.feed` → the text that is safe to pass on.
A match can straddle chunks ("sk-pro" + "j-Ab12…"), so the scanner holds back the tail that a
match could still start in and releases everything before it (looking again once at least
``_MIN_STEP`` new characters arrived, so a stream of tiny deltas is not rescanned per delta).
How much is held back comes from the detectors: ``max_span`` for most kinds, and only from an
anchor on for the long kinds (PEM blocks, JWTs). :meth:`flush` settles the rest at the end of
the stream.

The released text is, chunk boundaries regardless, exactly what a whole-text scan would redact:
the detectors' matches at a position never depend on where scanning started, and nothing is
released from inside a match or a group of overlapping matches.
"""

from __future__ import annotations

from corral.guardrails._detector import Detector, Match
from corral.guardrails._findings import Finding, Outcome, strongest
from corral.guardrails._prefilter import Prefilter
from corral.guardrails._spans import redact, to_finding
from corral.guardrails.config import GuardrailConfig

# Lookbehinds in the detectors read one character; keep a few released characters as context.
_LEFT_CONTEXT = 16
# Deciding what is settled costs about the same for 1 new character as for 100 (two regex
# searches per detector), and streamed deltas are often a few characters: look again only once
# this many have arrived. Releasing later never changes what is released, only when.
_MIN_STEP = 16


class _Unscanned:
    """The prefilter has not looked at the buffer yet (None already means "run them all")."""


_UNSCANNED = _Unscanned()


class StreamScanner:
    """Feed chunks in order, then call :meth:`flush` once. After a blocking finding the scanner
    releases nothing more; ``blocked`` says so and the caller ends the response."""

    def __init__(
        self,
        detectors: tuple[Detector, ...],
        config: GuardrailConfig,
        location: str = "stream",
        prefilter: Prefilter | None = None,
    ) -> None:
        """``prefilter``, when given, starts with ``detectors`` in the same order (it may
        cover more after them) and skips those that cannot match the text held."""
        self._detectors = detectors
        self._prefilter = prefilter
        self._config = config
        self._location = location
        self._buffer = ""
        self._released = 0  # index in _buffer up to which text has been passed on
        self._offset = 0  # absolute stream position of _buffer[0]
        self._findings: list[Finding] = []
        self._blocked = False
        self._flushed = False
        self._unsettled = 0  # characters received since the last look at what is settled

    @property
    def findings(self) -> tuple[Finding, ...]:
        return tuple(self._findings)

    @property
    def action(self) -> Outcome:
        return strongest(self._findings)

    @property
    def blocked(self) -> bool:
        return self._blocked

    @property
    def held_back(self) -> int:
        """Characters received but not yet released."""
        return len(self._buffer) - self._released

    def feed(self, chunk: str) -> str:
        if self._flushed:
            raise RuntimeError("StreamScanner.feed: the stream was already flushed")
        if not isinstance(chunk, str):
            raise TypeError(f"StreamScanner.feed: expected str, got {type(chunk).__name__}")
        if self._blocked:
            return ""
        self._buffer += chunk
        self._unsettled += len(chunk)
        if self._unsettled < _MIN_STEP:
            return ""
        self._unsettled = 0
        frontier = min(
            (d.settled_before(self._buffer, self._released) for d in self._detectors),
            default=len(self._buffer),
        )
        return self._release(frontier)

    def feed_whole(self, text: str) -> str:
        """``feed(text) + flush()`` in one step, for an answer that arrives whole: nothing has
        to be held back, so the settled-tail search is skipped. Same result, same findings."""
        if not isinstance(text, str):
            raise TypeError(f"StreamScanner.feed_whole: expected str, got {type(text).__name__}")
        if self._flushed:
            raise RuntimeError("StreamScanner.feed_whole: the stream was already flushed")
        if self._blocked:
            return self.flush()
        if self._buffer or self._prefilter is None:
            self._buffer += text
            return self.flush()
        self._flushed = True
        hits = self._prefilter.hits(text)
        if hits == set():
            # Most answers: no detector can match, so the whole text is released as it is
            # (what _release would find after running none of them).
            return text
        self._buffer = text
        return self._release(len(text), hits)

    def flush(self) -> str:
        if self._flushed:
            raise RuntimeError("StreamScanner.flush: the stream was already flushed")
        released = "" if self._blocked else self._release(len(self._buffer))
        self._flushed = True
        return released

    def _release(self, frontier: int, hits: set[int] | _Unscanned | None = _UNSCANNED) -> str:
        """Release the text before ``frontier``; ``hits`` is the prefilter's answer for the
        buffer when the caller already has it."""
        settled: list[tuple[Detector, Match]] = []
        if isinstance(hits, _Unscanned):
            hits = None if self._prefilter is None else self._prefilter.hits(self._buffer)
        for index, detector in enumerate(self._detectors):
            if hits is not None and index not in hits:
                continue
            for match in detector.matches(self._buffer, self._released):
                if match.match_start >= frontier:
                    break
                settled.append((detector, match))
        cut = self._safe_cut(frontier, [m for _, m in settled])
        if cut <= self._released:
            return ""
        found = [
            finding
            for detector, match in settled
            if match.match_start < cut
            and (finding := to_finding(detector, match, self._config, self._offset, self._location))
            is not None
        ]
        found.sort(key=lambda f: f.span)
        end = cut
        blocking = [f for f in found if f.action == "block"]
        if blocking:
            self._blocked = True
            end = self._group_start(blocking[0], found) - self._offset
            found = [f for f in found if f.span[0] - self._offset < end] + [blocking[0]]
        self._findings.extend(found)
        start = self._released
        text = self._buffer[start:end]
        released = redact(text, [f for f in found if f.action != "block"], self._offset + start)
        self._advance(cut)
        return released

    @staticmethod
    def _safe_cut(frontier: int, matches: list[Match]) -> int:
        """Move the cut back until it is inside no match (nor a reported span)."""
        cut = frontier
        moved = True
        while moved:
            moved = False
            for match in matches:
                start = min(match.match_start, match.start)
                end = max(match.match_end, match.end)
                if start < cut < end:
                    cut = start
                    moved = True
        return cut

    @staticmethod
    def _group_start(first: Finding, found: list[Finding]) -> int:
        start = first.span[0]
        for finding in sorted(found, key=lambda f: f.span, reverse=True):
            if finding.span[0] < start < finding.span[1]:
                start = finding.span[0]
        return start

    def _advance(self, cut: int) -> None:
        self._released = cut
        drop = max(0, cut - _LEFT_CONTEXT)
        self._buffer = self._buffer[drop:]
        self._released -= drop
        self._offset += drop
