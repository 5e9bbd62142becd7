"""The guardrail engine: compiles a GuardrailConfig into detectors and scans chat inputs.

Gateway flow: authn → authz → budget → **guardrails (scan_input)** → route → upstream, and on the
way back the upstream's chunks go through a :class:`~corral.guardrails.stream.StreamScanner`
from :meth:`Guardrails.stream`. Compile once per config (the regexes are built here) and share
the instance; scanning holds no state. Each text first goes through the instance's
:class:`~corral.guardrails._prefilter.Prefilter`, and only the detectors it reports run.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import replace

from corral.guardrails._detector import Detector
from corral.guardrails._findings import Finding, ScanResult, strongest
from corral.guardrails._injection import greatest_weight, injection_detectors, injection_score
from corral.guardrails._pii import all_pii_detectors
from corral.guardrails._prefilter import Prefilter
from corral.guardrails._secrets import all_secret_detectors
from corral.guardrails._spans import redact, to_finding
from corral.guardrails._unicode import unicode_detector
from corral.guardrails.classifier import ClassifierScanner
from corral.guardrails.config import GuardrailConfig
from corral.guardrails.stream import StreamScanner

CLEAN_TEXTS_KEPT = 1024
"""How many clean texts a ``Guardrails`` remembers (per injection setting)."""
CLEAN_TEXT_MAX_CHARS = 8192
"""Longer texts are always scanned: the cache holds at most 16 M characters in all."""


class GuardrailInputError(ValueError):
    """The messages are not OpenAI chat messages; the message says which one and why."""


def _texts(messages: Sequence[Mapping[str, object]]) -> list[tuple[str, str]]:
    """(location, text) for every text the caller sent: string contents and text parts."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise GuardrailInputError(
            f"messages: expected a list of messages, got {type(messages).__name__}"
        )
    texts: list[tuple[str, str]] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, Mapping):
            raise GuardrailInputError(f"{where}: expected an object, got {type(message).__name__}")
        content = message.get("content")
        if content is None:
            continue
        if isinstance(content, str):
            texts.append((f"{where}.content", content))
        elif isinstance(content, list):
            for part_index, part in enumerate(content):
                part_where = f"{where}.content[{part_index}]"
                if not isinstance(part, Mapping):
                    raise GuardrailInputError(
                        f"{part_where}: expected an object, got {type(part).__name__}"
                    )
                if part.get("type") != "text":
                    continue
                text = part.get("text")
                if not isinstance(text, str):
                    raise GuardrailInputError(
                        f"{part_where}.text: expected a string, got {type(text).__name__}"
                    )
                texts.append((f"{part_where}.text", text))
        else:
            raise GuardrailInputError(
                f"{where}.content: expected a string or a list of parts, "
                f"got {type(content).__name__}"
            )
    return texts


def _replace_texts(
    messages: Sequence[Mapping[str, object]], redacted: Mapping[str, str]
) -> tuple[dict[str, object], ...]:
    out: list[dict[str, object]] = []
    for index, message in enumerate(messages):
        copy = dict(message)
        content = copy.get("content")
        where = f"messages[{index}].content"
        if isinstance(content, str) and where in redacted:
            copy["content"] = redacted[where]
        elif isinstance(content, list):
            parts: list[object] = []
            for part_index, part in enumerate(content):
                key = f"{where}[{part_index}].text"
                if isinstance(part, Mapping) and key in redacted:
                    parts.append({**part, "text": redacted[key]})
                else:
                    parts.append(part)
            copy["content"] = parts
        out.append(copy)
    return tuple(out)


