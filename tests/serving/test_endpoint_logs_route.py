"""``GET .../endpoints/{name}/logs?tail=N``: each replica's last log lines, on corral up's port."""

from __future__ import annotations

import httpx
import pytest

from .helpers import API, HELLO, Corral

pytestmark = pytest.mark.slow

LOGS = f"{API}/namespaces/default/endpoints/chat/logs"


def test_each_replica_with_its_last_lines(corral: Corral) -> None:
    with corral.openai() as client:
        client.chat.completions.create(model="chat", messages=HELLO, max_tokens=1)
    answer = corral.api().get(LOGS)
    assert answer.status_code == 200
    (replica,) = answer.json()["replicas"]
    assert replica["name"] == "default.chat.smollm2-135m.0"
    assert replica["model"] == "smollm2-135m"
    assert 0 < len(replica["lines"]) <= 100
    assert any("/v1/chat/completions" in line for line in replica["lines"])
    short = corral.api().get(LOGS, params={"tail": "2"}).json()["replicas"][0]["lines"]
    assert short == replica["lines"][-2:]


@pytest.mark.parametrize("tail", ["abc", "-1", "10001", ""])
def test_a_bad_tail_is_400(corral: Corral, tail: str) -> None:
    answer = corral.api().get(LOGS, params={"tail": tail})
    assert answer.status_code == 400
    assert answer.json()["reason"] == "BadRequest"
    assert "tail: must be a whole number 0..10000" in answer.json()["message"]


def test_unknown_endpoint_is_404_status(corral: Corral) -> None:
    answer = corral.api().get(f"{API}/namespaces/default/endpoints/nope/logs")
    assert answer.status_code == 404
    assert answer.json()["kind"] == "Status"
    assert answer.json()["reason"] == "NotFound"


def test_the_admin_token_is_required(corral: Corral) -> None:
    anonymous = httpx.get(f"{corral.url}{LOGS}", timeout=10)
    assert anonymous.status_code == 401
    wrong = httpx.get(f"{corral.url}{LOGS}", headers={"authorization": "Bearer x"}, timeout=10)
    assert wrong.status_code == 401
    assert wrong.json()["reason"] == "Unauthorized"


def test_only_get(corral: Corral) -> None:
    answer = corral.api().post(LOGS, json={})
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET"
