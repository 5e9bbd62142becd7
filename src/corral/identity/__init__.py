"""Who is calling: API keys for teams, platform-signed JWTs for workloads.

The gateway turns a bearer credential into a :class:`Principal` with one of two snapshots,
both compiled off the request path and swapped whole: :class:`KeyIndex` (ApiKey and Team
objects) and :class:`Verifier` (the platform's JWKS). The platform side mints tokens with
:class:`TokenIssuer` over a :class:`KeyRing` that rotates and publishes the keys.

This package sits on ``corral.api`` only.
"""

from corral.identity.apikeys import GeneratedApiKey, generate_api_key, hash_api_key
from corral.identity.errors import InvalidToken
from corral.identity.jose import ALGORITHMS, Algorithm
from corral.identity.keyindex import KeyIndex
from corral.identity.keys import SigningKey
from corral.identity.principal import Principal, PrincipalKind, workload_id
from corral.identity.replay import ReplayCache
from corral.identity.signing import KeyRing
from corral.identity.tokens import SINGLE_USE_CLAIM, TokenIssuer
from corral.identity.verifier import VerifiedToken, Verifier

__all__ = [
    "ALGORITHMS",
    "SINGLE_USE_CLAIM",
    "Algorithm",
    "GeneratedApiKey",
    "InvalidToken",
    "KeyIndex",
    "KeyRing",
    "Principal",
    "PrincipalKind",
    "ReplayCache",
    "SigningKey",
    "TokenIssuer",
    "VerifiedToken",
    "Verifier",
    "generate_api_key",
    "hash_api_key",
    "workload_id",
]