class Guardrails:
    """A compiled GuardrailConfig, plus any classifier-model scanners to run on inputs."""

    def __init__(
        self,
        config: GuardrailConfig | None = None,
        *,
        classifiers: Sequence[ClassifierScanner] = (),
    ) -> None:
        self.config = config or GuardrailConfig()
        detectors: list[Detector] = []
        if self.config.pii is not None:
            detectors.extend(all_pii_detectors())
        if self.config.secrets is not None:
            detectors.extend(all_secret_detectors(self.config.secret_min_entropy))
        if self.config.unicode is not None:
            detectors.append(unicode_detector())
        self._span_detectors = tuple(detectors)
        self._injection = injection_detectors() if self.config.injection is not None else ()
        # The learned cue only ever adds one weak cue to a text that shows others (see
        # corral.guardrails._learned): it is judged last, and only where it could tip the score.
        self._learned = tuple(d for d in self._injection if d.types == {"learned_cue"})
        self._learned_weight = sum(greatest_weight(d) for d in self._learned)
        self._injection_rules = tuple(d for d in self._injection if d not in self._learned)
        # Span detectors first, then the injection rules: a hit's index says which list.
        self.prefilter = Prefilter(self._span_detectors + self._injection_rules)
        self._classifiers = tuple(classifiers) if self.config.classifier is not None else ()
        # Texts found clean, with and without the injection heuristics (see the module doc).
        self._clean: dict[bool, OrderedDict[str, None]] = {
            True: OrderedDict(),
            False: OrderedDict(),
        }

    def scan_text(self, text: str, location: str = "text", *, injection: bool = True) -> ScanResult:
        """Scan one text; ``injection=False`` skips the prompt-injection heuristics (for the
        operator's own instructions, whose "always answer as …" is no attack)."""
        if not isinstance(text, str):
            raise GuardrailInputError(f"{location}: expected a string, got {type(text).__name__}")
        findings = self._findings(text, location, injection=injection)
        return ScanResult(tuple(findings), strongest(findings), redact(text, findings))

    def scan_input(self, messages: Sequence[Mapping[str, object]]) -> ScanResult:
        """Scan every text of an OpenAI-style ``messages`` list with the regex scanners."""
        texts = _texts(messages)
        return self._result(messages, texts, [self._findings(text, where) for where, text in texts])

    async def scan_input_async(self, messages: Sequence[Mapping[str, object]]) -> ScanResult:
        """:meth:`scan_input` plus the classifier scanners, which run concurrently per text."""
        texts = _texts(messages)
        per_text = [self._findings(text, where) for where, text in texts]
        verdicts = await asyncio.gather(
            *(
                classifier.scan(text, where)
                for classifier in self._classifiers
                for where, text in texts
                if text.strip()
            )
        )
        extra = [finding for found in verdicts for finding in found]
        for found, (where, _) in zip(per_text, texts, strict=True):
            found.extend(self._with_config_action(f) for f in extra if f.location == where)
        return self._result(messages, texts, per_text)

    def stream(self, location: str = "stream") -> StreamScanner:
        """A scanner for one streamed response; injection heuristics do not run on output."""
        return StreamScanner(self._span_detectors, self.config, location, self.prefilter)

    def _with_config_action(self, finding: Finding) -> Finding:
        return replace(finding, action=self.config.classifier or finding.action)

    def _findings(self, text: str, location: str, *, injection: bool = True) -> list[Finding]:
        clean = self._clean[injection]
        if text in clean:
            clean.move_to_end(text)
            return []
        findings = self._scan(text, location, injection=injection)
        if not findings and len(text) <= CLEAN_TEXT_MAX_CHARS:
            clean[text] = None
            if len(clean) > CLEAN_TEXTS_KEPT:
                clean.popitem(last=False)
        return findings

    def _scan(self, text: str, location: str, *, injection: bool) -> list[Finding]:
        findings: list[Finding] = []
        hits = self.prefilter.hits(text)  # None: every detector may match
        for index, detector in enumerate(self._span_detectors):
            if hits is not None and index not in hits:
                continue
            for match in detector.matches(text):
                finding = to_finding(detector, match, self.config, 0, location)
                if finding is not None:
                    findings.append(finding)
        if injection and self._injection:
            self._judge_injection(text, location, hits, findings)
        findings.sort(key=lambda f: f.span)
        return findings

    def _judge_injection(
        self,
        text: str,
        location: str,
        hits: set[int] | None,
        findings: list[Finding],
    ) -> None:
        first = len(self._span_detectors)
        cues = [
            (detector, match)
            for index, detector in enumerate(self._injection_rules, first)
            if hits is None or index in hits
            for match in detector.matches(text)
        ]
        score = injection_score([m for _, m in cues])
        threshold = self.config.injection_threshold
        if self._learned and score + self._learned_weight >= threshold:
            cues.extend((d, m) for d in self._learned for m in d.matches(text))
            score = injection_score([m for _, m in cues])
        if cues and score >= threshold:
            for detector, match in cues:
                finding = to_finding(detector, match, self.config, 0, location)
                if finding is not None:
                    findings.append(replace(finding, detail=f"score={score:.1f}"))

    def _result(
        self,
        messages: Sequence[Mapping[str, object]],
        texts: list[tuple[str, str]],
        per_text: list[list[Finding]],
    ) -> ScanResult:
        redacted = {
            where: redact(text, found) for (where, text), found in zip(texts, per_text, strict=True)
        }
        findings = tuple(f for found in per_text for f in found)
        return ScanResult(
            findings=findings,
            action=strongest(findings),
            redacted_text="\n".join(redacted[where] for where, _ in texts),
            messages=_replace_texts(messages, redacted),
        )


def scan_input(
    messages: Sequence[Mapping[str, object]], config: GuardrailConfig | None = None
) -> ScanResult:
    """One-off convenience; a gateway keeps a :class:`Guardrails` per config instead."""
    return Guardrails(config).scan_input(messages)
