"""The prefilter: one Hyperscan pass that says which detectors cannot match an ASCII text.

Guardrails run a dozen detectors over every input and every answer, and on ordinary text almost
none of them matches; yet each costs a pass of Python's backtracking ``re`` (plus Python-level
work at every key hit). Before the detectors run, :class:`Prefilter` scans the text once with
Hyperscan (a compiled multi-pattern automaton; the ``hyperscan`` package, x86-64 wheels) against
one expression per detector, and only the detectors it reports are run. The result is the same
with and without it, because each expression is a *superset* of its detector's regex on ASCII
text, built from Python's own parse of that regex (``re._parser``):

- every single-character item (a literal, a class, ``\\w``, ``.``) becomes the explicit set of
  ASCII bytes it accepts, read by compiling that one item with Python's ``re`` under the flags
  in force there and trying all 128 characters (so ``\\s``, IGNORECASE and inline flags mean
  exactly what they mean to Python; a detector that runs over ``text.lower()`` gets the set of
  bytes whose lower case the item accepts);
- sequences, alternatives, groups and repeats keep their shape; lazy and possessive repeats
  become greedy ones and atomic groups plain groups (either only widens what can match);
  repeats above 255 become unbounded, and their minimum is capped at 255 (wider again);
- ``\\b`` stays (on ASCII text it means the same to both engines); every other assertion
  (lookarounds, ``^``, ``$``, ``\\A``, ``\\Z``, ``\\B``) is dropped, a backreference becomes "any
  text" and a conditional group both of its branches: each only widens the set.

So a detector the prefilter does not report cannot match, and skipping it changes nothing. A
text with a non-ASCII character skips the prefilter (every detector runs, as without it): the
ASCII sets above are exact for ASCII text only. A detector whose expression Hyperscan refuses,
or whose regex Python's parser gives an unknown shape, always runs. Without the ``hyperscan``
package (other architectures) every detector always runs.
"""

from __future__ import annotations

import importlib
import logging
import re
import threading
from collections.abc import Sequence
from typing import Any

from corral.guardrails._detector import Detector

log = logging.getLogger("corral.guardrails")

try:
    _hyperscan: Any = importlib.import_module("hyperscan")
except ImportError:  # pragma: no cover - installed with corral on x86-64
    _hyperscan = None

try:
    # Private, but the parser and compiler ``re`` itself uses (Python 3.11+); without them
    # nothing is prefiltered.
    _parser: Any = importlib.import_module("re._parser")
    _compiler: Any = importlib.import_module("re._compiler")
    _constants: Any = importlib.import_module("re._constants")
except ImportError:  # pragma: no cover - Python 3.11+ has them
    _parser = _compiler = _constants = None

_ASCII = range(128)
_REPEAT_CAP = 255
"""Repeat bounds above this are widened (see the module doc): keeps Hyperscan's automata small."""


class Unsupported(ValueError):
    """A regex shape the translation does not know; its detector always runs."""


def available() -> bool:
    """Whether this process can prefilter (the ``hyperscan`` package and ``re``'s parser)."""
    return _hyperscan is not None and _parser is not None


def superset_expression(pattern: str, flags: int, *, fold_case: bool = False) -> str:
    """A Hyperscan expression (bytes mode) matching every ASCII text that ``pattern`` matches
    somewhere (``fold_case``: that ``pattern`` matches in the text's lower case)."""
    if _parser is None:
        raise Unsupported("re._parser is not available")
    tree = _parser.parse(pattern, flags)
    return _Translator(tree.state, fold_case).sequence(tree, tree.state.flags)


class _Translator:
    def __init__(self, state: Any, fold_case: bool) -> None:
        self.state = state
        self.fold_case = fold_case
        c = _constants
        self.single = {c.LITERAL, c.NOT_LITERAL, c.IN, c.ANY}
        self.repeats = {c.MAX_REPEAT, c.MIN_REPEAT}
        if hasattr(c, "POSSESSIVE_REPEAT"):
            self.repeats.add(c.POSSESSIVE_REPEAT)

    def sequence(self, items: Any, flags: int) -> str:
        return "".join(self.item(op, value, flags) for op, value in items)

    def item(self, op: Any, value: Any, flags: int) -> str:
        c = _constants
        if op in self.single:
            return self.character_set(op, value, flags)
        if op is c.BRANCH:
            return "(?:" + "|".join(self.sequence(alt, flags) for alt in value[1]) + ")"
        if op is c.SUBPATTERN:
            _group, add, remove, inner = value
            return "(?:" + self.sequence(inner, (flags | add) & ~remove) + ")"
        if op is getattr(c, "ATOMIC_GROUP", None):
            return "(?:" + self.sequence(value, flags) + ")"
        if op in self.repeats:
            low, high, inner = value
            low = min(low, _REPEAT_CAP)
            bound = "" if high is c.MAXREPEAT or high > _REPEAT_CAP else str(high)
            return "(?:" + self.sequence(inner, flags) + "){" + f"{low},{bound}" + "}"
        if op is c.AT:
            return r"\b" if value is c.AT_BOUNDARY else ""
        if op in (c.ASSERT, c.ASSERT_NOT):
            return ""
        if op is c.GROUPREF:
            return r"[\x00-\x7f]*"
        if op is c.GROUPREF_EXISTS:
            _group, yes, no = value
            branches = [self.sequence(yes, flags), self.sequence(no, flags) if no else ""]
            return "(?:" + "|".join(branches) + ")"
        raise Unsupported(f"regex item {op} is not translated")

    def character_set(self, op: Any, value: Any, flags: int) -> str:
        """The ASCII bytes this one item accepts, as Python's ``re`` decides it."""
        key = (op, repr(value), flags, self.fold_case)
        known = _character_sets.get(key)
        if known is None:
            one = _compiler.compile(_parser.SubPattern(self.state, [(op, value)]), flags)
            texts = [chr(code).lower() if self.fold_case else chr(code) for code in _ASCII]
            known = _byte_class([code for code in _ASCII if one.fullmatch(texts[code])])
            _character_sets[key] = known
        return known


