"""Usage records end to end: requests through a real ``corral up`` with the ``openai`` client
and two teams' API keys, then ``corral usage`` sums them by team, key, endpoint and model.

The upstream reports 3 prompt and 3 completion tokens for every answer, so the sums are exact
multiples of the requests each team made.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from .fake_upstream import FakeUpstream, fake_upstream
from .helpers import CONVERGE_TIMEOUT_S, CORRAL, HELLO, Corral, endpoint, is_ready

pytestmark = pytest.mark.slow

UPSTREAM_KEY = "sk-usage-upstream"
TEAMS_INVOKE = """
permit (principal in Team::"default/alpha", action == Action::"invoke", resource is Endpoint);
permit (principal in Team::"default/beta", action == Action::"invoke", resource is Endpoint);
"""


@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Corral, FakeUpstream]]:
    root = tmp_path_factory.mktemp("corral-usage")
    server = Corral(root / "state", root / "logs").start()
    try:
        with fake_upstream(UPSTREAM_KEY) as upstream:
            server.wait_ready()
            secret = {
                "apiVersion": "corral.dev/v1alpha1",
                "kind": "Secret",
                "metadata": {"name": "up-key"},
                "spec": {"type": "api-key", "data": {"apiKey": UPSTREAM_KEY}},
            }
            runtime = {"type": "openai", "baseURL": upstream.base_url, "secretRef": "up-key"}
            policy = {
                "apiVersion": "corral.dev/v1alpha1",
                "kind": "Policy",
                "metadata": {"name": "teams-invoke"},
                "spec": {"cedar": TEAMS_INVOKE},
            }
            server.apply(secret, policy, endpoint("usage-chat", {"up-model": 100}, runtime=runtime))
            server.wait_for("endpoints", "usage-chat", is_ready)
            yield server, upstream
    finally:
        code = server.stop()
    assert code == 0, server.stderr


def corral_cli(server: Corral, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [CORRAL, *args, "--server", server.url, "--token", server.token]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def create_key(server: Corral, team: str, name: str) -> str:
    created = corral_cli(server, "keys", "create", "--team", team, "--create-team", "--name", name)
    assert created.returncode == 0, created.stderr
    return created.stdout.strip()


def answered(client: openai.OpenAI) -> None:
    """One answered request; a 403 while the key or policy is still on its way is retried
    (refused requests reach no upstream and leave no usage record)."""
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while True:
        try:
            client.chat.completions.create(model="usage-chat", messages=HELLO)
            return
        except (openai.PermissionDeniedError, openai.AuthenticationError):
            assert time.monotonic() < deadline, "the key was never accepted"
            time.sleep(0.05)


def usage_json(server: Corral, *args: str) -> dict[str, dict[str, Any]]:
    shown = corral_cli(server, "usage", *args, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    return {item["key"]: item for item in json.loads(shown.stdout)["items"]}


def test_corral_usage_sums_the_tokens_of_each_team_key_endpoint_and_model(
    metered: tuple[Corral, FakeUpstream],
) -> None:
    server, upstream = metered
    made = {"alpha": 3, "beta": 2}
    for team, count in made.items():
        key = create_key(server, team, f"{team}-key")
        with server.openai(api_key=key) as client:
            for _ in range(count):
                answered(client)
    with server.openai() as admin:
        admin.chat.completions.create(model="usage-chat", messages=HELLO)
    assert len(upstream.chats()) == 6

    by_team = usage_json(server, "--by", "team", "--since", "1h")
    for team, count in (*made.items(), ("admin", 1)):
        row = by_team[team]
        assert (row["requests"], row["input_tokens"], row["output_tokens"]) == (
            count,
            3 * count,
            3 * count,
        ), row
    assert set(by_team) == {"alpha", "beta", "admin"}

    by_key = usage_json(server, "--by", "key")
    assert by_key["default/alpha-key"]["requests"] == 3
    assert by_key["default/beta-key"]["input_tokens"] == 6
    assert by_key["user:admin"]["output_tokens"] == 3

    by_endpoint = usage_json(server, "--by", "endpoint")
    assert {k: (v["requests"], v["input_tokens"]) for k, v in by_endpoint.items()} == {
        "default/usage-chat": (6, 18)
    }
    by_model = usage_json(server, "--by", "model")
    assert by_model["up-model"]["output_tokens"] == 18  # the model that answered

    table = corral_cli(server, "usage", "--by", "team")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "TEAM",
        "REQUESTS",
        "INPUT",
        "TOKENS",
        "OUTPUT",
        "TOKENS",
        "COST",
        "USD",
    ]
    assert lines[1].split()[:4] == ["alpha", "3", "9", "9"]
    assert "usage from" in table.stderr

    # A window before any request holds nothing.
    assert (
        usage_json(server, "--since", "2020-01-01T00:00:00Z", "--until", "2020-01-02T00:00:00Z")
        == {}
    )


def test_bad_time_bounds_are_refused_with_a_reason(metered: tuple[Corral, FakeUpstream]) -> None:
    server, _ = metered
    local = corral_cli(server, "usage", "--since", "yesterday")
    assert local.returncode == 2
    assert "'yesterday' is neither a duration like 30m" in local.stderr
    backwards = corral_cli(server, "usage", "--since", "1h", "--until", "2h")
    assert backwards.returncode == 1
    assert "until must be later than since" in backwards.stderr
    assert backwards.stdout == ""
    assert server.http is not None
    raw = server.http.get("/corral/v1/usage", params={"by": "colour"})
    assert raw.status_code == 400
    assert "by 'colour': use one of team, key, model, endpoint" in raw.json()["message"]
    unauthenticated = server.http.get("/corral/v1/usage", headers={"authorization": "Bearer wrong"})
    assert unauthenticated.status_code == 401
