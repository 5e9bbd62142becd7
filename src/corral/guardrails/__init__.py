"""Guardrails for the governed gateway: PII, secrets, prompt-injection and invisible-Unicode
scanners with block / redact / log actions, streaming-safe output redaction and a plug-in seam
for classifier models.

Gateway flow: authn → authz → budget → **guardrails** → route → upstream → meter. Build one
:class:`Guardrails` per :class:`GuardrailConfig`, call :meth:`Guardrails.scan_input` on requests
and feed streamed responses through :meth:`Guardrails.stream`.
"""

from corral.guardrails._findings import Action, Finding, Outcome, ScanResult, Severity
from corral.guardrails.classifier import (
    ChatClassifierScanner,
    ClassifierError,
    ClassifierScanner,
    openai_chat_completion,
)
from corral.guardrails.config import OUTPUT_DEFAULTS, GuardrailConfig, GuardrailConfigError
from corral.guardrails.engine import GuardrailInputError, Guardrails, scan_input
from corral.guardrails.stream import StreamScanner

__all__ = [
    "OUTPUT_DEFAULTS",
    "Action",
    "ChatClassifierScanner",
    "ClassifierError",
    "ClassifierScanner",
    "Finding",
    "GuardrailConfig",
    "GuardrailConfigError",
    "GuardrailInputError",
    "Guardrails",
    "Outcome",
    "ScanResult",
    "Severity",
    "StreamScanner",
    "openai_chat_completion",
    "scan_input",
]