_character_sets: dict[tuple[Any, str, int, bool], str] = {}
"""Translated single items (most are the same few letters). Compile threads share it; two that
translate the same item at once both store the same answer."""


def _byte_class(codes: list[int]) -> str:
    if not codes:
        return r"[\x80]"  # a byte no ASCII text holds: this branch can never match
    runs: list[tuple[int, int]] = []
    for code in codes:
        if runs and runs[-1][1] == code - 1:
            runs[-1] = (runs[-1][0], code)
        else:
            runs.append((code, code))
    parts = [
        f"\\x{low:02x}" if low == high else f"\\x{low:02x}-\\x{high:02x}" for low, high in runs
    ]
    return "[" + "".join(parts) + "]"


class Prefilter:
    """Says, in one Hyperscan scan, which of ``detectors`` may match a text.

    Hyperscan compiles the expressions in about a second, so that happens once per process and
    set of detectors, on a background thread: until it is done (and where it cannot be done),
    :meth:`hits` answers None and every detector runs, as without a prefilter."""

    def __init__(self, detectors: Sequence[Detector]) -> None:
        self.detectors = tuple(detectors)
        self._job = _job_for(tuple(_signature(d) for d in self.detectors))
        self._local = threading.local()  # a scratch per thread: scans release the GIL

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the compile is over (for tests and benchmarks); True once it is."""
        return self._job.done.wait(timeout)

    @property
    def active(self) -> bool:
        """True once compiled with at least one detector prefiltered."""
        return self._job.database is not None

    def hits(self, text: str) -> set[int] | None:
        """Indexes (in ``detectors``) of the detectors that may match ``text``; None when every
        one may: the text is not ASCII, or the prefilter is not (yet) active."""
        job = self._job
        database = job.database
        if database is None or not text.isascii():
            return None
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = _hyperscan.Scratch(database)
        hits = set(job.always)
        database.scan(text.encode("ascii"), _record_hit, context=hits, scratch=scratch)
        return hits


def _record_hit(index: int, _start: int, _end: int, _flags: int, hits: set[int]) -> None:
    hits.add(index)


Signature = tuple[tuple[str, ...], int, bool]


def _signature(detector: Detector) -> Signature:
    return (tuple(detector.sources.values()), detector.pattern.flags, detector.fold_case)


class _Job:
    """One compile, shared by every Prefilter of the same detectors."""

    def __init__(self, signatures: tuple[Signature, ...]) -> None:
        self.signatures = signatures
        self.database: Any = None
        self.always: frozenset[int] = frozenset(range(len(signatures)))
        self.done = threading.Event()

    def run(self) -> None:
        try:
            database, always = _compile(self.signatures)
            self.always = always  # before the database: a scan that sees it sees this too
            self.database = database
        except Exception:  # a prefilter that fails only leaves every detector on
            log.exception("guardrail prefilter not built: every detector runs on every text")
        finally:
            self.done.set()


_jobs: dict[tuple[Signature, ...], _Job] = {}
"""One per set of detectors: a handful per process (which scanners a configuration turns on)."""
_jobs_lock = threading.Lock()


def _job_for(signatures: tuple[Signature, ...]) -> _Job:
    with _jobs_lock:
        job = _jobs.get(signatures)
        if job is not None:
            return job
        job = _jobs[signatures] = _Job(signatures)
    if not available():
        job.done.set()
        return job
    threading.Thread(target=job.run, name="corral-guardrail-prefilter", daemon=True).start()
    return job


def _compile(signatures: tuple[Signature, ...]) -> tuple[Any, frozenset[int]]:
    """The Hyperscan database (None when nothing could be prefiltered) and the indexes of the
    detectors that always run. A detector's rules are separate expressions under its index
    (Hyperscan bounds the length of one expression)."""
    translated: dict[int, list[bytes]] = {}
    for index, (sources, flags, fold_case) in enumerate(signatures):
        try:
            translated[index] = [
                superset_expression(source, flags, fold_case=fold_case).encode()
                for source in sources
            ]
        except (Unsupported, re.error, RecursionError) as error:
            log.debug("guardrail detector %d is not prefiltered: %s", index, error)
    if not translated:
        return None, frozenset(range(len(signatures)))
    try:
        database = _database_of(translated)
    except _hyperscan.error:
        # Find the detectors Hyperscan refuses; the rest are prefiltered.
        for index in list(translated):
            try:
                _database_of({index: translated[index]})
            except _hyperscan.error as error:
                log.debug("guardrail detector %d is not prefiltered: %s", index, error)
                del translated[index]
        database = _database_of(translated) if translated else None
    always = frozenset(set(range(len(signatures))) - set(translated))
    return (database if translated else None), always


def _database_of(translated: dict[int, list[bytes]]) -> Any:
    expressions = [e for index in translated for e in translated[index]]
    ids = [index for index in translated for _ in translated[index]]
    database = _hyperscan.Database(mode=_hyperscan.HS_MODE_BLOCK)
    flag = (
        _hyperscan.HS_FLAG_SINGLEMATCH
        | _hyperscan.HS_FLAG_ALLOWEMPTY
        | _hyperscan.HS_FLAG_PREFILTER  # may widen further, never narrow
    )
    database.compile(
        expressions=expressions, ids=ids, elements=len(expressions), flags=[flag] * len(ids)
    )
    return database
