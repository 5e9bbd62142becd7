"""Synthetic values shared by the guardrail tests; checksums are valid unless the name says BAD."""

from __future__ import annotations

import base64
import json
import random
import re
from collections.abc import Sequence
from pathlib import Path

from corral.guardrails import _injection
from corral.guardrails._detector import Detector

VISA = "4111 1111 1111 1111"
VISA_BAD_LUHN = "4111 1111 1111 1112"
AMEX = "3782 822463 10005"
MASTERCARD = "5555-5555-5555-4444"
IBAN_GB = "GB82 WEST 1234 5698 7654 32"
IBAN_DE = "DE89370400440532013000"
IBAN_DE_BAD_CHECK = "DE88370400440532013000"
SSN = "123-45-6789"
DNI = "12345678Z"
DNI_BAD_LETTER = "12345678A"
NIE = "X1234567L"
FISCAL_CODE = "RSSMRA85T10A562S"
FISCAL_CODE_BAD = "RSSMRA85T10A562T"

OPENAI_KEY = "sk-proj-Ab12Cd34Ef56Gh78Ij90KlMnOpQrStUvWxYz0123"
ANTHROPIC_KEY = "sk-ant-api03-" + "aB3dE5fG7hJ9kL1mN2pQ4rS6tU8vW0xY" * 3 + "AA"
AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
GITHUB_TOKEN = "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"
SLACK_TOKEN = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
GOOGLE_KEY = "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    + "\n".join(base64.b64encode(bytes(range(i, i + 48))).decode() for i in range(0, 240, 48))
    + "\n-----END RSA PRIVATE KEY-----"
)

# A model answer with secrets and PII scattered through ordinary prose: the stream tests cut it
# at every position.
LEAKY_ANSWER = (
    "Sure! Here is the config you asked for.\n"
    f"export OPENAI_API_KEY={OPENAI_KEY}\n"
    f"Ping ops at jane.doe@example.org or +44 20 7946 0958 if it fails; card {VISA}.\n"
    f"Token: {JWT}\n"
    f"{PEM}\n"
    f"aws_secret_access_key = {AWS_SECRET} and id {AWS_KEY_ID}.\n"
    "That is all; rotate these after the demo. ✅"
)

DATA = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "guardrails"


def dataset_texts() -> list[str]:
    texts: list[str] = []
    for name in ("attacks.jsonl", "benign.jsonl", "pii_secrets.jsonl"):
        with (DATA / name).open(encoding="utf-8") as lines:
            texts.extend(json.loads(line)["text"] for line in lines if line.strip())
    return texts


def generated_texts(detectors: Sequence[Detector], count: int = 3000) -> list[str]:
    """Cue words, the other words of the injection rules, every character some detector
    dispatches on, and punctuation, in random case: many near-misses and some matches."""
    rng = random.Random(20261124)
    rule_words = {
        word
        for source, _ in _injection.INJECTION_RULES.values()
        for word in re.findall(r"[a-z]{2,}", source)
    }
    dispatched = {char for d in detectors for char in (d._by_first_char or ())}
    tokens = sorted(
        {*_injection._FIRST_WORDS, *rule_words, *dispatched}
        | {"[", "]", "(", ")", "+:", "'", ":", "=", ",", ".", "-", "_", "🔓", "İ", "[ ", "sk-"}
        | {"AKIA", "ghp_", "api_key=", "Bearer ", "eyJ", "4111", "555-0199", "\u200b", "\U000e0067"}
    )
    separators = (" ", " ", " ", "", "\n", ", ", "_", "-")

    def cased(token: str) -> str:
        return rng.choice((token, token, token.upper(), token.title(), token.swapcase()))

    texts: list[str] = []
    for _ in range(count):
        words = [cased(rng.choice(tokens)) for _ in range(rng.randint(1, 30))]
        texts.append("".join(word + rng.choice(separators) for word in words))
    return texts
