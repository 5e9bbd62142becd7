"""The decision cache behind a real ``corral up``: remembered decisions never outlive a change.

The official ``openai`` client asks the gateway the same question again and again (one key, one
Endpoint), which the snapshot's decision cache answers after the first time; the test checks
that what the client sees still follows every request's estimated tokens and every change of
the caller's Team, and that refused requests never reach the upstream.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from serving.fake_upstream import FakeUpstream, fake_upstream
from serving.helpers import CONVERGE_TIMEOUT_S, CORRAL, HELLO, Corral, endpoint, is_ready

pytestmark = pytest.mark.slow

UPSTREAM_KEY = "sk-decision-cache-upstream"
GOLD_MAY_INVOKE_SMALL = """
permit (principal in Team::"default/tiered", action == Action::"invoke", resource is Endpoint)
when { principal.hasTag("tier") && principal.getTag("tier") == "gold" };

forbid (principal, action == Action::"invoke", resource)
when { context.estimated_tokens > 1000 };
"""


def team(tier: str) -> dict[str, Any]:
    return {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Team",
        "metadata": {"name": "tiered"},
        "spec": {"labels": {"tier": tier}},
    }


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Corral, FakeUpstream]]:
    root = tmp_path_factory.mktemp("corral-decision-cache")
    server = Corral(root / "state", root / "logs").start()
    try:
        with fake_upstream(UPSTREAM_KEY) as upstream:
            server.wait_ready()
            chat = endpoint(
                "cached-chat",
                {"up-model": 100},
                runtime={"type": "openai", "baseURL": upstream.base_url, "secretRef": "up-key"},
            )
            secret = {
                "apiVersion": "corral.dev/v1alpha1",
                "kind": "Secret",
                "metadata": {"name": "up-key"},
                "spec": {"type": "api-key", "data": {"apiKey": UPSTREAM_KEY}},
            }
            server.apply(secret, chat, team("bronze"))
            server.wait_for("endpoints", "cached-chat", is_ready)
            yield server, upstream
    finally:
        code = server.stop()
    assert code == 0, server.stderr


def ask(client: openai.OpenAI, max_tokens: int) -> int:
    """The HTTP status the gateway answers (200 with the upstream's reply, or the refusal)."""
    try:
        client.chat.completions.create(model="cached-chat", messages=HELLO, max_tokens=max_tokens)  # type: ignore[arg-type]
    except openai.APIStatusError as error:
        return error.status_code
    return 200


def until_status(client: openai.OpenAI, status: int) -> None:
    """The gateway's snapshots follow the store's watch; wait for a change to land."""
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while ask(client, 50) != status:
        assert time.monotonic() < deadline, f"never answered {status}"
        time.sleep(0.02)


def test_remembered_decisions_follow_token_estimates_and_team_changes(
    served: tuple[Corral, FakeUpstream],
) -> None:
    server, upstream = served
    argv = [CORRAL, "keys", "create", "--team", "tiered", "--server", server.url]
    created = subprocess.run(
        [*argv, "--token", server.token], capture_output=True, text=True, timeout=60, check=False
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    server.apply(
        {
            "apiVersion": "corral.dev/v1alpha1",
            "kind": "Policy",
            "metadata": {"name": "gold-small"},
            "spec": {"cedar": GOLD_MAY_INVOKE_SMALL},
        }
    )
    with server.openai(api_key=key) as client:
        # Bronze: denied by default, as often as asked (the deny is remembered, then reused).
        until_status(client, 403)
        assert [ask(client, 50) for _ in range(3)] == [403, 403, 403]
        before = len(upstream.chats())

        # The Team turns gold: a new key snapshot, a new principal, decided afresh.
        server.apply(team("gold"))
        until_status(client, 200)
        answered = len(upstream.chats()) - before

        # The forbid reads estimated_tokens: each request is decided by its own estimate.
        pattern = [50, 5000, 50, 5000, 900, 1200, 50]
        statuses = [ask(client, tokens) for tokens in pattern]
        assert statuses == [200, 403, 200, 403, 200, 403, 200]
        assert len(upstream.chats()) - before == answered + statuses.count(200)

        # Back to silver: the remembered allows go with the old principal.
        server.apply(team("silver"))
        until_status(client, 403)
        settled = len(upstream.chats())
        assert [ask(client, 50) for _ in range(3)] == [403, 403, 403]
        assert len(upstream.chats()) == settled


OUTSIDE_NETWORK_FORBIDDEN = """
permit (principal in Team::"default/networked", action == Action::"invoke", resource is Endpoint);

forbid (principal in Team::"default/networked", action == Action::"invoke", resource)
when { context has client_ip && context.client_ip.isInRange(ip("203.0.113.0/24")) };
"""


def test_the_client_address_a_local_proxy_forwards_is_the_one_policy_sees(
    served: tuple[Corral, FakeUpstream],
) -> None:
    server, _upstream = served
    argv = [CORRAL, "keys", "create", "--team", "networked", "--create-team"]
    created = subprocess.run(
        [*argv, "--server", server.url, "--token", server.token],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    server.apply(
        {
            "apiVersion": "corral.dev/v1alpha1",
            "kind": "Policy",
            "metadata": {"name": "networked-not-from-203"},
            "spec": {"cedar": OUTSIDE_NETWORK_FORBIDDEN},
        }
    )
    body = {"model": "cached-chat", "messages": HELLO, "max_tokens": 5}

    def status(forwarded_for: str | None) -> int:
        headers = {"authorization": f"Bearer {key}"}
        if forwarded_for is not None:
            headers["x-forwarded-for"] = forwarded_for
        url = server.url + "/v1/chat/completions"
        return httpx.post(url, json=body, headers=headers, timeout=10).status_code

    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while status(None) != 200:
        assert time.monotonic() < deadline, "the networked team was never allowed"
        time.sleep(0.02)
    # This test talks from loopback, as a reverse proxy on the same machine would.
    assert status("203.0.113.9") == 403
    assert status("198.51.100.4, 203.0.113.9") == 403  # the rightmost untrusted hop decides
    assert status("203.0.113.9, 198.51.100.4") == 200
    assert status(None) == 200
