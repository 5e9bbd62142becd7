"""One audit record per gateway request, budget bookkeeping included: a real ``corral up``
(SQLite store), the official ``openai`` client and the real ``corral`` CLI.

A team under a token Budget makes a call: the log holds exactly one ``invoke`` record for it,
carrying the allow decision, the deciding policy, the tokens and, in ``details.budget``, the
hold the budget stage reserved and the settlement of the real usage; no separate
``budget.reserve`` / ``budget.settle`` records. A request the budget refuses still leaves its
``budget.refuse`` record beside the request's ``invoke`` record. ``corral audit verify`` passes.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from .fake_upstream import fake_upstream
from .helpers import CONVERGE_TIMEOUT_S, CORRAL, HELLO, Corral, endpoint, is_ready

pytestmark = pytest.mark.slow

UPSTREAM_KEY = "sk-one-record-upstream-41d7"
PERMIT_TEAMS = """apiVersion: corral.dev/v1alpha1
kind: Policy
metadata:
  name: teams-invoke
spec:
  cedar: |
    @id("teams-invoke")
    permit (principal, action == Action::"invoke", resource is Endpoint);
"""


def budget(name: str, team: str, tokens: int) -> dict[str, Any]:
    return {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Budget",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "scope": {"kind": "team", "name": team},
            "limits": {"tokens": tokens},
            "period": "total",
            "mode": "hard",
        },
    }


def cli(server: Corral, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [CORRAL, *args, "--server", server.url, "--token", server.token]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def records(server: Corral) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    start: int | None = 0
    while start is not None:
        page = server.api().get("/corral/v1/audit/records", params={"from": start})
        assert page.status_code == 200, page.text
        items.extend(page.json()["items"])
        start = page.json()["next"]
    return items


def until(check: Any, what: str) -> Any:
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corral]:
    root = tmp_path_factory.mktemp("corral-one-record")
    server = Corral(root / "state", root / "logs").start()
    try:
        with fake_upstream(UPSTREAM_KEY) as upstream:
            server.wait_ready()
            chat = endpoint(
                "budgeted-chat",
                {"up-model": 100},
                runtime={"type": "openai", "baseURL": upstream.base_url, "secretRef": "up-key"},
            )
            secret = {
                "apiVersion": "corral.dev/v1alpha1",
                "kind": "Secret",
                "metadata": {"name": "up-key"},
                "spec": {"type": "api-key", "data": {"apiKey": UPSTREAM_KEY}},
            }
            server.apply(secret, chat, budget("roomy", "payers", 10**9))
            server.apply(budget("tiny", "misers", 1))
            manifest = root / "policy.yaml"
            manifest.write_text(PERMIT_TEAMS)
            applied = cli(server, "apply", "-f", str(manifest))
            assert applied.returncode == 0, applied.stderr
            server.wait_for("endpoints", "budgeted-chat", is_ready)
            yield server
    finally:
        code = server.stop()
    assert code == 0, server.stderr


def team_key(server: Corral, team: str) -> str:
    created = cli(server, "keys", "create", "--team", team, "--create-team")
    assert created.returncode == 0, created.stderr
    return created.stdout.strip()


def test_a_budgeted_call_is_one_record_with_its_hold_and_settlement(server: Corral) -> None:
    key = team_key(server, "payers")

    def answered() -> bool:
        with server.openai(api_key=key) as client:
            try:
                client.chat.completions.create(model="budgeted-chat", messages=HELLO, max_tokens=50)
            except openai.PermissionDeniedError:
                return False  # the policy is not in the gateway's snapshot yet
        return True

    until(answered, "the team's call was never allowed")

    def invokes() -> list[dict[str, Any]]:
        return [
            r
            for r in records(server)
            if r["action"] == "invoke"
            and r["details"]["team"] == "payers"
            and r["details"]["status"] == 200
        ]

    (record,) = until(invokes, "the call was not recorded")
    assert record["decision"] == "allow"
    assert record["policies"] == ["default/teams-invoke"]
    assert record["details"]["outputTokens"] > 0
    reserve, settle = record["details"]["budget"]
    assert reserve["action"] == "budget.reserve"
    assert reserve["resource"] == "Budget/default/roomy"
    assert reserve["decision"] == "held"
    assert reserve["tokens"] > 0
    assert settle["action"] == "budget.settle"
    assert settle["decision"] == "charged"
    assert settle["held_tokens"] == reserve["tokens"]
    used = record["details"]["inputTokens"] + record["details"]["outputTokens"]
    assert settle["tokens"] == used
    everything = records(server)
    assert not [r for r in everything if r["action"] in ("budget.reserve", "budget.settle")]

    checked = cli(server, "audit", "verify")
    assert checked.returncode == 0, checked.stderr
    assert f"records checked: {len(everything)}" in checked.stdout


def test_a_refusal_keeps_its_own_record(server: Corral) -> None:
    key = team_key(server, "misers")

    def refused() -> bool:
        with server.openai(api_key=key) as client:
            try:
                client.chat.completions.create(model="budgeted-chat", messages=HELLO)
            except openai.RateLimitError:
                return True
            except openai.PermissionDeniedError:
                return False
        return False

    until(refused, "the 1-token budget never refused")
    refusals = until(
        lambda: [r for r in records(server) if r["action"] == "budget.refuse"],
        "the refusal was not recorded",
    )
    assert refusals[0]["resource"] == "Budget/default/tiny"
    assert refusals[0]["decision"] == "deny"
    denied_invokes = [
        r for r in records(server) if r["action"] == "invoke" and r["details"]["team"] == "misers"
    ]
    assert any(r["details"]["status"] == 429 for r in denied_invokes)
    assert all("budget" not in r["details"] for r in denied_invokes)
