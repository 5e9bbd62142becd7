"""Workload JWTs end to end: a real ``corral up``, ``corral token issue`` and ``rotate-keys``,
the published JWKS, and the official ``openai`` client presenting the token as its api_key.

The Endpoint is an ``openai``-runtime one in front of a fake upstream that counts what reaches
it, so the test can check that a refused token (401) never cost an upstream call.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from .fake_upstream import FakeUpstream, fake_upstream
from .helpers import CONVERGE_TIMEOUT_S, CORRAL, HELLO, Corral, endpoint, is_ready

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

UPSTREAM_KEY = "sk-workload-upstream"
HELPER = "spiffe://corral.local/ns/default/agent/helper"
HELPER_MAY_INVOKE = f"""
permit (principal == Agent::"{HELPER}", action == Action::"invoke",
        resource == Endpoint::"default/agent-chat");
"""


@pytest.fixture(scope="module")
def governed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Corral, FakeUpstream]]:
    root = tmp_path_factory.mktemp("corral-workload")
    server = Corral(root / "state", root / "logs").start()
    try:
        with fake_upstream(UPSTREAM_KEY) as upstream:
            server.wait_ready()
            chat = endpoint(
                "agent-chat",
                {"up-model": 100},
                runtime={"type": "openai", "baseURL": upstream.base_url, "secretRef": "up-key"},
            )
            secret = {
                "apiVersion": "corral.dev/v1alpha1",
                "kind": "Secret",
                "metadata": {"name": "up-key"},
                "spec": {"type": "api-key", "data": {"apiKey": UPSTREAM_KEY}},
            }
            server.apply(secret, chat)
            server.wait_for("endpoints", "agent-chat", is_ready)
            yield server, upstream
    finally:
        code = server.stop()
    assert code == 0, server.stderr


def corral_cli(server: Corral, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [CORRAL, *args, "--server", server.url, "--token", server.token]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def issue(server: Corral, *extra: str, subject: str = "default/helper") -> str:
    issued = corral_cli(server, "token", "issue", "--subject", subject, *extra)
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    assert token.count(".") == 2, issued.stdout
    assert "\n" not in token, issued.stdout
    return token


def ask(server: Corral, token: str) -> str:
    with server.openai(api_key=token) as client:
        answer = client.chat.completions.create(model="agent-chat", messages=HELLO)  # type: ignore[arg-type]
    return str(answer.choices[0].message.content)


def refused(server: Corral, token: str) -> openai.AuthenticationError:
    with pytest.raises(openai.AuthenticationError) as error:
        ask(server, token)
    assert error.value.status_code == 401
    return error.value


def segment(part: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwks(server: Corral) -> httpx.Response:
    return httpx.get(f"{server.url}/.well-known/jwks.json", timeout=30)


def permitted(server: Corral) -> None:
    server.apply(
        {
            "apiVersion": "corral.dev/v1alpha1",
            "kind": "Policy",
            "metadata": {"name": "helper-invokes-agent-chat"},
            "spec": {"cedar": HELPER_MAY_INVOKE},
        }
    )


def until_answered(server: Corral, token: str) -> str:
    """Ask until the gateway's policy snapshot has caught up (it follows the store's watch)."""
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while True:
        try:
            return ask(server, token)
        except openai.PermissionDeniedError:
            assert time.monotonic() < deadline, "the new policy never took effect"
            time.sleep(0.05)


def test_the_jwks_is_public_cacheable_and_holds_no_private_material(
    governed: tuple[Corral, FakeUpstream],
) -> None:
    server, _ = governed
    answer = jwks(server)
    assert answer.status_code == 200, answer.text
    assert "max-age=" in answer.headers["cache-control"]
    keys = answer.json()["keys"]
    assert keys
    assert all(set(key) == {"kty", "crv", "x", "kid", "alg", "use"} for key in keys)
    assert jwks_unchanged(server, answer.headers["etag"])


def jwks_unchanged(server: Corral, etag: str) -> bool:
    again = httpx.get(
        f"{server.url}/.well-known/jwks.json", headers={"if-none-match": etag}, timeout=30
    )
    return again.status_code == 304


def test_a_workload_token_is_denied_until_a_policy_permits_its_agent(
    governed: tuple[Corral, FakeUpstream],
) -> None:
    server, upstream = governed
    token = issue(server, "--ttl", "10m")
    claims = segment(token.split(".")[1])
    assert claims["sub"] == HELPER
    assert claims["aud"] == "corral-gateway"
    assert claims["exp"] - claims["iat"] == 600
    assert claims["iss"].startswith("corral:")
    before = len(upstream.chats())
    with pytest.raises(openai.PermissionDeniedError):
        ask(server, token)
    assert len(upstream.chats()) == before
    permitted(server)
    assert until_answered(server, token) == "upstream says: Say hello."
    # Another agent of the same namespace is still denied by default.
    with pytest.raises(openai.PermissionDeniedError):
        ask(server, issue(server, subject="default/stranger"))


def test_forged_and_misaddressed_tokens_are_401_and_cost_nothing(
    governed: tuple[Corral, FakeUpstream],
) -> None:
    server, upstream = governed
    permitted(server)
    good = issue(server)
    until_answered(server, good)
    header, payload, _ = good.split(".")
    before = len(upstream.chats())

    forger = ed25519.Ed25519PrivateKey.generate()
    forged = f"{header}.{payload}"
    forged += "." + b64(forger.sign(forged.encode()))
    assert "signature" in refused(server, forged).message

    unsigned = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode()) + f".{payload}."
    assert "alg 'none' is not accepted" in refused(server, unsigned).message

    elsewhere = issue(server, "--audience", "some-tool")
    assert "audience" in refused(server, elsewhere).message

    assert "malformed" in refused(server, "not.a.jwt").message
    assert len(upstream.chats()) == before


def test_a_single_use_token_is_refused_the_second_time(
    governed: tuple[Corral, FakeUpstream],
) -> None:
    server, _ = governed
    permitted(server)
    until_answered(server, issue(server))
    once = issue(server, "--single-use")
    assert ask(server, once) == "upstream says: Say hello."
    assert "already used" in refused(server, once).message


def test_rotation_publishes_both_keys_and_old_tokens_keep_working(
    governed: tuple[Corral, FakeUpstream],
) -> None:
    server, _ = governed
    permitted(server)
    old_token = issue(server)
    until_answered(server, old_token)
    old_kid = segment(old_token.split(".")[0])["kid"]

    rotated = corral_cli(server, "token", "rotate-keys")
    assert rotated.returncode == 0, rotated.stderr
    assert "is now current" in rotated.stdout

    published = {key["kid"] for key in jwks(server).json()["keys"]}
    assert old_kid in published
    assert len(published) >= 2
    new_token = issue(server)
    new_kid = segment(new_token.split(".")[0])["kid"]
    assert new_kid != old_kid
    assert new_kid in published
    assert until_answered(server, new_token) == "upstream says: Say hello."
    assert ask(server, old_token) == "upstream says: Say hello."


def test_the_token_api_wants_the_admin_token_and_says_what_is_wrong(
    governed: tuple[Corral, FakeUpstream],
) -> None:
    server, _ = governed
    anonymous = httpx.post(
        f"{server.url}/corral/v1/tokens", json={"subject": "default/helper"}, timeout=30
    )
    assert anonymous.status_code == 401
    too_long = server.api().post(
        "/corral/v1/tokens", json={"subject": "default/helper", "ttlSeconds": 7200}
    )
    assert too_long.status_code == 400
    assert "ttlSeconds" in too_long.json()["message"]
    bad_subject = corral_cli(server, "token", "issue", "--subject", "Not_A/Name")
    assert bad_subject.returncode != 0
    assert "subject" in bad_subject.stderr
    bad_ttl = corral_cli(server, "token", "issue", "--subject", "default/x", "--ttl", "soon")
    assert bad_ttl.returncode != 0
    assert "duration" in bad_ttl.stderr
