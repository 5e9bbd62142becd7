"""A gateway killed (SIGKILL) while a request holds a concurrency slot does not leak the slot.

With counters several processes share (here a SQLite file named by ``CORRAL_COUNTERS_URL``)
the restarted server refuses while the dead process's lease is still valid, then admits once it
expired (``CORRAL_RATELIMIT_LEASE_TTL_S``, 10 s here). With the default counters, which the
gateway process owns, the slot died with its process: the restarted server admits at once.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import openai
import pytest

from .helpers import CONVERGE_TIMEOUT_S, Corral
from .test_rate_limits_end_to_end import (
    counting_upstream,
    first_limited_answer,
    rate_limit,
    serve_model,
)

pytestmark = pytest.mark.slow

TTL_S = 10


@pytest.mark.timeout(300)
def test_a_killed_gateways_slot_frees_itself_after_the_lease_ttl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORRAL_RATELIMIT_LEASE_TTL_S", str(TTL_S))
    monkeypatch.setenv("CORRAL_COUNTERS_URL", f"sqlite:///{tmp_path / 'shared-counters.db'}")
    outcomes, admitted_after = _kill_while_holding_a_slot_then_ask_again(tmp_path)
    refused = [outcome for outcome in outcomes if outcome != "warming up"]
    # Refused while the dead process's lease lived, then admitted: the slot was not leaked.
    assert refused[0] == "concurrent", outcomes
    assert refused[-1] == "answered", outcomes
    assert set(refused[:-1]) == {"concurrent"}, outcomes
    # Admitted within a TTL (plus the admitted request's 3 s upstream and the polling).
    assert admitted_after <= TTL_S + 3 + 5, admitted_after


@pytest.mark.timeout(300)
def test_a_killed_owner_of_the_default_counters_leaves_no_slot_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORRAL_RATELIMIT_LEASE_TTL_S", str(TTL_S))
    monkeypatch.delenv("CORRAL_COUNTERS_URL", raising=False)
    outcomes, _admitted_after = _kill_while_holding_a_slot_then_ask_again(tmp_path)
    assert [outcome for outcome in outcomes if outcome != "warming up"] == ["answered"]


def _kill_while_holding_a_slot_then_ask_again(tmp_path: Path) -> tuple[list[str], float]:
    """SIGKILL a gateway while a request holds the only slot, restart it on the same state
    dir, ask until answered; what each try got and when the answer came after the kill."""
    state = tmp_path / "state"
    first = Corral(state, tmp_path / "logs-1").start()
    with counting_upstream() as upstream:
        try:
            first.wait_ready()
            first.apply(
                rate_limit(
                    "one-at-once", "slow-chat", concurrentRequests=1, requestsPerMinute=10_000
                )
            )
            serve_model(first, upstream, "slow-chat", "slow")
            with first.openai() as client:
                first_limited_answer(client, "slow-chat", "x-ratelimit-limit-requests")
            in_flight = threading.Thread(target=_ask_and_lose_the_answer, args=(first,))
            in_flight.start()
            time.sleep(1.0)  # the request holds the slot, the upstream takes 3 s
            assert first.process is not None
            first.process.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
        finally:
            first.stop()
        in_flight.join(timeout=30)

        second = Corral(state, tmp_path / "logs-2").start()
        try:
            second.wait_ready()
            outcomes = []
            deadline = time.monotonic() + CONVERGE_TIMEOUT_S
            with second.openai() as client:
                while True:
                    try:
                        client.chat.completions.create(
                            model="slow-chat", messages=[{"role": "user", "content": "hi"}]
                        )
                        outcomes.append("answered")
                        break
                    except openai.RateLimitError as error:
                        outcomes.append("concurrent" if "concurrent" in error.message else "?")
                    except (openai.NotFoundError, openai.InternalServerError):
                        outcomes.append("warming up")
                    assert time.monotonic() < deadline, outcomes
                    time.sleep(0.5)
            admitted_after = time.monotonic() - killed_at
        finally:
            code = second.stop()
    assert code == 0, second.stderr
    return outcomes, admitted_after


def _ask_and_lose_the_answer(server: Corral) -> None:
    try:
        with server.openai(timeout=30) as client:
            client.chat.completions.create(
                model="slow-chat", messages=[{"role": "user", "content": "hi"}]
            )
    except openai.APIError:
        pass  # the server was killed under it
