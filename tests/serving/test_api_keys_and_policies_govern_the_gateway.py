"""API keys and Cedar policies end to end: a real ``corral up``, the ``corral keys`` CLI, the
official ``openai`` client, and an upstream that counts what reaches it.

No model is loaded: the Endpoint is an ``openai``-runtime one in front of a fake upstream, so
the test can check that a refused request (401 or 403) never reached an upstream.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import openai
import pytest

from .fake_upstream import FakeUpstream, fake_upstream
from .helpers import CONVERGE_TIMEOUT_S, CORRAL, HELLO, Corral, endpoint, is_ready

pytestmark = pytest.mark.slow

UPSTREAM_KEY = "sk-governed-upstream"
SEARCH_MAY_INVOKE = """
permit (principal in Team::"default/search", action == Action::"invoke", resource is Endpoint)
when { resource.hasTag("team") && resource.getTag("team") == "search" };
"""
NO_BIG_REQUESTS = """
forbid (principal, action == Action::"invoke", resource)
when { context.estimated_tokens > 1000 };
"""


def policy(name: str, cedar: str) -> dict[str, object]:
    return {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Policy",
        "metadata": {"name": name},
        "spec": {"cedar": cedar},
    }


@pytest.fixture(scope="module")
def governed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Corral, FakeUpstream]]:
    root = tmp_path_factory.mktemp("corral-governed")
    server = Corral(root / "state", root / "logs").start()
    try:
        with fake_upstream(UPSTREAM_KEY) as upstream:
            server.wait_ready()
            searchy = endpoint(
                "search-chat",
                {"up-model": 100},
                runtime={"type": "openai", "baseURL": upstream.base_url, "secretRef": "up-key"},
            )
            searchy["metadata"]["labels"] = {"team": "search"}
            secret = {
                "apiVersion": "corral.dev/v1alpha1",
                "kind": "Secret",
                "metadata": {"name": "up-key"},
                "spec": {"type": "api-key", "data": {"apiKey": UPSTREAM_KEY}},
            }
            server.apply(secret, searchy)
            server.wait_for("endpoints", "search-chat", is_ready)
            yield server, upstream
    finally:
        code = server.stop()
    assert code == 0, server.stderr


def corral_cli(server: Corral, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [CORRAL, *args, "--server", server.url, "--token", server.token]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def create_key(server: Corral, team: str) -> str:
    created = corral_cli(server, "keys", "create", "--team", team, "--create-team")
    assert created.returncode == 0, created.stderr
    assert "shown only once" in created.stderr
    return created.stdout.strip()


def ask(client: openai.OpenAI, **extra: object) -> str:
    answer = client.chat.completions.create(model="search-chat", messages=HELLO, **extra)  # type: ignore[call-overload]
    return str(answer.choices[0].message.content)


def until_answered(client: openai.OpenAI) -> str:
    """Ask until the gateway's policy snapshot has caught up (it follows the store's watch)."""
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while True:
        try:
            return ask(client)
        except openai.PermissionDeniedError:
            assert time.monotonic() < deadline, "the new policy never took effect"
            time.sleep(0.05)


def refused(
    client: openai.OpenAI,
    error_type: type[openai.APIStatusError],
    answered: list[str] | None = None,
    **extra: object,
) -> openai.APIStatusError:
    """Ask until the gateway refuses with ``error_type`` (its snapshots follow the store's
    watch, so a change lands within milliseconds; the deadline only stops a broken feed)."""
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while True:
        try:
            content = ask(client, **extra)
        except error_type as error:
            return error
        assert time.monotonic() < deadline, f"never refused with {error_type.__name__}"
        if answered is not None:
            answered.append(content)
        time.sleep(0.01)


def test_admin_token_keeps_working_and_bad_keys_cost_nothing(
    governed: tuple[Corral, FakeUpstream],
) -> None:
    server, upstream = governed
    before = len(upstream.chats())
    with server.openai() as admin:
        assert ask(admin) == "upstream says: Say hello."
    for bad in ("nonsense", "crl_aaaaaaaaaaaa_" + "x" * 43):
        with server.openai(api_key=bad) as client, pytest.raises(openai.AuthenticationError):
            ask(client)
    assert len(upstream.chats()) == before + 1


def test_a_team_key_is_denied_until_a_policy_permits_and_a_forbid_overrides(
    governed: tuple[Corral, FakeUpstream],
) -> None:
    server, upstream = governed
    key = create_key(server, "search")
    listed = corral_cli(server, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    assert "search" in listed.stdout
    assert key not in listed.stdout
    before = len(upstream.chats())
    with server.openai(api_key=key) as client:
        with pytest.raises(openai.PermissionDeniedError) as denied:
            ask(client)
        assert denied.value.status_code == 403
        assert denied.value.message.endswith("denied by policy")
        assert len(upstream.chats()) == before

        server.apply(policy("search-invokes", SEARCH_MAY_INVOKE))
        assert until_answered(client) == "upstream says: Say hello."
        assert len(upstream.chats()) == before + 1

        server.apply(policy("no-big-requests", NO_BIG_REQUESTS))
        forbidden = refused(client, openai.PermissionDeniedError, max_tokens=5000)
        assert "forbidden by default/no-big-requests" in forbidden.message
        assert ask(client, max_tokens=50) == "upstream says: Say hello."
    server.delete("policies", "no-big-requests")
    server.delete("policies", "search-invokes")


def test_keys_need_an_existing_team_and_can_expire(governed: tuple[Corral, FakeUpstream]) -> None:
    server, _ = governed
    refused = corral_cli(server, "keys", "create", "--team", "nobody")
    assert refused.returncode == 1
    assert "team 'nobody' does not exist in namespace 'default'" in refused.stderr
    assert refused.stdout == ""
    created = corral_cli(
        server, "keys", "create", "--team", "search", "--create-team", "--name", "k30", "--expires",
        "30d",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    listed = corral_cli(server, "keys", "list").stdout
    (row,) = [line for line in listed.splitlines() if line.split()[1] == "k30"]
    assert row.split()[4].endswith("Z")
    assert row.split()[5] == "no"
    assert created.stdout.strip() not in listed


def test_a_revoked_key_is_refused_with_401(governed: tuple[Corral, FakeUpstream]) -> None:
    server, upstream = governed
    server.apply(policy("search-invokes", SEARCH_MAY_INVOKE))
    key = create_key(server, "search")
    with server.openai(api_key=key) as client:
        until_answered(client)
        name = next(
            line.split()[1]
            for line in corral_cli(server, "keys", "list").stdout.splitlines()
            if key[4:16] in line
        )
        revoked = corral_cli(server, "keys", "revoke", name)
        assert revoked.returncode == 0, revoked.stderr
        before = len(upstream.chats())
        answered_after_revoking = []
        unauthorized = refused(client, openai.AuthenticationError, answered=answered_after_revoking)
        assert unauthorized.status_code == 401
        before += len(answered_after_revoking)
        assert len(upstream.chats()) == before
    server.delete("policies", "search-invokes")
