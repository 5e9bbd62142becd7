"""GuardrailConfig: which scanners run, what each does when it finds something, and thresholds.

Validated when constructed, so a typo in an action or a finding type fails at configuration
time with the field that is wrong, not on the first request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from corral.guardrails._findings import ACTIONS, Action, Category

SCANNERS: tuple[Category, ...] = ("pii", "secrets", "injection", "unicode", "classifier")

KNOWN_TYPES: frozenset[str] = frozenset(
    {
        "email", "phone", "credit_card", "iban", "us_ssn", "national_id", "ip_address",
        "api_key", "aws_access_key_id", "aws_secret_access_key", "github_token", "slack_token",
        "slack_webhook", "google_api_key", "private_key", "jwt", "secret",
        "instruction_override", "jailbreak_persona", "jailbreak_template",
        "jailbreak_unrestricted", "system_prompt_exfiltration", "encoded_payload",
        "roleplay_cue", "policy_cue", "jailbreak_cue", "tag_characters", "bidi_control",
        "zero_width", "persona_template", "adversarial_suffix",
        "learned_cue",
    }
)  # fmt: skip


class GuardrailConfigError(ValueError):
    """A GuardrailConfig field holds a value the scanners cannot use; the message names it."""


@dataclass(frozen=True)
class GuardrailConfig:
    """``None`` turns a scanner off; ``type_actions`` overrides the scanner's action for one
    finding type (e.g. log IP addresses while redacting the rest of PII). ``classifier`` is the
    action for findings of classifier-model scanners (see ``Guardrails(classifiers=...)``).

    ``injection_threshold`` is the cue weight at which an input counts as an attack (a strong cue
    weighs 1.0, a weak one 0.5); ``secret_min_entropy`` is the Shannon entropy in bits per
    character a generic ``key=value`` value needs to count as a secret.
    """

    pii: Action | None = "redact"
    secrets: Action | None = "redact"
    injection: Action | None = "block"
    unicode: Action | None = "redact"
    classifier: Action | None = "block"
    type_actions: Mapping[str, Action] = field(default_factory=dict)
    injection_threshold: float = 1.0
    secret_min_entropy: float = 3.0

    def __post_init__(self) -> None:
        for scanner in SCANNERS:
            action = getattr(self, scanner)
            if action is not None and action not in ACTIONS:
                raise GuardrailConfigError(
                    f"GuardrailConfig.{scanner}: {action!r} is not one of "
                    f"{', '.join(ACTIONS)} or None"
                )
        for finding_type, action in self.type_actions.items():
            if finding_type not in KNOWN_TYPES:
                raise GuardrailConfigError(
                    f"GuardrailConfig.type_actions[{finding_type!r}]: unknown finding type; "
                    f"known: {', '.join(sorted(KNOWN_TYPES))}"
                )
            if action not in ACTIONS:
                raise GuardrailConfigError(
                    f"GuardrailConfig.type_actions[{finding_type!r}]: {action!r} is not one of "
                    f"{', '.join(ACTIONS)}"
                )
        if not 0.0 < self.injection_threshold <= 10.0:
            raise GuardrailConfigError(
                "GuardrailConfig.injection_threshold: "
                f"{self.injection_threshold} must be in (0, 10]"
            )
        if not 0.0 <= self.secret_min_entropy <= 8.0:
            raise GuardrailConfigError(
                f"GuardrailConfig.secret_min_entropy: {self.secret_min_entropy} must be in [0, 8]"
            )
        object.__setattr__(self, "type_actions", MappingProxyType(dict(self.type_actions)))

    def action_for(self, category: Category, finding_type: str) -> Action | None:
        scanner_action: Action | None = getattr(self, category)
        if scanner_action is None:
            return None
        return self.type_actions.get(finding_type, scanner_action)


# Model output: redact what leaks, never judge the model's prose as an injection attempt.
OUTPUT_DEFAULTS = GuardrailConfig(injection=None)
