"""``ApiKey``: a gateway credential for a Team, stored only as a salted hash.

The plaintext (``crl_<prefix>_<secret>``) is shown once, to whoever generates it
(``corral.identity.generate_api_key``); the object holds the public ``prefix`` that finds the
key in the gateway's index, and the ``salt`` and ``hash`` that check it. Revoking is
``revoked: true`` (or deleting the object): the gateway's next key snapshot no longer has it.
"""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from corral.api.objects import DNS1123_SUBDOMAIN
from corral.api.registry import KindInfo, register_kind

API_KEY_SCHEME = "crl"
"""The first part of every plaintext key, so secret scanners and people can recognise one."""
PREFIX_LENGTH = 12
PREFIX_PATTERN = re.compile(rf"^[a-z2-7]{{{PREFIX_LENGTH}}}$")
SALT_PATTERN = re.compile(r"^[0-9a-f]{32}$")
HASH_PATTERN = re.compile(r"^[0-9a-f]{64}$")
_PLAINTEXT_KEY = re.compile(rf"{API_KEY_SCHEME}_[a-z2-7]{{{PREFIX_LENGTH}}}_")


class ApiKeySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    team: str = Field(min_length=1, max_length=253, description="a Team in the same namespace")
    expiresAt: str | None = Field(
        default=None, description="RFC 3339 time after which the key is refused"
    )
    revoked: bool = Field(default=False, description="true refuses the key from now on")
    description: str = Field(default="", max_length=500)
    prefix: str = Field(description=f"the {PREFIX_LENGTH} characters after 'crl_' in the key")
    salt: str = Field(description="32 lower-case hex digits (16 random bytes)")
    hash: str = Field(description="HMAC-SHA256(salt, key) as 64 lower-case hex digits")

    @field_validator("team")
    @classmethod
    def _team_name(cls, value: str) -> str:
        if not DNS1123_SUBDOMAIN.match(value):
            raise ValueError(f"{value!r} is not a valid Team name (DNS-1123)")
        return value

    @field_validator("expiresAt")
    @classmethod
    def _rfc3339(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not an RFC 3339 time, e.g. 2030-01-31T00:00:00Z"
            ) from None
        if parsed.tzinfo is None:
            raise ValueError(f"{value!r} needs a time zone (Z or an offset)")
        return value

    @field_validator("description")
    @classmethod
    def _no_plaintext_key(cls, value: str) -> str:
        # The one place a pasted key could slip into the store; the store is not encrypted here.
        if _PLAINTEXT_KEY.search(value):
            raise ValueError("looks like it contains a plaintext API key; remove it")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not PREFIX_PATTERN.match(value):
            raise ValueError(f"must be {PREFIX_LENGTH} characters from a-z and 2-7")
        return value

    @field_validator("salt")
    @classmethod
    def _salt(cls, value: str) -> str:
        if not SALT_PATTERN.match(value):
            raise ValueError("must be 32 lower-case hex digits")
        return value

    @field_validator("hash")
    @classmethod
    def _hash(cls, value: str) -> str:
        if not HASH_PATTERN.match(value):
            raise ValueError("must be 64 lower-case hex digits")
        return value


APIKEY = register_kind(
    KindInfo(
        kind="ApiKey",
        plural="apikeys",
        spec_model=ApiKeySpec,
        description="A gateway API key for a Team, stored as a salted hash.",
        printer_columns=(
            ("TEAM", "spec.team"),
            ("PREFIX", "spec.prefix"),
            ("EXPIRES", "spec.expiresAt"),
            ("REVOKED", "spec.revoked"),
        ),
    )
)
