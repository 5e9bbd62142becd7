"""Secret detectors: provider API keys by their published shapes, PEM private keys, JWTs and
generic high-entropy ``key=value`` assignments.

Short keys share one combined regex; PEM blocks and JWTs can run to kilobytes, so each gets its
own detector with a literal anchor (``-----BEGIN``, ``eyJ``) that lets the stream scanner hold
back text only from the anchor on.
"""

from __future__ import annotations

from corral.guardrails._detector import Detector, Rule
from corral.guardrails._validators import looks_random


def _openai_style_key(candidate: str) -> bool:
    # "sk-" plus a long slug would otherwise catch prose like "sk-learn-compatible-estimators".
    body = candidate.split("-", 1)[1]
    return looks_random(body, 3.5)


def _secret_rules(min_entropy: float) -> dict[str, tuple[str, Rule]]:
    def random_value(candidate: str) -> bool:
        return looks_random(candidate, min_entropy)

    return {
        "anthropic_key": (
            r"s(?<![\w-]s)k-ant-[a-z]{2,8}\d{2}-[A-Za-z0-9_-]{32,200}(?![\w-])",
            Rule("api_key", "critical"),
        ),
        "openai_key": (
            r"s(?<![\w-]s)k-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,180}(?![\w-])",
            Rule("api_key", "critical", _openai_style_key),
        ),
        "aws_access_key_id": (
            r"A(?<![A-Za-z0-9]A)(?:KIA|SIA|BIA|CCA|IDA|ROA)[A-Z0-9]{16}(?![A-Za-z0-9])",
            Rule("aws_access_key_id", "critical"),
        ),
        "aws_secret": (
            r"[AaSs](?i:(?<=a)ws_?secret(?:_access)?_?key|(?<=s)ecret_?access_?key)"
            r"[\"']?[ \t]{0,3}[:=][ \t]{0,3}[\"']?"
            r"(?P<aws_secret_value>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",
            Rule("aws_secret_access_key", "critical", random_value, group="aws_secret_value"),
        ),
        "github_token": (
            r"g(?<![\w-]g)(?:h[pousr]_[A-Za-z0-9]{36,40}|ithub_pat_[A-Za-z0-9_]{22,120})(?![\w-])",
            Rule("github_token", "critical"),
        ),
        "slack_token": (
            r"x(?<![\w-]x)ox[abposre]-(?:\d+-)?[A-Za-z0-9-]{10,160}(?![\w-])",
            Rule("slack_token", "critical"),
        ),
        "slack_webhook": (
            r"https://hooks\.slack\.com/services/T[A-Z0-9]{6,12}/B[A-Z0-9]{6,12}/[A-Za-z0-9]{20,32}",
            Rule("slack_webhook", "critical"),
        ),
        "google_api_key": (
            r"A(?<![\w-]A)Iza[0-9A-Za-z_-]{35}(?![\w-])",
            Rule("google_api_key", "critical"),
        ),
        "generic_assignment": (
            r"[AaSsTtPpCcBb](?<![A-Za-z0-9][AaSsTtPpCcBb])(?i:(?<=a)(?:pi[_-]?key|pikey"
            r"|ccess[_-]?token|uth[_-]?token)|(?<=s)ecret(?:[_-]?key)?|(?<=t)oken"
            r"|(?<=p)(?:assw(?:or)?d|rivate[_-]?key|wd)|(?<=c)lient[_-]?secret|(?<=b)earer)"
            r"[\"']?[ \t]{0,3}(?:[:=]|=>|:=)?[ \t]{0,3}[\"']?"
            r"(?P<generic_value>[A-Za-z0-9_+/=.~-]{16,128})(?![A-Za-z0-9_+/=.~-])",
            Rule("secret", "high", random_value, group="generic_value"),
        ),
    }


def secret_detector(min_entropy: float) -> Detector:
    # Every match starts with a provider prefix or an assignment keyword; keywords are looked
    # for in lower, Title and UPPER case.
    keywords = (
        "api", "secret", "token", "passw", "pwd", "private", "client", "bearer", "access", "auth",
        "aws",
    )  # fmt: skip
    cased = (form for word in keywords for form in (word, word.title(), word.upper()))
    prefixes = ("sk-", "AKIA", "ASIA", "ABIA", "ACCA", "AIDA", "AROA", "gh", "github_pat_", "xox")
    key = "|".join((*prefixes, "https://hooks", "AIza", *cased))
    return Detector(
        "secrets",
        _secret_rules(min_entropy),
        max_span=260,
        lookahead=1,
        key=key,
        key_back=0,
        key_width=max(len(prefix) for prefix in (*prefixes, "https://hooks")),
    )


_PEM_RULES: dict[str, tuple[str, Rule]] = {
    "pem_private_key": (
        r"-----BEGIN (?P<pem_kind>(?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?"
        r"PRIVATE KEY(?: BLOCK)?)-----"
        r"[A-Za-z0-9+/=\s:,.-]{16,8192}?-----END (?P=pem_kind)-----",
        Rule("private_key", "critical"),
    ),
}

_JWT_RULES: dict[str, tuple[str, Rule]] = {
    "jwt": (
        r"e(?<![\w-]e)yJ[A-Za-z0-9_-]{8,2048}\.eyJ[A-Za-z0-9_-]{8,4096}\.[A-Za-z0-9_-]{16,1024}(?![\w-])",
        Rule("jwt", "high"),
    ),
}


def pem_detector() -> Detector:
    return Detector("secrets", _PEM_RULES, max_span=8300, lookahead=0, anchors=("-----BEGIN",))


def jwt_detector() -> Detector:
    return Detector("secrets", _JWT_RULES, max_span=7200, lookahead=1, anchors=("eyJ",))


def all_secret_detectors(min_entropy: float) -> tuple[Detector, ...]:
    return (secret_detector(min_entropy), pem_detector(), jwt_detector())
