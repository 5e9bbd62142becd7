"""Identity benchmark: µs per call to authenticate an API key and to verify a platform JWT.

    python benchmarks/identity_bench.py [--quick]

Each row is measured cold (every call does the full check: for a key, parse + prefix lookup +
HMAC-SHA256 + constant-time compare; for a token, parse + signature + claims) and cached (the
same credential again, served from the snapshot's cache of verified credentials), with the
bare signature check from ``cryptography`` beside the JWT rows as the floor the verifier
stands on. The key index holds 10,000 keys so the lookup is the one a real gateway makes.

DESIGN §3 expects cold JWT verification at ≈ 100-150 µs (ES256) and ≈ 140-190 µs (EdDSA) on
this machine; the cache should make a repeat a few µs. Medians over repeats, on a shared
2-core machine: read the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from rich.console import Console
from rich.table import Table

from corral.api.validation import validate_object
from corral.identity import Algorithm, KeyIndex, KeyRing, TokenIssuer, Verifier, generate_api_key
from corral.identity.jose import b64url_decode

ISSUER = "https://corral.bench"
AUDIENCE = "gateway"
DESIGN_COLD = {"ES256": "100-150", "EdDSA": "140-190"}


def per_call_us(call: Callable[[], object], calls: int, repeats: int) -> float:
    """Median over ``repeats`` of the mean µs per call across ``calls`` calls."""
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            call()
        samples.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(samples)


def key_objects(count: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    team = validate_object(
        {
            "apiVersion": "corral.dev/v1alpha1",
            "kind": "Team",
            "metadata": {"name": "bench"},
            "spec": {"labels": {"tier": "gold"}},
        }
    )
    keys, plaintext = [], ""
    for n in range(count):
        generated = generate_api_key()
        plaintext = generated.plaintext
        keys.append(
            {
                "apiVersion": "corral.dev/v1alpha1",
                "kind": "ApiKey",
                "metadata": {"name": f"key-{n}", "namespace": "default"},
                "spec": {
                    "team": "bench",
                    "prefix": generated.prefix,
                    "salt": generated.salt,
                    "hash": generated.hash,
                },
            }
        )
    return keys, [team], plaintext


def bare_verify(ring: KeyRing, token: str) -> Callable[[], object]:
    """The signature check alone, as the verifier's floor."""
    head, payload, signature_b64 = token.split(".")
    signing_input = f"{head}.{payload}".encode()
    signature = b64url_decode(signature_b64)
    public_key = ring.current.private_key.public_key()
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return lambda: public_key.verify(signature, signing_input)
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    der = encode_dss_signature(int.from_bytes(signature[:32]), int.from_bytes(signature[32:]))
    return lambda: public_key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))


def jwt_rows(
    alg: Algorithm, signature_calls: int, lookup_calls: int, repeats: int
) -> tuple[list[str], list[str]]:
    ring = KeyRing.generate(alg)
    issuer = TokenIssuer(ring, ISSUER)
    token = issuer.mint("spiffe://corral.bench/ns/default/agent/bench", AUDIENCE, 600, act="alice")
    cold_verifier = Verifier(ring.jwks(), issuer=ISSUER, audience=AUDIENCE, cache_size=0)
    warm_verifier = Verifier(ring.jwks(), issuer=ISSUER, audience=AUDIENCE)
    warm_verifier.verify(token)
    cold = per_call_us(lambda: cold_verifier.verify(token), signature_calls, repeats)
    cached = per_call_us(lambda: warm_verifier.verify(token), lookup_calls, repeats)
    floor = per_call_us(bare_verify(ring, token), signature_calls, repeats)
    mint = per_call_us(lambda: issuer.mint("alice", AUDIENCE, 60), signature_calls, repeats)
    verify_row = [
        f"JWT verify {alg}",
        f"{cold:.1f}",
        f"{cached:.2f}",
        f"{cold / cached:.0f}x",
        f"{floor:.1f}",
        DESIGN_COLD[alg],
    ]
    return verify_row, [f"JWT mint {alg}", f"{mint:.1f}", "-", "-", "-", "-"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls and repeats")
    quick = parser.parse_args().quick
    repeats = 3 if quick else 7
    signature_calls = 300 if quick else 2_000
    lookup_calls = 10_000 if quick else 100_000

    table = Table(title="identity: µs per call (median)")
    for header in ("operation", "cold", "cached", "cold/cached", "bare signature", "DESIGN cold"):
        table.add_column(header, justify="left" if header == "operation" else "right")

    keys, teams, plaintext = key_objects(1_000 if quick else 10_000)
    cold_index = KeyIndex.build(keys, teams, cache_size=0)
    warm_index = KeyIndex.build(keys, teams)
    assert cold_index.authenticate(plaintext) is not None
    assert warm_index.authenticate(plaintext) is not None
    cold = per_call_us(lambda: cold_index.authenticate(plaintext), lookup_calls, repeats)
    cached = per_call_us(lambda: warm_index.authenticate(plaintext), lookup_calls, repeats)
    table.add_row(
        f"API key authenticate ({len(keys):,} keys)",
        f"{cold:.2f}",
        f"{cached:.2f}",
        f"{cold / cached:.1f}x",
        "-",
        "-",
    )
    unknown = generate_api_key().plaintext
    refused = per_call_us(lambda: warm_index.authenticate(unknown), lookup_calls, repeats)
    table.add_row("API key refused (unknown prefix)", f"{refused:.2f}", "-", "-", "-", "-")

    algorithms: tuple[Algorithm, ...] = ("ES256", "EdDSA")
    for alg in algorithms:
        verify_row, mint_row = jwt_rows(alg, signature_calls, lookup_calls, repeats)
        table.add_row(*verify_row)
        table.add_row(*mint_row)

    Console(width=120).print(table)


if __name__ == "__main__":
    main()
