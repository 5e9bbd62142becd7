"""A hard token Budget for a team's API key, end to end: a real ``corral up``, ``corral keys``,
the official ``openai`` client and an upstream whose token usage is known.

Requests pass until the budget cannot hold another worst case; then the client gets
``openai.RateLimitError`` (429, ``Retry-After``, the budget named) and the upstream is not
called. What the ledger settled equals the usage of the answers, a streamed one included (its
usage chunk, which the client did not ask for), and never passes the limit.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator

import openai
import pytest

from .budget_upstream import PROMPT_TOKENS, MeteredUpstream, metered_upstream
from .helpers import CONVERGE_TIMEOUT_S, CORRAL, HELLO, Corral, endpoint, is_ready

pytestmark = pytest.mark.slow

LIMIT = 100
OPS_MAY_INVOKE = """
permit (principal in Team::"default/ops", action == Action::"invoke", resource is Endpoint);
"""


@pytest.fixture(scope="module")
def governed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Corral, MeteredUpstream]]:
    root = tmp_path_factory.mktemp("corral-budgets")
    server = Corral(root / "state", root / "logs").start()
    try:
        with metered_upstream() as upstream:
            server.wait_ready()
            metered = endpoint(
                "metered",
                {"gpt-4o-mini": 100},
                runtime={"type": "openai", "baseURL": upstream.base_url},
            )
            server.apply(metered)
            server.wait_for("endpoints", "metered", is_ready)
            yield server, upstream
    finally:
        code = server.stop()
    assert code == 0, server.stderr


def manifest(kind: str, name: str, spec: dict[str, object]) -> dict[str, object]:
    return {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }


def create_key(server: Corral, team: str) -> str:
    argv = [CORRAL, "keys", "create", "--team", team, "--create-team"]
    argv += ["--server", server.url, "--token", server.token]
    created = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert created.returncode == 0, created.stderr
    return created.stdout.strip()


def counters(server: Corral, budget: str) -> tuple[int, int]:
    """(spent, held) in tokens as ``GET /corral/v1/budgets`` reports them once no hold is
    left (the gateway process owns the counters: they live in its memory)."""
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while True:
        items = server.api().get("/corral/v1/budgets").json()["items"]
        (found,) = [item for item in items if item["name"] == budget]
        spent, held = found["tokens"]["spent"], found["tokens"]["held"]
        if held == 0 or time.monotonic() > deadline:
            return int(spent), int(held)
        time.sleep(0.02)


def remaining_gauge(server: Corral, budget: str) -> float | None:
    text = server.api().get("/metrics").text
    pattern = rf'corral_budget_remaining\{{budget="default/{budget}",unit="tokens"\}} (\S+)'
    found = re.search(pattern, text)
    return None if found is None else float(found.group(1))


def wait_for_gauge(server: Corral, budget: str, value: float) -> None:
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while remaining_gauge(server, budget) != value:
        assert time.monotonic() < deadline, f"gauge stuck at {remaining_gauge(server, budget)}"
        time.sleep(0.05)


def spend_until_refused(
    client: openai.OpenAI, upstream: MeteredUpstream, used: list[int]
) -> openai.RateLimitError:
    """Ask until refused, recording each answer's usage; the refused one reaches no upstream."""
    for _ in range(LIMIT):
        calls = upstream.calls()
        try:
            answer = client.chat.completions.create(model="metered", messages=HELLO, max_tokens=10)
        except openai.RateLimitError as error:
            assert upstream.calls() == calls
            return error
        assert answer.usage is not None
        used.append(answer.usage.total_tokens)
    raise AssertionError(f"never refused; {sum(used)} tokens used of {LIMIT}")


def test_a_team_key_spends_its_hard_budget_then_gets_429(
    governed: tuple[Corral, MeteredUpstream],
) -> None:
    server, upstream = governed
    budget = {"scope": {"kind": "team", "name": "ops"}, "limits": {"tokens": LIMIT}}
    server.apply(
        manifest("Budget", "ops-daily", {**budget, "period": "day", "mode": "hard"}),
        manifest("Policy", "ops-invokes", {"cedar": OPS_MAY_INVOKE}),
    )
    wait_for_gauge(server, "ops-daily", LIMIT)  # the gateway's budget snapshot has it
    key = create_key(server, "ops")
    used: list[int] = []
    with server.openai(api_key=key) as client:
        deadline = time.monotonic() + CONVERGE_TIMEOUT_S
        while True:  # the key and policy snapshots follow the store's watch
            try:
                stream = client.chat.completions.create(
                    model="metered", messages=HELLO, max_tokens=4, stream=True
                )
                break
            except (openai.AuthenticationError, openai.PermissionDeniedError):
                assert time.monotonic() < deadline, "the key never took effect"
                time.sleep(0.05)
        with stream:
            chunks = [chunk for chunk in stream]
        assert all(chunk.usage is None for chunk in chunks)  # not asked: not shown
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == "tok " * 4
        # The stream was settled with the usage chunk the gateway asked the upstream for.
        assert counters(server, "ops-daily") == (PROMPT_TOKENS + 4, 0)
        used.append(PROMPT_TOKENS + 4)

        error = spend_until_refused(client, upstream, used)

    assert error.status_code == 429
    body = error.body
    assert isinstance(body, dict)
    assert (body["type"], body["code"]) == ("insufficient_quota", "budget_exceeded")
    assert "budget default/ops-daily" in error.message
    assert f"of {LIMIT} tokens spent this day" in error.message
    retry_after = int(error.response.headers["retry-after"])
    assert 1 <= retry_after <= 86_400
    # HELLO holds 10 prompt tokens (estimated) + 10; each answer really used 5 + 10.
    assert len(used) == 1 + 5
    spent, held = counters(server, "ops-daily")
    assert spent == sum(used) <= LIMIT
    assert held == 0
    wait_for_gauge(server, "ops-daily", LIMIT - spent)

    listed = server.api().get("/corral/v1/budgets", params={"namespace": "default"})
    assert listed.status_code == 200, listed.text
    (shown,) = [item for item in listed.json()["items"] if item["name"] == "ops-daily"]
    assert shown["scope"] == {"kind": "team", "name": "ops"}
    assert (shown["period"], shown["mode"], shown["usd"]) == ("day", "hard", None)
    assert shown["tokens"] == {
        "limit": LIMIT,
        "spent": spent,
        "held": 0,
        "remaining": LIMIT - spent,
    }
    assert shown["resetsAt"].endswith("T00:00:00Z")

    refusals = server.api().get("/metrics").text
    assert 'corral_budget_refusals_total{budget="default/ops-daily"} 1.0' in refusals
    server.delete("budgets", "ops-daily")
    server.delete("policies", "ops-invokes")
